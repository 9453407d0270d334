"""Reshape of the event: ``(B, *in_shape) ↔ (B, *out_shape)``, log|det| = 0."""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from flowclass.bijectors._log_det import zero_log_det
from flowclass.bijectors.base import Bijector, EventShape


def _reshaped(shape: Sequence[int] | None, source: Sequence[int], target: Sequence[int]) -> EventShape:
    """``target`` if events of ``shape`` (``None``: unknown) may be reshaped from ``source`` to it."""
    if math.prod(source) != math.prod(target):
        raise ValueError(f"cannot reshape {tuple(source)} to {tuple(target)}: sizes differ.")
    if shape is not None and tuple(shape) != tuple(source):
        raise ValueError(f"expected events of shape {tuple(source)}; got {tuple(shape)}.")
    return tuple(target)


class Reshape(Bijector):
    """Reshapes events from ``in_shape`` to ``out_shape`` (e.g. an image to a vector for dense couplings).

    ``(batch, *in_shape) → (batch, *out_shape)``, any dtype; the log-det is zero, shape
    ``(batch,)``, at least ``float32``. Both event shapes are known without data, so a
    :class:`Chain` checks its neighbours when it is built.

    Raises:
      ValueError: if the sizes of ``in_shape`` and ``out_shape`` differ, or events of another
        shape come in, from the event-shape methods and when called.

    Example:
      >>> import jax.numpy as jnp
      >>> Reshape((2, 2, 1), (4,)).apply({}, jnp.zeros((3, 2, 2, 1)))[0].shape
      (3, 4)
    """

    in_shape: Sequence[int]
    out_shape: Sequence[int]

    @nn.nowrap
    def forward_event_shape(self, in_shape: Sequence[int] | None) -> EventShape | None:
        """``out_shape``; ``in_shape`` must be ``None`` or this layer's ``in_shape``."""
        return _reshaped(in_shape, self.in_shape, self.out_shape)

    @nn.nowrap
    def inverse_event_shape(self, out_shape: Sequence[int] | None) -> EventShape | None:
        """``in_shape``; ``out_shape`` must be ``None`` or this layer's ``out_shape``."""
        return _reshaped(out_shape, self.out_shape, self.in_shape)

    @nn.compact
    def __call__(self, x: jnp.ndarray, inverse: bool = False) -> tuple[jnp.ndarray, jnp.ndarray]:
        source, target = (self.out_shape, self.in_shape) if inverse else (self.in_shape, self.out_shape)
        target = _reshaped(x.shape[1:], source, target)
        zero = zero_log_det(x)
        return x.reshape(x.shape[0], *target), zero
