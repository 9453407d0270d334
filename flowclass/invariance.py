"""Classification with the class likelihood marginalised over small image translations.

A flow trained on randomly translated images models ``p(x | k) = Σ_s p(s) p_θ(shift_s⁻¹(x) | k)``
with the translation ``s`` a latent variable. With a uniform ``p(s)`` over a set ``S`` (a translation
of a digit with empty borders only permutes pixels, so it has unit Jacobian):

    log p(x | k) ≈ log (1/|S|) Σ_{s ∈ S} p_θ(shift_s(x) | k)

and Bayes' rule over it gives the shift-marginal logits ``log π_k + log p(x | k)``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from flowclass.data.pixels import translate
from flowclass.training import predict_logits

Shift = tuple[int, int]

ONE_PIXEL_CROSS: tuple[Shift, ...] = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))
"""The identity and the four one-pixel translations: the smallest symmetric shift set."""


def shift_logits(
    apply_fn: Callable,
    variables: Mapping[str, Any],
    x: np.ndarray,
    shifts: Sequence[Shift],
    *,
    batch_size: int = 4096,
) -> np.ndarray:
    """The logits of every translated copy ``shift_s(x)``, ``s ∈ shifts`` (``(dy, dx)`` pixels,
    zero fill), stacked as ``(len(shifts), N, K)``.

    Example:
      >>> import jax, jax.numpy as jnp, flowclass as fc
      >>> model = fc.image_realnvp("fast", input_shape=(8, 8, 1), num_classes=3)
      >>> x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype(np.float32)
      >>> variables = model.init(jax.random.key(0), x)  # ActNorm initialises on the data
      >>> shift_logits(model.apply, variables, x, ONE_PIXEL_CROSS).shape
      (5, 4, 3)
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x must be a batch of NHWC images (4 axes); got shape {x.shape}.")
    if not shifts:
        raise ValueError("shifts must name at least one (dy, dx) translation.")
    images = jnp.asarray(x)
    return np.stack([
        predict_logits(apply_fn, variables, np.asarray(translate(images, jnp.tile(jnp.asarray(s), (len(x), 1)))),
                       batch_size=batch_size)
        for s in shifts
    ])


def marginalise_shifts(per_shift_logits: np.ndarray) -> np.ndarray:
    """``log (1/|S|) Σ_s exp(ℓ_s)`` over the leading (shift) axis of :func:`shift_logits`' output:
    the shift-marginal logits (the class weights ``log π_k`` are the same in every ``ℓ_s``).

    Example:
      >>> ell = np.log(np.array([[[0.2, 0.8]], [[0.6, 0.4]]]))  # 2 shifts, 1 image, 2 classes
      >>> np.exp(marginalise_shifts(ell)).round(3).tolist()
      [[0.4, 0.6]]
    """
    return np.logaddexp.reduce(np.asarray(per_shift_logits), axis=0) - math.log(len(per_shift_logits))


def shift_marginal_logits(
    apply_fn: Callable,
    variables: Mapping[str, Any],
    x: np.ndarray,
    shifts: Sequence[Shift] = ONE_PIXEL_CROSS,
    *,
    batch_size: int = 4096,
) -> np.ndarray:
    """Shift-marginal logits ``log π_k + log (1/|S|) Σ_{s ∈ S} p_θ(shift_s(x) | k)`` of a flow
    classifier over NHWC images ``x``: costs ``|S|`` forward passes.

    Example:
      >>> import jax, jax.numpy as jnp, flowclass as fc
      >>> model = fc.image_realnvp("fast", input_shape=(8, 8, 1), num_classes=3)
      >>> x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype(np.float32)
      >>> variables = model.init(jax.random.key(0), x)  # ActNorm initialises on the data
      >>> plain = fc.predict_logits(model.apply, variables, x)
      >>> bool(np.all(np.isfinite(plain)))
      True
      >>> bool(np.allclose(shift_marginal_logits(model.apply, variables, x, [(0, 0)]), plain, atol=1e-4))
      True
    """
    return marginalise_shifts(shift_logits(apply_fn, variables, x, shifts, batch_size=batch_size))
