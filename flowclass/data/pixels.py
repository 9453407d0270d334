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
import jax.scipy.ndimage


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


def translate(x: jnp.ndarray, shifts: jnp.ndarray) -> jnp.ndarray:
    """Translates NHWC image ``i`` by ``shifts[i] = (dy, dx)`` pixels (down, right), zero fill:
    ``out[r, c] = x[r − dy, c − dx]`` where that lies inside the image, else 0.

    >>> dot = jnp.zeros((1, 3, 3, 1)).at[0, 1, 1, 0].set(1.0)
    >>> translate(dot, jnp.array([[1, -1]]))[0, ..., 0].tolist()
    [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    """
    _, h, w, _ = x.shape
    rows, cols = jnp.arange(h)[:, None], jnp.arange(w)[None, :]

    def move(image, shift):
        dy, dx = shift[0], shift[1]
        inside = (rows >= dy) & (rows < h + dy) & (cols >= dx) & (cols < w + dx)
        return jnp.where(inside[..., None], jnp.roll(image, (dy, dx), axis=(0, 1)), 0)

    return jax.vmap(move)(x, jnp.asarray(shifts, jnp.int32))


def random_shift(key: jax.Array, x: jnp.ndarray, max_shift: int = 2) -> jnp.ndarray:
    """Translates each NHWC image by up to ``max_shift`` pixels in each direction, zero fill
    (:func:`translate` by shifts drawn uniformly from ``{−max_shift, …, max_shift}²``).

    >>> shifted = random_shift(jax.random.key(0), jnp.ones((4, 8, 8, 1)), max_shift=2)
    >>> shifted.shape, bool(shifted.sum() <= 4 * 8 * 8)
    ((4, 8, 8, 1), True)
    """
    if max_shift == 0:
        return x
    offsets = jax.random.randint(key, (x.shape[0], 2), 0, 2 * max_shift + 1)
    return translate(x, max_shift - offsets)


def affine_warp(x: jnp.ndarray, angle: jnp.ndarray, scale: jnp.ndarray) -> jnp.ndarray:
    """Rotates each NHWC image by ``angle[i]`` radians (counter-clockwise as displayed, rows
    pointing down) and scales it by ``scale[i]`` about its centre: output pixel ``p`` reads the
    input at ``c + R(−angle) (p − c) / scale`` with bilinear interpolation, zero outside.

    >>> image = jnp.arange(9.0).reshape(1, 3, 3, 1)
    >>> turned = affine_warp(image, jnp.array([jnp.pi / 2]), jnp.array([1.0]))
    >>> bool(jnp.allclose(turned[0, ..., 0], jnp.rot90(image[0, ..., 0]), atol=1e-5))
    True
    """
    _, h, w, _ = x.shape
    rows, cols = jnp.meshgrid(jnp.arange(h) - (h - 1) / 2, jnp.arange(w) - (w - 1) / 2, indexing="ij")

    def warp(image, a, s):
        cos, sin = jnp.cos(a) / s, jnp.sin(a) / s
        source = (cos * rows + sin * cols + (h - 1) / 2, -sin * rows + cos * cols + (w - 1) / 2)
        channels = [jax.scipy.ndimage.map_coordinates(image[..., k], source, order=1, mode="constant")
                    for k in range(image.shape[-1])]
        return jnp.stack(channels, axis=-1)

    return jax.vmap(warp)(x, jnp.asarray(angle, x.dtype), jnp.asarray(scale, x.dtype))


def random_affine(key: jax.Array, x: jnp.ndarray, max_degrees: float = 10.0, max_scale: float = 0.1) -> jnp.ndarray:
    """Rotates each NHWC image by ``θ ~ U[−max_degrees, max_degrees]`` degrees and scales it by
    ``s ~ U[1 − max_scale, 1 + max_scale]`` about its centre (:func:`affine_warp`). Interpolated
    pixels fall between the 8-bit levels; :func:`dequantize` afterwards puts them back in a bin.

    >>> warped = random_affine(jax.random.key(0), jnp.ones((4, 8, 8, 1)))
    >>> warped.shape, bool(jnp.all((warped >= 0) & (warped <= 1)))
    ((4, 8, 8, 1), True)
    """
    k_angle, k_scale = jax.random.split(key)
    b = x.shape[0]
    angle = jnp.deg2rad(jax.random.uniform(k_angle, (b,), minval=-max_degrees, maxval=max_degrees))
    scale = jax.random.uniform(k_scale, (b,), minval=1 - max_scale, maxval=1 + max_scale)
    return affine_warp(x, angle, scale)


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
