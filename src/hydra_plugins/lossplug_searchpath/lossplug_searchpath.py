"""Adds lossplug's shipped config groups to every Hydra app's search path.

Hydra imports every module under the ``hydra_plugins`` namespace; this one imports no deep-learning
framework, so ``defaults: [loss: dice]`` costs an app nothing until it instantiates the loss.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class LossplugSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="lossplug", path="pkg://lossplug.conf")
