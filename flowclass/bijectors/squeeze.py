"""Squeeze (space-to-depth): each 2×2 spatial block becomes 4 channels (RealNVP, Dinh et al. 2017).

    forward:  (B, H, W, C) → (B, H/2, W/2, 4C),   inverse: the reverse.
    log|det| = 0 (a permutation of the entries).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from flowclass.bijectors._log_det import zero_log_det
from flowclass.bijectors.base import Bijector, EventShape


def _image_shape(shape: Sequence[int], what: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ValueError(f"{what} needs image events of shape (H, W, C); got event shape {tuple(shape)}.")
    h, w, c = (int(d) for d in shape)
    return h, w, c


class Squeeze(Bijector):
    """``y, 0 = Squeeze()(x)`` trades spatial resolution for channels, volume-preserving.

    Takes ``(batch, H, W, C)`` with even ``H`` and ``W`` (any dtype; the entries are only moved)
    and gives ``(batch, H/2, W/2, 4C)``; the inverse needs ``C`` divisible by 4. The log-det
    is zero, shape ``(batch,)``, at least ``float32``.

    Raises:
      ValueError: for events that are not images, odd ``H`` or ``W`` (forward) or channels
        not divisible by 4 (inverse), from the event-shape methods and when called.

    Example:
      >>> import jax.numpy as jnp
      >>> y, log_det = Squeeze().apply({}, jnp.zeros((2, 4, 4, 1)))
      >>> y.shape
      (2, 2, 2, 4)
      >>> Squeeze().inverse_event_shape((2, 2, 4))
      (4, 4, 1)
    """

    @nn.nowrap
    def forward_event_shape(self, in_shape: Sequence[int] | None) -> EventShape | None:
        """``(H, W, C) → (H/2, W/2, 4C)``."""
        if in_shape is None:
            return None
        h, w, c = _image_shape(in_shape, "squeeze")
        if h % 2 or w % 2:
            raise ValueError(f"squeeze needs even height and width; got event shape {(h, w, c)}.")
        return h // 2, w // 2, 4 * c

    @nn.nowrap
    def inverse_event_shape(self, out_shape: Sequence[int] | None) -> EventShape | None:
        """``(H, W, C) → (2H, 2W, C/4)``."""
        if out_shape is None:
            return None
        h, w, c = _image_shape(out_shape, "inverse squeeze")
        if c % 4:
            raise ValueError(f"inverse squeeze needs channels divisible by 4; got event shape {(h, w, c)}.")
        return 2 * h, 2 * w, c // 4

    @nn.compact
    def __call__(self, x: jnp.ndarray, inverse: bool = False) -> tuple[jnp.ndarray, jnp.ndarray]:
        (self.inverse_event_shape if inverse else self.forward_event_shape)(x.shape[1:])  # ValueError if unfit
        b, h, w, c = x.shape
        zero = zero_log_det(x)
        if inverse:
            y = x.reshape(b, h, w, 2, 2, c // 4).transpose(0, 1, 3, 2, 4, 5)
            return y.reshape(b, 2 * h, 2 * w, c // 4), zero
        y = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
        return y.reshape(b, h // 2, w // 2, 4 * c), zero
