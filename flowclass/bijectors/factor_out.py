"""Multi-scale factor-out (RealNVP's split, Dinh et al. 2017): half of the channels leave the flow.

With ``x = [x_1, x_2]`` split on the channel axis and an inner flow ``g``:

    forward:  y = [g(x_1), x_2],     inverse: x = [g⁻¹(y_1), y_2]
    log|det| = log|det J_g(x_1)|

``x_2`` goes to the base density unchanged, so deeper layers work on half the data.
``g`` must preserve the shape of ``x_1``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from flowclass.bijectors.base import Bijector, EventShape


def _split_shape(
    shape: Sequence[int] | None, inner_shape: Callable[[EventShape], EventShape | None]
) -> EventShape | None:
    """``shape`` itself, once its channels are known to split in two halves that ``inner_shape`` keeps."""
    if shape is None:
        return None
    shape = tuple(shape)
    if not shape or shape[-1] % 2:
        raise ValueError(f"factor-out needs an even number of channels; got event shape {shape}.")
    kept = (*shape[:-1], shape[-1] // 2)
    inner = inner_shape(kept)
    if inner is not None and inner != kept:
        raise ValueError(f"the inner flow of FactorOut must preserve event shape {kept}; it gives {inner}.")
    return shape


class FactorOut(Bijector):
    """Applies ``inner`` to the first half of the channels and passes the second half through.

    Takes ``(batch, ..., C)`` with ``C`` even; the event shape and dtype are preserved and the
    log-det is ``inner``'s, shape ``(batch,)``, at least ``float32``.

    Attributes:
      inner: the bijector ``g`` on the first ``C/2`` channels; it must preserve their shape.

    Raises:
      TypeError: when built with an ``inner`` that is not a :class:`Bijector`.
      ValueError: for an odd number of channels, or an ``inner`` that changes the shape.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from flowclass.bijectors import AffineCoupling
      >>> from flowclass.nets import ConvNet
      >>> layer = FactorOut(AffineCoupling(ConvNet((8,)), mask_type="channel"))
      >>> x = jnp.ones((2, 4, 4, 8))
      >>> y, log_det = layer.apply(layer.init(jax.random.key(0), x), x)
      >>> y.shape
      (2, 4, 4, 8)
    """

    inner: Bijector

    def __post_init__(self) -> None:
        if not isinstance(self.inner, Bijector):
            raise TypeError(f"FactorOut.inner must be a flowclass.bijectors.Bijector; got {type(self.inner).__name__}.")
        super().__post_init__()

    @nn.nowrap
    def forward_event_shape(self, in_shape: Sequence[int] | None) -> EventShape | None:
        """``in_shape``, once the channels are even and ``inner`` keeps the half it gets."""
        return _split_shape(in_shape, self.inner.forward_event_shape)

    @nn.nowrap
    def inverse_event_shape(self, out_shape: Sequence[int] | None) -> EventShape | None:
        """``out_shape``, once the channels are even and ``inner``'s inverse keeps the half it gets."""
        return _split_shape(out_shape, self.inner.inverse_event_shape)

    def __call__(self, x: jnp.ndarray, inverse: bool = False) -> tuple[jnp.ndarray, jnp.ndarray]:
        (self.inverse_event_shape if inverse else self.forward_event_shape)(x.shape[1:])  # ValueError if unfit
        kept, factored = jnp.split(x, 2, axis=-1)
        y, log_det = self.inner(kept, inverse=inverse)
        if y.shape != kept.shape:  # for an inner flow whose event-shape map is unknown
            raise ValueError(f"the inner flow of FactorOut must preserve shape {kept.shape}; it gave {y.shape}.")
        return jnp.concatenate([y, factored], axis=-1), log_det
