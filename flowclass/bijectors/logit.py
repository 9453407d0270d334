"""Logit preprocessing for data in [0, 1] (RealNVP): maps the unit box to the real line.

With ``s = 1 − 2α``, ``p = α + s x`` and ``q = 1 − p = α + s (1 − x)``:

    forward:  y = log p − log q = logit(p)
    inverse:  x = (sigmoid(y) − α) / s
    log|det ∂y/∂x| = Σ_i [log s − log p_i − log q_i]
    log|det ∂x/∂y| = Σ_i [log sigmoid(y_i) + log sigmoid(−y_i) − log s]
                   = Σ_i [−|y_i| − 2 log(1 + exp(−|y_i|)) − log s]

``α`` keeps ``p`` away from 0 and 1, where the logit diverges.

Every quantity is computed in a form that stays finite and accurate to a few units in the last
place over the whole real line, in ``float32`` as in ``float64`` (the naive ``log(1 − sigmoid(y))``
is −inf once ``sigmoid(y)`` rounds to 1, i.e. for ``y ≥ 17`` in ``float32``):

* ``q`` is computed as ``α + s (1 − x)``, not as ``1 − p``, so it keeps its digits as ``x → 1``;
* ``y`` near 0 (``p ≈ q``) as ``log1p((p − q) / q)`` with ``p − q = s (2x − 1)``, so it keeps its
  relative accuracy where ``log p − log q`` would cancel;
* the inverse log-det through ``|y|`` and ``log1p(exp(−|y|))``;
* the inverse near ``x = 0`` (``y ≈ logit(α)``, where ``sigmoid(y) − α`` would cancel) through the
  identity ``sigmoid(y) − α = α · sigmoid(−y) · expm1(y − logit(α))``, with ``logit(α)`` split into
  two floats so the difference is exact.

The inverse maps the real line onto the open interval ``(−α/s, (1 − α)/s)`` (``(0, 1)`` for
``α = 0``); where the exact value rounds onto an end of that interval (``|y|`` large) the output is
the nearest float strictly inside, so ``x`` never leaves the interval and, for ``α = 0``, pixels
stay in ``(0, 1)`` (the smallest positive output is the smallest normal float of the dtype,
``1.2e-38`` in ``float32``). The forward map is exact to a few ulps on ``[0, 1]``, the pixels it
is meant for; outside ``[0, 1]`` (``α > 0``), within a few ulps of the ends of the interval, ``p``
or ``q`` lose their digits to cancellation, so the forward image of a saturated inverse is finite
(e.g. −19.4 for ``α = 0.05``) or ∓inf, not the latent it came from.
"""

from __future__ import annotations

import functools
import math
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flowclass.bijectors._log_det import at_least_float32, sum_event
from flowclass.bijectors.base import Bijector


@functools.lru_cache(maxsize=None)
def _constants(alpha: float, compute: str, out: str) -> tuple[float, float, float, float]:
    """``(logit_hi, logit_lo, low, high)`` for ``alpha``: ``logit(α) = logit_hi + logit_lo`` as two
    floats of dtype ``compute``, and the floats of dtype ``out`` closest to the ends of
    ``(−α/s, (1 − α)/s)`` and strictly inside it."""
    compute_dtype, out_dtype = jnp.dtype(compute), jnp.dtype(out)
    scale = 1.0 - 2.0 * alpha
    if alpha > 0:
        logit = math.log(alpha) - math.log1p(-alpha)
        hi = compute_dtype.type(logit)
        lo = compute_dtype.type(logit - float(hi))
    else:
        hi = lo = compute_dtype.type(0.0)
    bounds = []
    for end, inward in ((-alpha / scale, np.inf), ((1.0 - alpha) / scale, -np.inf)):
        if end == 0.0:
            bounds.append(float(jnp.finfo(out_dtype).tiny))  # the smallest normal: subnormals may flush to 0
            continue
        near = out_dtype.type(end)
        if (float(near) <= end) if inward > 0 else (float(near) >= end):
            near = np.nextafter(near, out_dtype.type(inward))
        bounds.append(float(near))
    return float(hi), float(lo), bounds[0], bounds[1]


