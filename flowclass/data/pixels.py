"""Pixel-level transforms for quantised images in [0, 1], usable inside jitted steps.

With ``b = floor(x · n)`` the bin of a pixel among ``n`` levels (n = 256 for 8-bit images):

    bin_centres(x)       = (b + ½) / n                    deterministic, for evaluation
    dequantize(key, x)   = (b + u) / n,  u ~ U[0, 1)       uniform dequantisation, for training

Training a density on dequantised data bounds the discrete likelihood: ``log P(b) ≥
E_u log p((b + u)/n) − D log n``, which is why bits/dim add ``log2 n``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp


def pixel_bins(x: jnp.ndarray, num_bins: int = 256) -> jnp.ndarray:
    """``floor(x · n)`` clipped to ``[0, n − 1]`` (works for pixels scaled by 1/255 or 1/256).

    >>> pixel_bins(jnp.array([0.0, 0.5, 1.0]), num_bins=4).tolist()
    [0.0, 2.0, 3.0]
    """
    return jnp.clip(jnp.floor(x * num_bins), 0, num_bins - 1)


def bin_centres(x: jnp.ndarray, num_bins: int = 256) -> jnp.ndarray:
    """Each pixel moved to the centre of its bin.

    >>> bin_centres(jnp.array([0.0, 0.3, 1.0]), num_bins=4).tolist()
    [0.125, 0.375, 0.875]
    """
    return (pixel_bins(x, num_bins) + 0.5) / num_bins


def dequantize(key: jax.Array, x: jnp.ndarray, num_bins: int = 256) -> jnp.ndarray:
    """Each pixel drawn uniformly within its bin.

    >>> x = dequantize(jax.random.key(0), jnp.full((2, 3), 0.3), num_bins=4)
    >>> bool(jnp.all((x >= 0.25) & (x < 0.5)))
    True
    """
    return (pixel_bins(x, num_bins) + jax.random.uniform(key, x.shape, x.dtype)) / num_bins


def random_shift(key: jax.Array, x: jnp.ndarray, max_shift: int = 2) -> jnp.ndarray:
    """Translates each NHWC image by up to ``max_shift`` pixels in each direction, zero fill.

    >>> shifted = random_shift(jax.random.key(0), jnp.ones((4, 8, 8, 1)), max_shift=2)
    >>> shifted.shape, bool(shifted.sum() <= 4 * 8 * 8)
    ((4, 8, 8, 1), True)
    """
    if max_shift == 0:
        return x
    b, h, w, _ = x.shape
    padded = jnp.pad(x, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))
    offsets = jax.random.randint(key, (b, 2), 0, 2 * max_shift + 1)

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, image.shape[-1]))

    return jax.vmap(crop)(padded, offsets)


@dataclasses.dataclass(frozen=True)
class Compose:
    """Applies ``transforms`` (each ``(key, x) -> x``) in order with independent keys; hashable,
    so it can be a static argument of a jitted step.

    >>> augment = Compose((dequantize, random_shift))
    >>> augment(jax.random.key(0), jnp.zeros((2, 8, 8, 1))).shape
    (2, 8, 8, 1)
    """

    transforms: tuple[Callable[[jax.Array, jnp.ndarray], jnp.ndarray], ...]

    def __call__(self, key: jax.Array, x: jnp.ndarray) -> jnp.ndarray:
        for transform, k in zip(self.transforms, jax.random.split(key, len(self.transforms)), strict=True):
            x = transform(k, x)
        return x
