"""The Hydra config groups lossplug ships (``loss/``), found through ``pkg://lossplug.conf``."""
