"""Ready-made flow classifiers."""

from __future__ import annotations

import math
from typing import Sequence, cast

import flax.linen as nn
import numpy as np
from jax.typing import DTypeLike
from numpy.typing import ArrayLike

from flowclass._validation import check_positive_int, check_widths
from flowclass.bijectors import (
    ActNorm,
    AffineCoupling,
    Chain,
    FactorOut,
    InvertibleConv1x1,
    LogitTransform,
    Reshape,
    Squeeze,
)
from flowclass.classifier import FlowClassifier
from flowclass.distributions import ClassGaussians, Covariance, MeanInit, as_means
from flowclass.nets import MLP, Activation, ConvNet, GatedConvNet

IMAGE_PRESETS = ("multiscale", "fast")


def _class_gaussians(num_classes, event_shape, means, mean_scale, trainable_means, covariance, trainable_weights):
    return ClassGaussians(
        num_classes,
        tuple(event_shape),
        means=cast(MeanInit, means) if isinstance(means, str) else as_means(means),
        mean_scale=mean_scale,
        trainable_means=trainable_means,
        covariance=covariance,
        trainable_weights=trainable_weights,
    )


def tabular_realnvp(
    num_features: int,
    num_classes: int,
    *,
    num_couplings: int = 5,
    hidden: Sequence[int] = (100, 100),
    activation: Activation = nn.relu,
    means: MeanInit | ArrayLike = "normal",
    mean_scale: float = 1.0,
    trainable_means: bool = False,
    covariance: Covariance = "identity",
    trainable_weights: bool = False,
    dtype: DTypeLike | None = None,
) -> FlowClassifier:
    """RealNVP for tabular data: ``num_couplings`` alternating-mask affine couplings
    with MLP conditioners ``D → hidden → 2D``, and one Gaussian per class.

    ``means`` is ``'normal'``, ``'uniform'``, ``'onehot'`` (see :class:`ClassGaussians`) or an
    explicit ``(K, D)`` array, e.g. the slides' moons means ``((-4, 0), (4, 0))``. ``dtype`` is the
    conditioners' compute dtype.

    Raises:
      ValueError: ``num_features``, ``num_classes`` or ``num_couplings`` is not a positive integer
        (a ``bool``, float, string or ``None`` included), ``hidden`` is not a sequence of positive
        integers, or the base's arguments are refused (see :class:`ClassGaussians`); the message
        names the argument.

    Example:
      >>> model = tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> len(model.flow.layers)
      5
    """
    check_positive_int(num_features, "num_features")
    check_positive_int(num_classes, "num_classes")
    check_positive_int(num_couplings, "num_couplings")
    hidden = check_widths(hidden, "hidden")
    couplings = [
        AffineCoupling(MLP(hidden, activation, dtype), mask_type="alternating", parity=i % 2)
        for i in range(num_couplings)
    ]
    base = _class_gaussians(num_classes, (num_features,), means, mean_scale, trainable_means, covariance,
                            trainable_weights)
    return FlowClassifier(Chain(couplings), base)


def _multiscale_image_flow(input_shape, dtype) -> tuple[list, tuple[int, ...]]:
    """The slides' multi-scale RealNVP (as in the UvA deep-learning course's image flow)."""
    h, w, c = input_shape

    def coupling(features, mask_type, parity):
        return AffineCoupling(GatedConvNet(features, num_blocks=3, dtype=dtype), mask_type=mask_type, parity=parity)

    layers = [
        LogitTransform(),
        coupling(32, "checkerboard", 0),
        coupling(32, "checkerboard", 1),
        Squeeze(),
        coupling(48, "channel", 0),
        coupling(48, "channel", 1),
        Squeeze(),
        FactorOut(Chain([coupling(64, "channel", p % 2) for p in range(4)])),
    ]
    return layers, (h // 4, w // 4, 16 * c)


def _fast_image_flow(input_shape, dtype) -> tuple[list, tuple[int, ...]]:
    """A shallow, wide flow for CPUs: squeeze early, ActNorm + invertible 1×1 conv before every
    conv coupling, two dense couplings on the flattened 7×7×16 code, no factor-out."""
    h, w, c = input_shape

    def step(features, parity):
        return [ActNorm(), InvertibleConv1x1(),
                AffineCoupling(ConvNet((features, features), dtype=dtype), mask_type="channel", parity=parity)]

    latent = (h // 4, w // 4, 16 * c)
    dim = math.prod(latent)
    layers = [LogitTransform(), Squeeze()]
    layers += [layer for p in range(2) for layer in step(64, p)]
    layers += [Squeeze()]
    layers += [layer for p in range(3) for layer in step(96, p)]
    layers += [Reshape(latent, (dim,))]
    layers += [AffineCoupling(MLP((512,), dtype=dtype), mask_type="alternating", parity=p) for p in range(2)]
    return layers, (dim,)


def image_realnvp(
    preset: str = "fast",
    *,
    input_shape: Sequence[int] = (28, 28, 1),
    num_classes: int = 10,
    means: MeanInit | ArrayLike = "normal",
    mean_scale: float = 1.0,
    trainable_means: bool = False,
    covariance: Covariance = "identity",
    trainable_weights: bool = False,
    dtype: DTypeLike | None = None,
) -> FlowClassifier:
    """Multi-scale RealNVP classifier for ``(H, W, C)`` images in [0, 1] (H, W divisible by 4).

    Presets:
      ``'multiscale'``: the multi-scale RealNVP of Dinh et al. (2017) as the slides trained it:
      logit preprocessing, 2 checkerboard couplings (gated conv conditioners, 32 channels,
      3 blocks), squeeze, 2 channel couplings (48), squeeze, factor-out of half the channels,
      4 channel couplings (64) on the rest.
      ``'fast'``: squeeze to 14×14×4, 2 steps of ActNorm → invertible 1×1 conv → channel
      coupling (64), squeeze to 7×7×16, 3 such steps (96), then 2 dense couplings (512)
      on the flattened code.

    The base has one Gaussian per class over all ``H·W·C`` latent dimensions.

    Raises:
      ValueError: ``input_shape`` is not three positive integers with H and W divisible by 4,
        ``num_classes`` is not a positive integer, ``preset`` is unknown, or the base's arguments
        are refused; the message names the argument.

    Example:
      >>> model = image_realnvp("multiscale")
      >>> model.latent_shape
      (7, 7, 16)
    """
    if isinstance(input_shape, np.ndarray) and input_shape.ndim == 1:
        input_shape = tuple(input_shape)
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence) or len(input_shape) != 3:
        raise ValueError(f"input_shape must be (H, W, C) with H and W divisible by 4; got {input_shape!r}.")
    for i, size in enumerate(input_shape):
        check_positive_int(size, f"input_shape[{i}]")
    input_shape = tuple(int(size) for size in input_shape)
    if input_shape[0] % 4 or input_shape[1] % 4:
        raise ValueError(f"input_shape must be (H, W, C) with H and W divisible by 4; got {input_shape}.")
    check_positive_int(num_classes, "num_classes")
    if preset == "multiscale":
        layers, latent = _multiscale_image_flow(input_shape, dtype)
    elif preset == "fast":
        layers, latent = _fast_image_flow(input_shape, dtype)
    else:
        raise ValueError(f"unknown preset {preset!r}; expected one of {IMAGE_PRESETS}.")
    base = _class_gaussians(num_classes, latent, means, mean_scale, trainable_means, covariance, trainable_weights)
    return FlowClassifier(Chain(layers), base, input_shape=input_shape)
