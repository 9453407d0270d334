"""Squeeze (space-to-depth): each 2×2 spatial block becomes 4 channels.

    forward:  (B, H, W, C) → (B, H/2, W/2, 4C),   inverse: the reverse.
    log|det| = 0 (a permutation of the entries).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


class Squeeze(nn.Module):
    """``y, 0 = Squeeze()(x)`` trades spatial resolution for channels, volume-preserving.

    Example:
      >>> import jax.numpy as jnp
      >>> y, log_det = Squeeze().apply({}, jnp.zeros((2, 4, 4, 1)))
      >>> y.shape
      (2, 2, 2, 4)
    """

    @nn.compact
    def __call__(self, x: jnp.ndarray, inverse: bool = False) -> tuple[jnp.ndarray, jnp.ndarray]:
        b, h, w, c = x.shape
        zero = jnp.zeros((b,), jnp.promote_types(x.dtype, jnp.float32))
        if inverse:
            if c % 4:
                raise ValueError(f"inverse squeeze needs channels divisible by 4; got shape {x.shape}.")
            y = x.reshape(b, h, w, 2, 2, c // 4).transpose(0, 1, 3, 2, 4, 5)
            return y.reshape(b, 2 * h, 2 * w, c // 4), zero
        if h % 2 or w % 2:
            raise ValueError(f"squeeze needs even height and width; got shape {x.shape}.")
        y = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
        return y.reshape(b, h // 2, w // 2, 4 * c), zero
