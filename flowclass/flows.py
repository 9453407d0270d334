"""Ready-made flow classifiers."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn

from flowclass.bijectors import AffineCoupling, Chain
from flowclass.classifier import FlowClassifier
from flowclass.distributions import ClassGaussians, Covariance, as_means
from flowclass.nets import MLP, Activation


def tabular_realnvp(
    num_features: int,
    num_classes: int,
    *,
    num_couplings: int = 5,
    hidden: Sequence[int] = (100, 100),
    activation: Activation = nn.relu,
    means="normal",
    mean_scale: float = 1.0,
    trainable_means: bool = False,
    covariance: Covariance = "identity",
    trainable_weights: bool = False,
    dtype=None,
) -> FlowClassifier:
    """RealNVP for tabular data: ``num_couplings`` alternating-mask affine couplings
    with MLP conditioners ``D → hidden → 2D``, and one Gaussian per class.

    ``means`` is ``'normal'``, ``'uniform'`` or an explicit ``(K, D)`` array, e.g. the
    seed's moons means ``((-4, 0), (4, 0))``. ``dtype`` is the conditioners' compute dtype.

    Example:
      >>> model = tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> len(model.flow.layers)
      5
    """
    if not isinstance(means, str):
        means = as_means(means)
    couplings = [
        AffineCoupling(MLP(tuple(hidden), activation, dtype), mask_type="alternating", parity=i % 2)
        for i in range(num_couplings)
    ]
    base = ClassGaussians(
        num_classes,
        (num_features,),
        means=means,
        mean_scale=mean_scale,
        trainable_means=trainable_means,
        covariance=covariance,
        trainable_weights=trainable_weights,
    )
    return FlowClassifier(Chain(couplings), base)
