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

from typing import Callable

import flax.linen as nn
import jax.numpy as jnp

from flowclass.bijectors.masks import MaskType, build_mask


def sum_event(x: jnp.ndarray) -> jnp.ndarray:
    """Sums over every axis but the leading batch axis: ``(B, ...) -> (B,)``."""
    return jnp.sum(x.reshape(x.shape[0], -1), axis=-1)


class AffineCoupling(nn.Module):
    """RealNVP affine coupling; ``y, log_det = layer(x)``, ``x, log_det = layer(y, inverse=True)``.

    Attributes:
      conditioner: a module mapping ``m ⊙ x`` to features ``(..., H)``; the coupling
        adds a zero-initialised dense projection to ``2 C`` channels (log-scale, shift).
      mask_type: ``'alternating'`` (tabular), ``'checkerboard'`` or ``'channel'`` (images).
      parity: 0 or 1; flips the mask.

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
        dtype = jnp.promote_types(x.dtype, jnp.float32)  # s, t and log-dets: never below float32
        mask = jnp.asarray(build_mask(self.mask_type, x.shape[1:], self.parity), dtype)
        hidden = self.conditioner(x * mask.astype(x.dtype)).astype(dtype)  # e.g. from bfloat16 compute
        out = nn.Dense(
            2 * channels,
            kernel_init=nn.initializers.zeros,
            bias_init=nn.initializers.zeros,
            name="zero_proj",
        )(hidden)
        raw_log_scale, shift = jnp.split(out, 2, axis=-1)
        bound = self.param("log_scale_bound", self.scale_init, (channels,), dtype)
        log_scale = (1.0 - mask) * bound * jnp.tanh(raw_log_scale)
        shift = (1.0 - mask) * shift
        wide = x.astype(dtype)
        if inverse:
            return ((wide - shift) * jnp.exp(-log_scale)).astype(x.dtype), -sum_event(log_scale)
        return (wide * jnp.exp(log_scale) + shift).astype(x.dtype), sum_event(log_scale)
