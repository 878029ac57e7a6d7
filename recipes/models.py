"""Small model builders, one architecture per builder and the same one in torch and Keras.

Models output logits (or raw values for regression); the loss configs of the classification and
segmentation tasks set ``from_logits: true``. Torch images are channels-first, Keras images
channels-last; the builders take the channels-last ``in_shape`` of the data in both cases.
"""

from __future__ import annotations


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


def segnet(*, framework: str, in_shape: tuple[int, ...], n_outputs: int, width: int = 16):
    """A two-level encoder-decoder (a tiny U-Net): 3×3 convolutions, one pooling, one skip."""
    size, _, channels = in_shape
    if framework == "torch":
        return _TorchSegNet(channels, n_outputs, width)
    import keras
    from keras import layers

    inputs = keras.Input((size, size, channels))
    conv = lambda w: layers.Conv2D(w, 3, padding="same", activation="relu")  # noqa: E731
    skip = conv(width)(conv(width)(inputs))
    deep = conv(2 * width)(conv(2 * width)(layers.MaxPooling2D(2)(skip)))
    up = layers.UpSampling2D(2)(deep)
    out = conv(width)(conv(width)(layers.Concatenate()([up, skip])))
    return keras.Model(inputs, layers.Conv2D(n_outputs, 1)(out), name="segnet")


def _torch_segnet_class():
    import torch
    from torch import nn

    def block(c_in, c_out):
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(c_out, c_out, 3, padding=1), nn.ReLU())

    class SegNet(nn.Module):
        def __init__(self, channels: int, n_outputs: int, width: int):
            super().__init__()
            self.down = block(channels, width)
            self.deep = nn.Sequential(nn.MaxPool2d(2), block(width, 2 * width), nn.Upsample(scale_factor=2))
            self.up = block(3 * width, width)
            self.head = nn.Conv2d(width, n_outputs, 1)

        def forward(self, x):
            skip = self.down(x)
            return self.head(self.up(torch.cat([self.deep(skip), skip], dim=1)))

    return SegNet


def _TorchSegNet(channels, n_outputs, width):  # noqa: N802 (builds the class lazily: torch is optional)
    return _torch_segnet_class()(channels, n_outputs, width)
