"""ActNorm (Glow, Kingma & Dhariwal 2018): a per-channel affine map with data-dependent init.

    forward:  y = (x + b) ⊙ exp(s),   inverse: x = y ⊙ exp(−s) − b
    log|det| = (number of positions per channel) · Σ_c s_c

At ``init`` the parameters are set from the initialisation batch so that ``y`` has zero
mean and unit variance per channel: ``b = −mean(x)``, ``s = −log(std(x) + ε)``. They live
in the ``params`` collection, so checkpoints keep them; give ``init`` a representative batch.
"""

from __future__ import annotations

import math
from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from flowclass.bijectors._log_det import constant_log_det
from flowclass.bijectors.base import Bijector


class ActNorm(Bijector):
    """Per-channel scale and shift over the last axis, initialised from data.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (256, 4))
      >>> layer = ActNorm()
      >>> y, _ = layer.apply(layer.init(jax.random.key(1), x), x)
      >>> bool(abs(float(y.mean())) < 1e-4 and abs(float(y.std()) - 1) < 1e-3)
      True
    """

    eps: float = 1e-6
    preserves_event_shape: ClassVar[bool] = True

    @nn.compact
    def __call__(self, x: jnp.ndarray, inverse: bool = False) -> tuple[jnp.ndarray, jnp.ndarray]:
        axes = tuple(range(x.ndim - 1))
        bias = self.param("bias", lambda _: -jnp.mean(x, axis=axes).astype(jnp.float32))
        log_scale = self.param("log_scale", lambda _: -jnp.log(jnp.std(x, axis=axes) + self.eps).astype(jnp.float32))
        positions = math.prod(x.shape[1:-1])
        log_det = constant_log_det(positions * jnp.sum(log_scale), x)
        if inverse:
            return x * jnp.exp(-log_scale).astype(x.dtype) - bias.astype(x.dtype), -log_det
        return (x + bias.astype(x.dtype)) * jnp.exp(log_scale).astype(x.dtype), log_det
