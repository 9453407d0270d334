"""The bijector contract: one base class for every invertible layer of a flow.

A bijector is an invertible, differentiable map ``f`` between event spaces with a Jacobian
determinant known in closed form. On a batch ``x`` of shape ``(batch, *event_shape)``:

    forward:  y = f(x),     log_det = log|det ∂f(x)/∂x|            per example, shape (batch,)
    inverse:  x = f⁻¹(y),   log_det = log|det ∂f⁻¹(y)/∂y| = −log|det ∂f(x)/∂x|

which is what the change of variables ``log p_X(x) = log p_Y(f(x)) + log|det ∂f(x)/∂x|``
needs (Rezende & Mohamed 2015; Papamakarios et al. 2021, "Normalizing Flows for Probabilistic
Modeling and Inference"). The method names follow distrax's ``Bijector``
(``forward_and_log_det``, ``inverse_and_log_det``, ``forward_event_shape``); here a bijector
is a Flax Linen module, so it may own parameters and is used through ``init``/``apply``.
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import flax.linen as nn
import jax.numpy as jnp

EventShape = tuple[int, ...]


class Bijector(nn.Module):
    """Base class of every bijector: ``forward_and_log_det``, ``inverse_and_log_det``, event shapes.

    The contract, for ``x`` of shape ``(batch, *in_shape)`` and any floating dtype:

    * ``y, log_det = layer.forward_and_log_det(x)``: ``y`` has shape ``(batch, *out_shape)``
      and ``x``'s dtype; ``log_det = log|det ∂y/∂x|`` has shape ``(batch,)`` (one value per
      example, summed over the event axes, in closed form) and dtype ``x.dtype`` promoted to at
      least ``float32``, so it is ``float64`` when ``x`` is (under ``jax_enable_x64``).
    * ``x, log_det = layer.inverse_and_log_det(y)``: the inverse map and ``log|det ∂x/∂y|``,
      so the two log-dets of a round trip sum to zero.
    * ``layer(x)`` and ``layer(x, inverse=True)`` are the short forms of the two; all three
      give the same numbers from the same jitted graph.
    * ``forward_event_shape(in_shape)`` / ``inverse_event_shape(out_shape)``: the map between
      event shapes (no batch axis) where it is known without data, ``None`` where it is not; a
      shape the layer cannot take raises ``ValueError``. :class:`Chain` uses them to check
      neighbouring layers when it is built and when it is called.

    Writing a bijector: subclass ``Bijector`` and define ``__call__(self, x, inverse=False)`` as
    the module's one ``@nn.compact`` method (Flax allows a single compact method per module).
    Declare the parameters before branching on ``inverse``, so that both directions read the same
    parameters under the same names; the named methods above call ``__call__`` and add nothing
    to the graph. For the event shapes, set ``preserves_event_shape = True`` (the map is then the
    identity on shapes) or override the two event-shape methods. (The library's own layers
    share their float32 promotion and log-det helpers in the private ``bijectors._log_det``.)

    Example:
      >>> import flax.linen as nn, jax, jax.numpy as jnp
      >>> class Shift(Bijector):
      ...     '''y = x + b with a learned b; log|det| = 0.'''
      ...     preserves_event_shape = True
      ...
      ...     @nn.compact
      ...     def __call__(self, x, inverse=False):
      ...         b = self.param("b", nn.initializers.ones, x.shape[-1:])  # one b, both directions
      ...         zero = jnp.zeros((x.shape[0],), jnp.promote_types(x.dtype, jnp.float32))
      ...         return (x - b, zero) if inverse else (x + b, zero)
      >>> layer = Shift()
      >>> variables = layer.init(jax.random.key(0), jnp.zeros((2, 3)))
      >>> y, log_det = layer.apply(variables, jnp.zeros((2, 3)), method="forward_and_log_det")
      >>> y.tolist(), log_det.shape
      ([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]], (2,))
      >>> layer.apply(variables, y, method="inverse_and_log_det")[0].tolist()
      [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
      >>> layer.forward_event_shape((3,))
      (3,)
    """

    preserves_event_shape: ClassVar[bool] = False
    """``True`` for layers whose output event shape is their input event shape."""

    def __call__(self, x: jnp.ndarray, inverse: bool = False) -> tuple[jnp.ndarray, jnp.ndarray]:
        """``(y, log|det ∂y/∂x|)``, or with ``inverse=True`` ``(f⁻¹(x), log|det ∂f⁻¹(x)/∂x|)``.

        Subclasses implement this (as their one ``@nn.compact`` method when they own parameters).

        Raises:
          NotImplementedError: on the base class itself.
        """
        raise NotImplementedError(f"{type(self).__name__} must define __call__(x, inverse=False).")

    def forward_and_log_det(self, x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """``y = f(x)`` and ``log|det ∂f(x)/∂x|``.

        Args:
          x: shape ``(batch, *in_shape)``, a floating dtype.

        Returns:
          ``y`` of shape ``(batch, *out_shape)`` in ``x``'s dtype, and the log-det of shape
          ``(batch,)`` in ``x``'s dtype promoted to at least ``float32``.
        """
        return self(x)

    def inverse_and_log_det(self, y: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """``x = f⁻¹(y)`` and ``log|det ∂f⁻¹(y)/∂y|`` (the negated forward log-det at ``x``).

        Args:
          y: shape ``(batch, *out_shape)``, a floating dtype.

        Returns:
          ``x`` of shape ``(batch, *in_shape)`` in ``y``'s dtype, and the log-det of shape
          ``(batch,)`` in ``y``'s dtype promoted to at least ``float32``.
        """
        return self(y, inverse=True)

    @nn.nowrap
    def forward_event_shape(self, in_shape: Sequence[int] | None) -> EventShape | None:
        """The event shape of ``f(x)`` for events ``x`` of shape ``in_shape`` (no batch axis).

        Returns ``None`` when it is not known without data (or ``in_shape`` is ``None``).

        Raises:
          ValueError: if the layer cannot take events of shape ``in_shape``.
        """
        return tuple(in_shape) if in_shape is not None and self.preserves_event_shape else None

    @nn.nowrap
    def inverse_event_shape(self, out_shape: Sequence[int] | None) -> EventShape | None:
        """The event shape of ``f⁻¹(y)`` for events ``y`` of shape ``out_shape``; ``None`` if unknown.

        Raises:
          ValueError: if the layer cannot give events of shape ``out_shape``.
        """
        return tuple(out_shape) if out_shape is not None and self.preserves_event_shape else None
