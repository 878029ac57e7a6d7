"""The shipped combined-loss presets of the Hydra group ``loss`` (``loss=dice_ce``, ...).

Each is a ``CombinedLoss`` (registry name ``combined``) of shipped losses, every term on logits;
``python -m lossplug.conf.generate`` writes ``loss/<preset>.yaml``, whose defaults list composes
each term from the term's own ``loss/<name>.yaml``, so every parameter of every term is in the
config (``loss.terms.dice.smooth=0.5``) next to the weights (``loss.weights.ce=0.5``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    terms: tuple[tuple[str, str], ...]  # (term key, registry name), in order
    params: tuple[tuple[str, dict], ...] = ()  # (term key, parameters set by the preset)

    def term_params(self, key: str) -> dict:
        return {"from_logits": True, **dict(self.params).get(key, {})}


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("dice_ce", "Dice + sparse categorical cross-entropy on integer label maps, both on logits.",
               (("dice", "dice"), ("ce", "sparse_categorical_ce"))),
        Preset("dice_bce", "Dice + binary cross-entropy on masks, both on logits.",
               (("dice", "dice"), ("bce", "bce"))),
        Preset("dice_focal", "Dice + categorical focal loss on integer label maps, both on logits.",
               (("dice", "dice"), ("focal", "categorical_focal"))),
    )
}
