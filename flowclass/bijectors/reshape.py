"""Reshape of the event: ``(B, *in_shape) ↔ (B, *out_shape)``, log|det| = 0."""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


class Reshape(nn.Module):
    """Reshapes events from ``in_shape`` to ``out_shape`` (e.g. an image to a vector for dense couplings).

    Example:
      >>> import jax.numpy as jnp
      >>> Reshape((2, 2, 1), (4,)).apply({}, jnp.zeros((3, 2, 2, 1)))[0].shape
      (3, 4)
    """

    in_shape: Sequence[int]
    out_shape: Sequence[int]

    @nn.compact
    def __call__(self, x: jnp.ndarray, inverse: bool = False) -> tuple[jnp.ndarray, jnp.ndarray]:
        if math.prod(self.in_shape) != math.prod(self.out_shape):
            raise ValueError(f"cannot reshape {tuple(self.in_shape)} to {tuple(self.out_shape)}: sizes differ.")
        source, target = (self.out_shape, self.in_shape) if inverse else (self.in_shape, self.out_shape)
        if tuple(x.shape[1:]) != tuple(source):
            raise ValueError(f"expected events of shape {tuple(source)}; got {tuple(x.shape[1:])}.")
        zero = jnp.zeros((x.shape[0],), jnp.promote_types(x.dtype, jnp.float32))
        return x.reshape(x.shape[0], *target), zero
