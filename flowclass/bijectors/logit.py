"""Logit preprocessing for data in [0, 1] (RealNVP): maps the unit box to the real line.

    p = α + (1 − 2α) x,        y = log p − log(1 − p)
    inverse: x = (sigmoid(y) − α) / (1 − 2α)
    log|det| = Σ_i [log(1 − 2α) − log p_i − log(1 − p_i)]

``α`` keeps ``p`` away from 0 and 1, where the logit diverges.
"""

from __future__ import annotations

import math
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from flowclass.bijectors._log_det import at_least_float32, sum_event
from flowclass.bijectors.base import Bijector


class LogitTransform(Bijector):
    """``y = logit(α + (1 − 2α) x)`` with its exact log-det; the first layer of image flows.

    Example:
      >>> import jax.numpy as jnp
      >>> y, log_det = LogitTransform(alpha=0.05).apply({}, jnp.full((1, 2), 0.5))
      >>> y.tolist()
      [[0.0, 0.0]]
    """

    alpha: float = 0.05
    preserves_event_shape: ClassVar[bool] = True

    @nn.compact
    def __call__(self, x: jnp.ndarray, inverse: bool = False) -> tuple[jnp.ndarray, jnp.ndarray]:
        scale = 1.0 - 2.0 * self.alpha
        dtype = at_least_float32(x.dtype)
        if inverse:
            y = x.astype(dtype)
            p = jax.nn.sigmoid(y)
            log_det = sum_event(jnp.log(p) + jnp.log1p(-p) - math.log(scale))
            return ((p - self.alpha) / scale).astype(x.dtype), log_det
        p = self.alpha + scale * x.astype(dtype)
        log_det = sum_event(math.log(scale) - jnp.log(p) - jnp.log1p(-p))
        return (jnp.log(p) - jnp.log1p(-p)).astype(x.dtype), log_det
