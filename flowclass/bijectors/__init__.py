"""Bijectors: Flax modules with ``y, log_det = layer(x)`` and ``x, log_det = layer(y, inverse=True)``.

Every one subclasses :class:`Bijector`, which names the contract: ``forward_and_log_det``,
``inverse_and_log_det`` and the event-shape maps that :class:`Chain` checks.
"""

from flowclass.bijectors.actnorm import ActNorm
from flowclass.bijectors.base import Bijector
from flowclass.bijectors.chain import Chain
from flowclass.bijectors.conv1x1 import InvertibleConv1x1
from flowclass.bijectors.coupling import AffineCoupling
from flowclass.bijectors.factor_out import FactorOut
from flowclass.bijectors.logit import LogitTransform
from flowclass.bijectors.masks import alternating_mask, build_mask, channel_mask, checkerboard_mask
from flowclass.bijectors.reshape import Reshape
from flowclass.bijectors.squeeze import Squeeze

__all__ = [
    "ActNorm",
    "AffineCoupling",
    "Bijector",
    "Chain",
    "FactorOut",
    "InvertibleConv1x1",
    "LogitTransform",
    "Reshape",
    "Squeeze",
    "alternating_mask",
    "build_mask",
    "channel_mask",
    "checkerboard_mask",
]