class LogitTransform(Bijector):
    """``y = logit(α + (1 − 2α) x)`` with its exact log-det; the first layer of image flows.

    Elementwise, so any shape ``(batch, ...)``; the event shape and ``x``'s dtype are kept, and the
    log-det, shape ``(batch,)``, is in ``x``'s dtype promoted to at least ``float32``. Forward takes
    ``x`` in ``[0, 1]`` (pixels; ``x = 0`` or ``1`` with ``α = 0`` gives ∓inf, the exact value); the
    map extends to the open interval ``(−α/(1 − 2α), (1 − α)/(1 − 2α))``. Inverse takes any real
    ``y`` and returns ``x`` strictly inside that interval (where ``sigmoid(y)`` rounds to 0 or 1, the
    nearest float inside; for ``α = 0``, pixels in ``(0, 1)``). Both directions and both log-dets
    are finite and accurate to a few ulps wherever the exact value is a finite (normal) float, in
    ``float32`` as in ``float64``: saturated logits and far tails included (the inverse log-det is
    ``−|y| − 2 log1p(exp(−|y|)) − log(1 − 2α)`` per entry, never ``log(1 − p)`` after ``p`` rounded
    to 1), and near ``y = 0`` and ``x = 0`` too (no cancellation; see the module source).

    Attributes:
      alpha: ``α`` in ``[0, 0.5)``: the margin that keeps ``p`` in ``[α, 1 − α]`` for ``x`` in ``[0, 1]``.

    Raises:
      ValueError: for ``alpha`` outside ``[0, 0.5)`` or not a finite number (when built).

    Example:
      >>> import jax.numpy as jnp
      >>> y, log_det = LogitTransform(alpha=0.05).apply({}, jnp.full((1, 2), 0.5))
      >>> y.tolist()
      [[0.0, 0.0]]
      >>> x, log_det = LogitTransform(alpha=0.05).apply({}, jnp.array([[17.0, -104.0]]), inverse=True)
      >>> round(float(log_det[0]), 3)  # log σ(y) + log σ(−y) − log 0.9, summed over the two
      -120.789
    """

    alpha: float = 0.05
    preserves_event_shape: ClassVar[bool] = True

    def __post_init__(self) -> None:
        try:
            ok = bool(math.isfinite(self.alpha) and 0.0 <= self.alpha < 0.5) and not isinstance(self.alpha, bool)
        except TypeError:
            ok = False
        if not ok:
            raise ValueError(f"LogitTransform alpha must be a number in [0, 0.5); got {self.alpha!r}.")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jnp.ndarray, inverse: bool = False) -> tuple[jnp.ndarray, jnp.ndarray]:
        alpha = float(self.alpha)
        scale = 1.0 - 2.0 * alpha
        log_scale = math.log(scale)
        dtype = at_least_float32(x.dtype)
        if inverse:
            out, log_det = self._inverse(x.astype(dtype), alpha, scale, log_scale, x.dtype)
            return out.astype(x.dtype), log_det
        wide = x.astype(dtype)
        p = alpha + scale * wide
        q = alpha + scale * (1.0 - wide)  # = 1 − p; 1 − x is exact for x in [1/2, 1], so no cancellation
        far = jnp.log(p) - jnp.log(q)
        near_zero = (p <= 2.0 * q) & (q <= 2.0 * p)  # p/q in [1/2, 2]: log p − log q would cancel
        ratio = jnp.where(near_zero, scale * (2.0 * wide - 1.0) / q, 0.0)
        y = jnp.where(near_zero, jnp.log1p(ratio), far)
        log_det = sum_event(log_scale - jnp.log(p) - jnp.log(q))
        return y.astype(x.dtype), log_det

    @nn.nowrap
    def _inverse(self, y: jnp.ndarray, alpha: float, scale: float, log_scale: float, out_dtype):
        logit_hi, logit_lo, low, high = _constants(alpha, jnp.dtype(y.dtype).name, jnp.dtype(out_dtype).name)
        magnitude = jnp.abs(y)
        log_det = sum_event(-magnitude - 2.0 * jnp.log1p(jnp.exp(-magnitude)) - log_scale)
        x = (jax.nn.sigmoid(y) - alpha) / scale
        if alpha > 0:
            # σ(y) − α = α σ(−y) expm1(y − logit α): no cancellation where x ≈ 0. y − logit_hi is
            # exact there (Sterbenz), so d carries only the rounding of one subtraction. The barrier
            # stops XLA from folding the two constants into one under jit (which loses the split).
            d = jax.lax.optimization_barrier(y - logit_hi) - logit_lo
            near = jnp.abs(d) < 1.0
            d = jnp.where(near, d, 0.0)  # keeps expm1 finite in the branch not taken (and its gradient)
            x = jnp.where(near, alpha * jax.nn.sigmoid(-y) * jnp.expm1(d) / scale, x)
        # strictly inside the open interval, also where σ(y) rounds to 0 or 1; the bounds are floats of
        # the output dtype, so the cast that follows keeps them (rounding is monotone)
        return jnp.clip(x, low, high), log_det
