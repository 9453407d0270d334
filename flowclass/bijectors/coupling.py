"""Mask-based affine coupling (RealNVP, Dinh et al. 2017).

With a binary mask ``m`` (1 = conditioning part) and a conditioner network
``NN`` whose last layer is zero-initialised:

    (ŝ, t)   = Dense_0(NN(m ⊙ x))                 split on the last axis
    s        = (1 − m) ⊙ a ⊙ tanh(ŝ)              log-scale bounded by a learnable a > 0
    forward:  y = x ⊙ exp(s) + (1 − m) ⊙ t
    inverse:  x = (y − (1 − m) ⊙ t) ⊙ exp(−s)     (s, t depend only on m ⊙ x = m ⊙ y)
    log|det ∂y/∂x| = Σ_i s_i

At initialisation ``ŝ = t = 0``, so every coupling starts as the identity.
The conditioner may compute in a lower precision (e.g. ``bfloat16``); its output is cast
to at least ``float32``, so ``s``, ``t`` and the log-det are never below ``float32``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from flowclass.bijectors._log_det import at_least_float32, sum_event
from flowclass.bijectors.base import Bijector, EventShape
from flowclass.bijectors.masks import MaskType, build_mask
from flowclass.nets import default_param_dtype


class AffineCoupling(Bijector):
    """RealNVP affine coupling; ``y, log_det = layer(x)``, ``x, log_det = layer(y, inverse=True)``.

    Shapes: ``(batch, D)`` with an ``'alternating'`` mask, ``(batch, H, W, C)`` with a
    ``'checkerboard'`` or ``'channel'`` mask; the event shape is preserved. ``y`` keeps ``x``'s
    dtype; ``s``, ``t`` and the log-det (shape ``(batch,)``) are at least ``float32``.

    Attributes:
      conditioner: a module mapping ``m ⊙ x`` to features ``(..., H)``; the coupling
        adds a zero-initialised dense projection to ``2 C`` channels (log-scale, shift).
      mask_type: ``'alternating'`` (tabular), ``'checkerboard'`` or ``'channel'`` (images).
      parity: 0 or 1; flips the mask.
      scale_init: initialiser of the log-scale bound ``a`` (shape ``(C,)``; ones by default).

    Raises:
      ValueError: for an event shape the mask does not fit (see :func:`build_mask`), from
        ``forward_event_shape`` and when called.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from flowclass.nets import MLP
      >>> layer = AffineCoupling(MLP(hidden=(16,)), mask_type="alternating")
      >>> x = jnp.ones((3, 2))
      >>> variables = layer.init(jax.random.key(0), x)
      >>> y, log_det = layer.apply(variables, x)
      >>> log_det.shape
      (3,)
    """

    conditioner: nn.Module
    mask_type: MaskType = "alternating"
    parity: int = 0
    scale_init: Callable = nn.initializers.ones

    @nn.compact
    def __call__(self, x: jnp.ndarray, inverse: bool = False) -> tuple[jnp.ndarray, jnp.ndarray]:
        channels = x.shape[-1]
        dtype = at_least_float32(x.dtype)  # s, t and log-dets: never below float32
        mask = jnp.asarray(build_mask(self.mask_type, x.shape[1:], self.parity), dtype)
        hidden = self.conditioner(x * mask.astype(x.dtype)).astype(dtype)  # e.g. from bfloat16 compute
        out = nn.Dense(
            2 * channels,
            kernel_init=nn.initializers.zeros,
            bias_init=nn.initializers.zeros,
            param_dtype=default_param_dtype(),  # float32, float64 under x64 (Flax's default is float32)
            name="zero_proj",
        )(hidden)
        raw_log_scale, shift = jnp.split(out, 2, axis=-1)
        # Parameters in the mode's dtype (float64 under x64, also for float32 inputs), never below float32.
        param_dtype = jnp.promote_types(dtype, default_param_dtype())
        bound = self.param("log_scale_bound", self.scale_init, (channels,), param_dtype)
        log_scale = (1.0 - mask) * bound * jnp.tanh(raw_log_scale)
        shift = (1.0 - mask) * shift
        wide = x.astype(dtype)
        if inverse:
            return ((wide - shift) * jnp.exp(-log_scale)).astype(x.dtype), -sum_event(log_scale)
        return (wide * jnp.exp(log_scale) + shift).astype(x.dtype), sum_event(log_scale)

    @nn.nowrap
    def forward_event_shape(self, in_shape: Sequence[int] | None) -> EventShape | None:
        """``in_shape`` itself, once the mask is known to fit it (``ValueError`` if not)."""
        if in_shape is None:
            return None
        build_mask(self.mask_type, in_shape, self.parity)  # raises ValueError for a shape it does not fit
        return tuple(in_shape)

    @nn.nowrap
    def inverse_event_shape(self, out_shape: Sequence[int] | None) -> EventShape | None:
        """``out_shape`` itself (a coupling preserves the shape both ways)."""
        return self.forward_event_shape(out_shape)
