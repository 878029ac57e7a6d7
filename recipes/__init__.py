"""Training recipes for lossplug: every loss trained end to end in Lightning and Keras.

Run ``python -m recipes.train task=segmentation loss=dice framework=torch`` from the repository
root; the Hydra configs live in ``configs/``.
"""
