"""Small model builders, one architecture per builder and the same one in torch and Keras.

Models output logits (or raw values for regression); the loss configs of the classification and
segmentation tasks set ``from_logits: true``. Torch images are channels-first, Keras images
channels-last; the builders take the channels-last ``in_shape`` of the data in both cases.
"""

from __future__ import annotations

import numpy as np

HEAD_BIAS = (None, "log_prior")
NORM = (None, "batch")


def class_priors(labels: np.ndarray, n_outputs: int) -> list[float]:
    """The training pixels' (or samples') class frequencies: a label map's bincount over ``n_outputs``
    classes, or for one output (a binary mask) the fraction of positives."""
    labels = np.asarray(labels)
    if n_outputs == 1:
        return [float(np.mean(labels > 0.5))]
    counts = np.bincount(labels.reshape(-1).astype(np.int64), minlength=n_outputs)[:n_outputs]
    return (counts / counts.sum()).tolist()


def prior_logits(priors: list[float], eps: float = 1e-4) -> np.ndarray:
    """Final-layer biases whose softmax (or, for one output, sigmoid) is ``priors`` — the prior
    initialisation of RetinaNet (Lin et al. 2017): the net starts at the class frequencies, not at
    uniform probabilities."""
    p = np.clip(np.asarray(priors, dtype=np.float64), eps, 1.0 - eps)
    if len(p) == 1:
        return np.log(p / (1.0 - p)).astype(np.float32)
    logits = np.log(p)
    return (logits - logits.mean()).astype(np.float32)


def builder_kwargs(model_cfg, labels: np.ndarray, n_outputs: int) -> dict:
    """What a model builder needs from the data besides its shapes: the class priors when the
    config asks for ``head_bias: log_prior``."""
    head_bias = model_cfg.get("head_bias")
    if head_bias not in HEAD_BIAS:
        raise ValueError(f"model.head_bias must be one of {HEAD_BIAS}, not {head_bias!r}")
    return {"class_priors": class_priors(labels, n_outputs)} if head_bias == "log_prior" else {}


def mlp(*, framework: str, in_shape: tuple[int, ...], n_outputs: int, hidden: list[int] = ()):
    """A multilayer perceptron with ReLU hidden layers; ``hidden=[]`` is a linear model."""
    (n_in,) = in_shape
    hidden = list(hidden)
    if framework == "torch":
        from torch import nn

        layers, width = [], n_in
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        return nn.Sequential(*layers, nn.Linear(width, n_outputs))
    import keras

    layers = [keras.Input((n_in,))] + [keras.layers.Dense(h, activation="relu") for h in hidden]
    return keras.Sequential([*layers, keras.layers.Dense(n_outputs)], name="mlp")


def segnet(*, framework: str, in_shape: tuple[int, ...], n_outputs: int, width: int = 16, depth: int = 2,
           head_bias: str | None = None, class_priors: list[float] | None = None, norm: str | None = None):
    """A tiny U-Net: two 3×3 convolutions per level, ``depth`` poolings (width doubling), skips.

    ``head_bias``: ``None`` keeps the framework's initial bias of the final 1×1 convolution (torch:
    uniform in ±1/√fan_in, Keras: zeros);
    ``"log_prior"`` sets it to :func:`prior_logits` of ``class_priors`` (the recipes pass the
    training labels' frequencies, :func:`builder_kwargs`).

    ``norm``: ``None`` (the default) is conv → ReLU; ``"batch"`` puts a batch normalisation between
    every 3×3 convolution and its ReLU (conv → BN → ReLU, not the 1×1 head), the same in both
    frameworks: torch's ``BatchNorm2d`` defaults (momentum 0.1, eps 1e-5), Keras's
    ``BatchNormalization(momentum=0.9, epsilon=1e-5)`` (Keras's momentum is the running average's
    keep fraction, torch's the update fraction).
    """
    size, _, channels = in_shape
    if size % 2**depth:
        raise ValueError(f"segnet: image size {size} is not divisible by 2**depth = {2**depth}")
    if head_bias not in HEAD_BIAS:
        raise ValueError(f"segnet: head_bias must be one of {HEAD_BIAS}, not {head_bias!r}")
    bias = None
    if head_bias == "log_prior":
        if class_priors is None or len(class_priors) != n_outputs:
            raise ValueError(f"segnet: head_bias='log_prior' needs {n_outputs} class_priors, "
                             f"got {class_priors}")
        bias = prior_logits(class_priors)
    if norm not in NORM:
        raise ValueError(f"segnet: norm must be one of {NORM}, not {norm!r}")
    if framework == "torch":
        import torch

        net = _torch_segnet_class()(channels, n_outputs, width, depth, norm)
        if bias is not None:
            with torch.no_grad():
                net.head.bias.copy_(torch.from_numpy(bias))
        return net
    import keras
    from keras import layers

    def block(x, w):
        for _ in range(2):
            if norm == "batch":
                x = layers.Conv2D(w, 3, padding="same")(x)
                x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)
                x = layers.Activation("relu")(x)
            else:
                x = layers.Conv2D(w, 3, padding="same", activation="relu")(x)
        return x

    inputs = keras.Input((size, size, channels))
    skips, x = [], inputs
    for level in range(depth):
        x = block(x, width * 2**level)
        skips.append(x)
        x = layers.MaxPooling2D(2)(x)
    x = block(x, width * 2**depth)
    for level in reversed(range(depth)):
        x = block(layers.Concatenate()([layers.UpSampling2D(2)(x), skips[level]]), width * 2**level)
    head = layers.Conv2D(n_outputs, 1)
    model = keras.Model(inputs, head(x), name="segnet")
    if bias is not None:
        head.bias.assign(bias)
    return model


def _torch_segnet_class():
    import torch
    from torch import nn

    def conv(c_in, c_out, norm):
        layers = [nn.Conv2d(c_in, c_out, 3, padding=1)]
        if norm == "batch":
            layers.append(nn.BatchNorm2d(c_out))
        return [*layers, nn.ReLU()]

    class SegNet(nn.Module):
        def __init__(self, channels: int, n_outputs: int, width: int, depth: int, norm: str | None = None):
            super().__init__()

            def block(c_in, c_out):
                return nn.Sequential(*conv(c_in, c_out, norm), *conv(c_out, c_out, norm))

            widths = [width * 2**level for level in range(depth + 1)]
            inputs = [channels] + widths[:-2]
            pairs = zip(inputs, widths[:-1], strict=True)
            self.down = nn.ModuleList(block(c_in, c_out) for c_in, c_out in pairs)
            self.bottom = block(widths[-2], widths[-1])
            self.up = nn.ModuleList(block(widths[level + 1] + widths[level], widths[level])
                                    for level in reversed(range(depth)))
            self.pool, self.upsample = nn.MaxPool2d(2), nn.Upsample(scale_factor=2)
            self.head = nn.Conv2d(width, n_outputs, 1)

        def forward(self, x):
            skips = []
            for block_ in self.down:
                x = block_(x)
                skips.append(x)
                x = self.pool(x)
            x = self.bottom(x)
            for block_, skip in zip(self.up, reversed(skips), strict=True):
                x = block_(torch.cat([self.upsample(x), skip], dim=1))
            return self.head(x)

    return SegNet
