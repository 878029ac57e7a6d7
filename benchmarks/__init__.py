"""lossplug's benchmark suite: ``python -m benchmarks`` (``--quick`` for the CI smoke run).

Times forward + backward and measures peak memory of every lossplug loss against native torch,
MONAI, the Keras built-ins under XLA (TensorFlow and JAX, each in its own subprocess) and the
hand-written composed formula; checks torch.compile and a training step; writes a Markdown table,
a PNG chart and the raw rows as JSON.
"""
