"""Sequential composition of bijectors.

For layers ``f_1, ..., f_L`` written in that order, ``Chain`` computes

    forward:  y = f_L ∘ ... ∘ f_1 (x),      log|det J| = Σ_l log|det J_{f_l}|
    inverse:  x = f_1⁻¹ ∘ ... ∘ f_L⁻¹ (y),  with the log-dets of the inverses summed.

The log-dets add by the chain rule, ``det(A B) = det A · det B``. Like distrax's ``Chain``
it checks its layers when it is built, but it applies them in the order written (distrax
applies the last one first).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from flowclass.bijectors._log_det import zero_log_det
from flowclass.bijectors.base import Bijector, EventShape


def _describe(layers: Sequence[Bijector], i: int) -> str:
    return f"layers[{i}] ({type(layers[i]).__name__})"


def _propagate(layers: Sequence[Bijector], shape: Sequence[int] | None, inverse: bool) -> EventShape | None:
    """The event shape after ``layers`` (in reverse for ``inverse``) from ``shape``; ``None`` if unknown.

    Raises a ``ValueError`` naming both layers when one gives a shape its neighbour cannot take.
    """
    known = None if shape is None else tuple(shape)
    previous = None
    for i in reversed(range(len(layers))) if inverse else range(len(layers)):
        layer = layers[i]
        try:
            known = layer.inverse_event_shape(known) if inverse else layer.forward_event_shape(known)
        except ValueError as err:
            if previous is None or known is None:  # nothing came from a neighbour: the layer's own error
                raise ValueError(f"Chain {_describe(layers, i)}: {err}") from err
            first, second = sorted((previous, i))
            if inverse:
                detail = f"{_describe(layers, second)} takes events of shape {known}, which {_describe(layers, first)}"
                detail += " cannot give"
            else:
                detail = f"{_describe(layers, first)} gives events of shape {known}, which {_describe(layers, second)}"
                detail += " cannot take"
            raise ValueError(
                f"Chain {_describe(layers, first)} and {_describe(layers, second)} do not fit: {detail}: {err}"
            ) from err
        previous = i
    return known


class Chain(Bijector):
    """Applies ``layers`` in the order written; inverts them in reverse order.

    Shapes and dtypes are those of the layers; the log-det, shape ``(batch,)``, is summed in
    ``x.dtype`` promoted to at least ``float32``.

    Attributes:
      layers: the bijectors ``f_1, ..., f_L``, applied first to last.

    Raises:
      TypeError: when built with ``layers`` that is not a sequence of :class:`Bijector`
        (naming the index and what came).
      ValueError: when two neighbouring layers do not fit: when built, where both event shapes
        are known without data (e.g. a :class:`Reshape` next to a layer that cannot take its
        shape), and when called, for the actual shapes; the message names both layers and the shape.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from flowclass.bijectors import AffineCoupling, Reshape
      >>> from flowclass.nets import MLP
      >>> flow = Chain([AffineCoupling(MLP((8,)), parity=p) for p in (0, 1)])
      >>> variables = flow.init(jax.random.key(0), jnp.zeros((1, 2)))
      >>> z, log_det = flow.apply(variables, jnp.ones((4, 2)))
      >>> z.shape, log_det.shape
      ((4, 2), (4,))
      >>> Chain([Reshape((2, 2), (4,)), Reshape((2, 2), (4,))])  # doctest: +ELLIPSIS
      Traceback (most recent call last):
        ...
      ValueError: Chain layers[0] (Reshape) and layers[1] (Reshape) do not fit: ... shape (4,), ...
    """

    layers: Sequence[Bijector]

    def __post_init__(self) -> None:
        if isinstance(self.layers, (nn.Module, str)) or not isinstance(self.layers, Sequence):
            raise TypeError(f"Chain.layers must be a sequence of Bijectors; got {type(self.layers).__name__}.")
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Bijector):
                kind = "module" if isinstance(layer, nn.Module) else "object"
                raise TypeError(
                    f"Chain.layers[{i}] must be a flowclass.bijectors.Bijector; "
                    f"got a {type(layer).__name__} {kind}, which is not one."
                )
        _propagate(self.layers, None, inverse=False)  # shapes known without data (e.g. Reshape's)
        _propagate(self.layers, None, inverse=True)
        super().__post_init__()

    @nn.nowrap
    def forward_event_shape(self, in_shape: Sequence[int] | None) -> EventShape | None:
        """The event shape after every layer, or ``None`` when a layer's is unknown."""
        return _propagate(self.layers, in_shape, inverse=False)

    @nn.nowrap
    def inverse_event_shape(self, out_shape: Sequence[int] | None) -> EventShape | None:
        """The event shape after every layer's inverse, last layer first, or ``None``."""
        return _propagate(self.layers, out_shape, inverse=True)

    def __call__(self, x: jnp.ndarray, inverse: bool = False) -> tuple[jnp.ndarray, jnp.ndarray]:
        _propagate(self.layers, x.shape[1:], inverse)  # static shapes: checked while tracing, not in the graph
        total = zero_log_det(x)  # never below float32
        for layer in reversed(self.layers) if inverse else self.layers:
            x, log_det = layer(x, inverse=inverse)
            total = total + log_det.astype(total.dtype)
        return x, total
