"""Adds lossplug's shipped config group ``loss`` to every Hydra app's search path.

Hydra imports every module under the ``hydra_plugins`` namespace when it builds its search path;
this one imports no deep-learning framework (nor lossplug), so ``defaults: [loss: dice]`` costs an
app nothing until it instantiates the loss.

It also stores one node in Hydra's ConfigStore, as Hydra's own plugins store their configs: an
empty node whose OmegaConf flag ``struct`` is False. Each ``loss/<name>.yaml`` merges it
(``defaults: [/lossplug_open_loss_node@_here_, _self_]``), so after composition the ``loss`` node
keeps struct=False while the rest of the app's config stays in Hydra's struct mode. A misspelt
override such as ``loss.delt=0.5`` therefore composes, and ``hydra.utils.instantiate(cfg.loss)``
rejects it with ``lossplug.LossParameterError`` naming the loss and its parameters; without the
node Hydra stops at composition with "Key 'delt' is not in struct", which names neither.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.config_store import ConfigStore
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import OmegaConf

OPEN_NODE = "lossplug_open_loss_node"  # the name lossplug/conf/generate.py writes into each YAML


def _open_node():
    node = OmegaConf.create({})
    OmegaConf.set_struct(node, False)
    return node


ConfigStore.instance().store(name=OPEN_NODE, node=_open_node(), provider="lossplug")


class LossplugSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="lossplug", path="pkg://lossplug.conf")
