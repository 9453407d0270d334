"""Pixel-level transforms for quantised images in [0, 1], usable inside jitted steps.

With ``b = floor(x · n)`` the bin of a pixel among ``n`` levels (n = 256 for 8-bit images):

    bin_centres(x)       = (b + ½) / n                    deterministic, for evaluation
    dequantize(key, x)   = (b + u) / n,  u ~ U[0, 1)       uniform dequantisation, for training

Both stay in the half-open bin ``[b/n, (b + 1)/n)`` of the input, as :func:`pixel_bins` sees it
(``pixel_bins(out) == pixel_bins(x)``), hence in ``[0, 1)``, also in ``float32`` and ``bfloat16``:
``b + u`` rounds up to ``b + 1`` for ``u`` close to 1 (``255 + (1 − 2⁻²⁴)`` is ``256.0`` in float32,
which would give the pixel value 1.0), so a value that rounds out of its bin is moved back into
it by one or two ulps.

Training a density on dequantised data bounds the discrete likelihood: ``log P(b) ≥
E_u log p((b + u)/n) − D log n``, which is why bits/dim add ``log2 n``.

:func:`image_pipeline` is the one place that decides what a model sees: the training-time
transforms (augmentation, dequantisation) and the evaluation-time pixels (bin centres for flows).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Callable

import jax
import jax.numpy as jnp
import jax.scipy.ndimage
import numpy as np
from numpy.typing import ArrayLike


def pixel_bins(x: jnp.ndarray, num_bins: int = 256) -> jnp.ndarray:
    """``floor(x · n)`` clipped to ``[0, n − 1]`` (works for pixels scaled by 1/255 or 1/256).

    >>> pixel_bins(jnp.array([0.0, 0.5, 1.0]), num_bins=4).tolist()
    [0.0, 2.0, 3.0]
    """
    return jnp.clip(jnp.floor(x * num_bins), 0, num_bins - 1)


def _into_bins(y: jnp.ndarray, bins: jnp.ndarray, num_bins: int) -> jnp.ndarray:
    """``y`` moved by at most two ulps so that ``pixel_bins(y) == bins`` (undoes the rounding of
    ``(b + t) / n`` out of bin ``b``); ``floor(y · n)`` is monotone in ``y``, so a step towards the
    bin never overshoots it."""
    zero, one = jnp.zeros((), y.dtype), jnp.ones((), y.dtype)
    for _ in range(2):
        seen = jnp.floor(y * num_bins)
        y = jnp.where(seen > bins, jnp.nextafter(y, zero), jnp.where(seen < bins, jnp.nextafter(y, one), y))
    return y


def bin_centres(x: jnp.ndarray, num_bins: int = 256) -> jnp.ndarray:
    """Each pixel moved to the centre of its bin, ``(b + ½) / n``: shape and dtype of ``x``, in ``[0, 1)``.

    >>> bin_centres(jnp.array([0.0, 0.3, 1.0]), num_bins=4).tolist()
    [0.125, 0.375, 0.875]
    """
    bins = pixel_bins(x, num_bins)
    return _into_bins((bins + 0.5) / num_bins, bins, num_bins)


def dequantize(key: jax.Array, x: jnp.ndarray, num_bins: int = 256) -> jnp.ndarray:
    """Each pixel drawn uniformly within its bin, ``(b + u) / n`` with ``u ~ U[0, 1)``: shape and
    dtype of ``x`` (floating), in ``[b/n, (b + 1)/n) ⊂ [0, 1)`` (``pixel_bins`` of the result is
    ``pixel_bins(x)``), also where ``b + u`` rounds up to ``b + 1``.

    >>> x = dequantize(jax.random.key(0), jnp.full((2, 3), 0.3), num_bins=4)
    >>> bool(jnp.all((x >= 0.25) & (x < 0.5)))
    True
    """
    bins = pixel_bins(x, num_bins)
    return _into_bins((bins + jax.random.uniform(key, x.shape, x.dtype)) / num_bins, bins, num_bins)


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


# Value-hashable transforms: equal pipelines give equal ``augment`` callables, so a jitted step
# that takes ``augment`` as a static argument compiles once per configuration, not once per call.


@dataclasses.dataclass(frozen=True)
class _RandomAffine:
    max_degrees: float
    max_scale: float

    def __call__(self, key: jax.Array, x: jnp.ndarray) -> jnp.ndarray:
        return random_affine(key, x, self.max_degrees, self.max_scale)


@dataclasses.dataclass(frozen=True)
class _Dequantize:
    num_bins: int

    def __call__(self, key: jax.Array, x: jnp.ndarray) -> jnp.ndarray:
        return dequantize(key, x, self.num_bins)


@dataclasses.dataclass(frozen=True)
class _RandomShift:
    max_shift: int

    def __call__(self, key: jax.Array, x: jnp.ndarray) -> jnp.ndarray:
        return random_shift(key, x, self.max_shift)


@dataclasses.dataclass(frozen=True)
class ImagePipeline:
    """What a model sees of NHWC images with pixels in ``[0, 1]``, in training and in evaluation.
    Make one with :func:`image_pipeline` (the fields are its arguments, validated the same way).

    * :attr:`augment` ``(key, x) -> x``, run inside the jitted training step on each batch, in
      this order: a random rotation by ``θ ~ U[−degrees, degrees]`` degrees and scaling by
      ``s ~ U[1 − scale, 1 + scale]`` (:func:`random_affine`, if ``degrees`` or ``scale``);
      uniform dequantisation within each pixel's bin, ``(b + u) / num_bins`` (:func:`dequantize`,
      if ``dequantise``); a random translation by up to ``shift`` pixels, zero fill
      (:func:`random_shift`, if ``shift``). ``None`` when there is nothing to do. The keys of
      the steps are split from ``key`` as :class:`Compose` does.
    * :meth:`evaluate` ``(x) -> x``: the pixels validation, test and attacks score. With
      ``dequantise`` (flows, whose density is trained on dequantised pixels) each pixel moves
      to its bin centre ``(b + ½) / num_bins`` (:func:`bin_centres`); otherwise it is unchanged.

    Frozen and hashable: equal pipelines give equal ``augment`` callables (one compiled step).

    Example:
      >>> pipeline = ImagePipeline(dequantise=True, shift=2)
      >>> pipeline.augment(jax.random.key(0), jnp.zeros((2, 8, 8, 1))).shape
      (2, 8, 8, 1)
      >>> float(pipeline.evaluate(np.zeros((1, 2, 2, 1)))[0, 0, 0, 0])  # the centre of bin 0
      0.001953125
    """

    dequantise: bool
    shift: int = 0
    degrees: float = 0.0
    scale: float = 0.0
    num_bins: int = 256

    def __post_init__(self) -> None:
        if not isinstance(self.dequantise, (bool, np.bool_)):
            raise ValueError(f"dequantise must be True or False; got {self.dequantise!r}.")
        if isinstance(self.shift, (bool, np.bool_)) or not isinstance(self.shift, numbers.Integral) or self.shift < 0:
            raise ValueError(f"shift must be an integer >= 0 (pixels); got {self.shift!r}.")
        if not _is_real(self.degrees) or self.degrees < 0:
            raise ValueError(f"degrees must be a finite number >= 0; got {self.degrees!r}.")
        if not _is_real(self.scale) or not 0.0 <= self.scale < 1.0:
            raise ValueError(f"scale must be in [0, 1) (scaling by a factor in [1 − scale, 1 + scale]); "
                             f"got {self.scale!r}.")
        if (isinstance(self.num_bins, (bool, np.bool_)) or not isinstance(self.num_bins, numbers.Integral)
                or self.num_bins < 2):
            raise ValueError(f"num_bins must be an integer >= 2; got {self.num_bins!r}.")
        # plain Python numbers: the pipeline is then hashable, printable and JSON-serialisable
        for name, kind in (("dequantise", bool), ("shift", int), ("degrees", float), ("scale", float),
                           ("num_bins", int)):
            object.__setattr__(self, name, kind(getattr(self, name)))

    @property
    def augment(self) -> Compose | None:
        """The training-time transforms ``(key, x) -> x`` (see the class), or ``None``."""
        transforms: list[Callable[[jax.Array, jnp.ndarray], jnp.ndarray]] = []
        if self.degrees or self.scale:
            transforms.append(_RandomAffine(self.degrees, self.scale))
        if self.dequantise:
            transforms.append(_Dequantize(self.num_bins))
        if self.shift:
            transforms.append(_RandomShift(self.shift))
        return Compose(tuple(transforms)) if transforms else None

    def evaluate(self, x: ArrayLike) -> np.ndarray:
        """The evaluation-time pixels of NHWC images ``x`` (values in ``[0, 1]``), as ``float32``
        of the same shape: bin centres with ``dequantise``, else ``x`` itself.

        Raises:
          ValueError: ``x`` is not a 4-axis array of finite numbers in ``[0, 1]``.
        """
        x = np.asarray(x)
        if x.ndim != 4:
            raise ValueError(f"x must be a batch of NHWC images (4 axes); got shape {x.shape}.")
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise ValueError(f"x must hold pixel values in [0, 1]; got dtype {x.dtype}.")
        x = x.astype(np.float32, copy=False)
        if x.size and not (np.all(np.isfinite(x)) and x.min() >= 0.0 and x.max() <= 1.0):
            raise ValueError("x must hold finite pixel values in [0, 1] (NaN, inf or a value outside "
                             "[0, 1] found; divide 8-bit images by 255).")
        if not self.dequantise:
            return x
        return np.asarray(bin_centres(jnp.asarray(x), self.num_bins), np.float32)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value)


def image_pipeline(
    *, dequantise: bool, shift: int = 0, degrees: float = 0.0, scale: float = 0.0, num_bins: int = 256
) -> ImagePipeline:
    """The pixel pipeline of a model: what it trains on and what it is scored on.

    Flows take ``dequantise=True``: they are trained on uniformly dequantised pixels (a
    continuous density on ``[0, 1]^D`` whose likelihood bounds the discrete one, Theis et al.
    2016, "A note on the evaluation of generative models"; Dinh et al. 2017, RealNVP) and
    evaluated at the bin centres. Discriminative models (CNN, FNN) take ``dequantise=False``
    and see the pixels as stored. ``shift`` (pixels, integer ≥ 0), ``degrees`` (≥ 0) and
    ``scale`` (in ``[0, 1)``) set the random augmentation; ``num_bins`` (≥ 2) the quantisation
    levels (256 for 8-bit images). See :class:`ImagePipeline` for the transforms and their order.

    Raises:
      ValueError: an argument is out of range; the message names it.

    Example:
      >>> flow = image_pipeline(dequantise=True, shift=2)
      >>> cnn = image_pipeline(dequantise=False)
      >>> x = np.full((2, 4, 4, 1), 0.5, np.float32)
      >>> flow.augment(jax.random.key(0), x).shape, cnn.augment is None
      ((2, 4, 4, 1), True)
      >>> float(flow.evaluate(x)[0, 0, 0, 0]), float(cnn.evaluate(x)[0, 0, 0, 0])  # (128 + ½) / 256
      (0.501953125, 0.5)
      >>> image_pipeline(dequantise=False, scale=1.0)
      Traceback (most recent call last):
      ...
      ValueError: scale must be in [0, 1) (scaling by a factor in [1 − scale, 1 + scale]); got 1.0.
    """
    return ImagePipeline(dequantise=dequantise, shift=shift, degrees=degrees, scale=scale, num_bins=num_bins)
