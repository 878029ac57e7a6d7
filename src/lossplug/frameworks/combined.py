"""What the torch and Keras ``CombinedLoss`` share: terms and weights, checked and built.

``CombinedLoss(terms={"dice": DiceLoss(from_logits=True), "ce": {"name": "sparse_categorical_ce",
"from_logits": True}}, weights={"ce": 0.5})`` is :math:`\\sum_k w_k L_k(\\hat y, y)`, weights 1 where
not given. A term is a loss object of the framework or a mapping with a registry ``name`` and that
loss's parameters, as the Hydra presets (``loss=dice_ce``) write it; ``_target_`` and ``framework``
keys of a composed Hydra node are read and dropped.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

from lossplug._spec import LossParameterError

NAME = "combined"


def _plain(value):
    """OmegaConf containers (from Hydra) as plain dicts and lists; anything else unchanged."""
    if type(value).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(value, resolve=True)
    return value


def build_term(key: str, term, framework: str, loss_type: type):
    """A loss object of ``loss_type`` from ``term`` (an instance, or a registry-name mapping)."""
    if isinstance(term, loss_type):
        return term
    term = _plain(term)
    if isinstance(term, Mapping):
        params = dict(term)
        params.pop("_target_", None)
        name = params.pop("name", None)
        if name is None:
            raise LossParameterError(
                f"CombinedLoss: term {key!r} is a mapping without 'name'; write it as "
                "{'name': 'dice', 'from_logits': True, ...} with a registry name"
            )
        other = params.pop("framework", None)
        if other is not None and other != framework:
            raise LossParameterError(
                f"CombinedLoss: term {key!r} has framework={other!r}, but the combined loss is "
                f"built for {framework!r}"
            )
        if name == NAME:
            raise LossParameterError(f"CombinedLoss: term {key!r} is itself a combined loss; nest its terms")
        import lossplug

        return lossplug.get(name, framework=framework, **params)
    raise LossParameterError(
        f"CombinedLoss: term {key!r} is {type(term).__name__}; it must be a {loss_type.__name__} "
        "or a mapping with a registry 'name' and that loss's parameters"
    )


def check(terms, weights, framework: str, loss_type: type):
    """``(built terms, weights)`` as two dicts with the same keys, in the order of ``terms``."""
    terms, weights = _plain(terms), _plain(weights)
    if not isinstance(terms, Mapping) or not terms:
        raise LossParameterError(
            "CombinedLoss: terms must be a non-empty mapping of names to losses, e.g. "
            "{'dice': DiceLoss(from_logits=True), "
            "'ce': {'name': 'sparse_categorical_ce', 'from_logits': True}}"
        )
    weights = {} if weights is None else weights
    if not isinstance(weights, Mapping):
        raise LossParameterError(
            f"CombinedLoss: weights must be a mapping of term names to numbers, not {type(weights).__name__}"
        )
    unknown = sorted(set(weights) - set(terms))
    if unknown:
        raise LossParameterError(
            f"CombinedLoss: weights name unknown term(s) {', '.join(map(repr, unknown))}; "
            f"the terms are {', '.join(map(repr, terms))}"
        )
    out_weights = {}
    for key in terms:
        w = weights.get(key, 1.0)
        if not (isinstance(w, numbers.Real) and not isinstance(w, bool) and math.isfinite(w) and w >= 0):
            raise LossParameterError(
                f"CombinedLoss: weights[{key!r}]={w!r} is invalid; it must be a number >= 0"
            )
        out_weights[str(key)] = float(w)
    built = {str(key): build_term(str(key), term, framework, loss_type) for key, term in terms.items()}
    return built, out_weights
