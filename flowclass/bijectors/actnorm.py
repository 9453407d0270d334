"""ActNorm (Glow, Kingma & Dhariwal 2018): a per-channel affine map with data-dependent init.

    forward:  y = (x + b) ⊙ exp(s),   inverse: x = y ⊙ exp(−s) − b
    log|det| = (number of positions per channel) · Σ_c s_c

At ``init`` the parameters are set from the initialisation batch so that ``y`` has zero
mean and unit variance per channel: ``b = −mean(x)``, ``s = −log(std(x) + ε)``. They live
in the ``params`` collection, so checkpoints keep them; give ``init`` a representative batch.

A degenerate initialisation batch gets a bounded fallback, never a huge scale:

* the statistics use only the finite entries of each channel (a NaN or inf in the batch does not
  make the variables NaN); a channel with no finite entry starts at ``b = 0``, ``s = 0``;
* a channel whose spread is at most ``min_std`` (a constant channel, or a batch of one example
  where there is one position per channel, as for tabular data) carries no information on its
  scale, so its scale starts at 1 (``s = 0``) and only its mean is removed. Before, ``s`` was
  ``−log ε = 13.8`` there: a scale of a million, after which every other input gave −inf.

So ``s ≤ −log(min_std) ≈ 6.9`` at init. Why a fallback rather than an error: ``init`` runs traced
(under ``jit`` or ``jax.eval_shape``), where values cannot be inspected without a host sync, and
initialising on one dummy example to get shapes is the common Flax idiom; scale 1 is the neutral
choice where the data say nothing, and training moves it from there.
"""

from __future__ import annotations

import math
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from flowclass.bijectors._log_det import at_least_float32, constant_log_det
from flowclass.bijectors.base import Bijector


class ActNorm(Bijector):
    """Per-channel scale and shift over the last axis, initialised from data.

    Takes ``(batch, ..., C)`` in any floating dtype and keeps shape and dtype; the log-det, shape
    ``(batch,)``, is in ``x``'s dtype promoted to at least ``float32``, as are the parameters
    ``bias`` and ``log_scale`` (shape ``(C,)``; ``float64`` for ``float64`` inputs under x64).

    ``init`` sets ``b = −mean`` and ``s = −log(std + eps)`` per channel from the finite entries
    of the batch it is given (NaN and inf entries are left out; a channel without a finite entry
    starts at ``b = s = 0``). A channel whose standard deviation is at most ``min_std`` (a
    constant channel, or a batch of one example of tabular data) starts with scale 1 (``s = 0``),
    not ``1/std``: such a batch says nothing about the scale, and ``1/(0 + eps)`` was a scale of a
    million that sent every other input to −inf. Hence ``s ≤ −log(min_std) ≈ 6.9`` at init. This
    bounded fallback, rather than an error, because ``init`` runs traced (``jit``,
    ``jax.eval_shape``), where values cannot be checked without a host sync, and initialising on a
    dummy example to get shapes is common; give ``init`` a representative batch.

    Attributes:
      eps: added to the standard deviation at init, ``s = −log(std + eps)`` (≥ 0).
      min_std: channels of the initialisation batch whose standard deviation is at most this
        (≥ 0) start with scale 1 instead of ``1/std``.

    Raises:
      ValueError: for ``eps`` or ``min_std`` negative or not finite (when built).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (256, 4))
      >>> layer = ActNorm()
      >>> y, _ = layer.apply(layer.init(jax.random.key(1), x), x)
      >>> bool(abs(float(y.mean())) < 1e-4 and abs(float(y.std()) - 1) < 1e-3)
      True
      >>> layer.init(jax.random.key(1), jnp.ones((1, 4)))["params"]["log_scale"].tolist()  # one example
      [0.0, 0.0, 0.0, 0.0]
    """

    eps: float = 1e-6
    min_std: float = 1e-3
    preserves_event_shape: ClassVar[bool] = True

    def __post_init__(self) -> None:
        for name in ("eps", "min_std"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ValueError(f"ActNorm {name} must be a finite number >= 0; got {value!r}.")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jnp.ndarray, inverse: bool = False) -> tuple[jnp.ndarray, jnp.ndarray]:
        dtype = at_least_float32(x.dtype)  # float32 parameters; float64 ones for float64 inputs (x64)
        bias = self.param("bias", lambda _: self._initial(x, dtype)[0])
        log_scale = self.param("log_scale", lambda _: self._initial(x, dtype)[1])
        positions = math.prod(x.shape[1:-1])
        log_det = constant_log_det(positions * jnp.sum(log_scale).astype(dtype), x)
        if inverse:
            return x * jnp.exp(-log_scale).astype(x.dtype) - bias.astype(x.dtype), -log_det
        return (x + bias.astype(x.dtype)) * jnp.exp(log_scale).astype(x.dtype), log_det

    @nn.nowrap
    def _initial(self, x: jnp.ndarray, dtype) -> tuple[jnp.ndarray, jnp.ndarray]:
        """``(b, s)`` from the finite entries of ``x`` per channel, with the fallbacks of the module doc."""
        axes = tuple(range(x.ndim - 1))
        wide = x.astype(dtype)
        finite = jnp.isfinite(wide)
        count = jnp.maximum(jnp.sum(finite, axis=axes), 1)
        mean = jnp.sum(jnp.where(finite, wide / count, 0.0), axis=axes)  # each term ≤ max/count: no overflow
        centred = jnp.where(finite, wide - mean, 0.0)
        # log std from logsumexp of 2 log|x − mean|: neither overflows for huge entries nor underflows
        log_abs = jnp.log(jnp.abs(jnp.where(centred != 0, centred, 1.0)))
        log_abs = jnp.where(centred != 0, log_abs, -jnp.inf)
        log_std = 0.5 * (jax.nn.logsumexp(2.0 * log_abs, axis=axes) - jnp.log(count.astype(dtype)))
        informative = log_std > (math.log(self.min_std) if self.min_std > 0 else -math.inf)
        log_eps = math.log(self.eps) if self.eps > 0 else -math.inf
        log_scale = jnp.where(informative, -jnp.logaddexp(jnp.where(informative, log_std, 0.0), log_eps), 0.0)
        return -mean, log_scale
