"""Each loss written once, as a function of a backend ``xp`` (see ``lossplug.frameworks.ops``).

A formula takes validated arrays and parameters and returns ``(loss, weight)``: the unreduced
loss and, where the mean is a weighted one (class weights, ignored targets), the weight of each
entry of ``loss``, else ``None``. ``lossplug._reduce`` turns that into "mean", "sum" or "none".
"""
