"""Bijectors: Flax modules with ``y, log_det = layer(x)`` and ``x, log_det = layer(y, inverse=True)``."""

from flowclass.bijectors.chain import Chain
from flowclass.bijectors.coupling import AffineCoupling
from flowclass.bijectors.masks import alternating_mask, build_mask, channel_mask, checkerboard_mask

__all__ = [
    "AffineCoupling",
    "Chain",
    "alternating_mask",
    "build_mask",
    "channel_mask",
    "checkerboard_mask",
]
