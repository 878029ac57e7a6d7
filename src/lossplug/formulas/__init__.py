"""Each loss written once, as a function of a backend ``xp`` (see ``lossplug.frameworks.ops``).

A formula takes validated arrays and parameters and returns ``(loss, weight)``: the unreduced
loss and, where the mean is a weighted one (class weights, ignored targets), the weight of each
entry of ``loss``, else ``None``. ``lossplug._reduce`` turns that into "mean", "sum" or "none".
"""


def division(xp, num, den):
    """``num / den`` as torch divides, without NumPy's warnings: 0/0 is NaN, ``x/0`` is +-inf (and
    ``den`` of either sign is taken as it is). The frameworks' own rules where lossplug's guarded
    ratios (0 or 1 where nothing counts) are not theirs: ``numerics="torch"`` means, MONAI's Dice."""
    zero = den == 0
    at_zero = xp.where(num > 0, float("inf"), xp.where(num < 0, -float("inf"), float("nan")))
    return xp.where(zero, xp.cast_like(at_zero, num), num / xp.where(zero, 1.0 + 0.0 * den, den))
