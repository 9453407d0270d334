"""Invertible 1×1 convolution (Glow), LU-parametrised.

A ``C × C`` matrix mixes the channels at every position:

    W = P L (U + diag(sign ⊙ exp(log|s|)))      P fixed permutation, L unit lower, U strictly upper
    forward:  y = x Wᵀ,    inverse: x = y W⁻ᵀ
    log|det| = (number of positions) · Σ_c log|s_c|

``P`` and ``sign`` come from the LU decomposition of a random rotation at init and are
kept fixed in the ``constants`` collection; ``L``, ``U`` and ``log|s|`` are trained.
"""

from __future__ import annotations

import math
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

from flowclass.bijectors._log_det import at_least_float32, constant_log_det
from flowclass.bijectors.base import Bijector


class InvertibleConv1x1(Bijector):
    """Learned invertible channel mixing; works for images ``(B, H, W, C)`` and vectors ``(B, C)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> layer = InvertibleConv1x1()
      >>> x = jnp.ones((2, 3, 3, 4))
      >>> variables = layer.init(jax.random.key(0), x)
      >>> y, log_det = layer.apply(variables, x)
      >>> x_back, _ = layer.apply(variables, y, inverse=True)
      >>> bool(jnp.allclose(x_back, x, atol=1e-5))
      True
    """

    preserves_event_shape: ClassVar[bool] = True

    @nn.compact
    def __call__(self, x: jnp.ndarray, inverse: bool = False) -> tuple[jnp.ndarray, jnp.ndarray]:
        c = x.shape[-1]

        def decomposition(key):
            rotation, _ = jnp.linalg.qr(jax.random.normal(key, (c, c)))
            return jax.scipy.linalg.lu(rotation)  # rotation = P L U

        # One decomposition feeds every initialiser; outside ``init`` Flax only checks
        # the initialisers' shapes, so they then fall back to zeros of the right shape.
        init = decomposition(self.make_rng("params")) if self.is_initializing() else None

        def from_init(pick):
            return lambda *_: pick(init) if init is not None else jnp.zeros_like(pick((eye_c, eye_c, eye_c)))

        eye_c = jnp.eye(c)
        permutation = self.variable("constants", "permutation", from_init(lambda d: d[0]))
        sign = self.variable("constants", "sign", from_init(lambda d: jnp.sign(jnp.diag(d[2]))))
        lower = self.param("lower", from_init(lambda d: jnp.tril(d[1], -1)))
        upper = self.param("upper", from_init(lambda d: jnp.triu(d[2], 1)))
        log_abs_s = self.param("log_abs_s", from_init(lambda d: jnp.log(jnp.abs(jnp.diag(d[2])))))

        dtype = at_least_float32(x.dtype)
        eye = jnp.eye(c, dtype=dtype)
        l_mat = jnp.tril(lower.astype(dtype), -1) + eye
        u_mat = jnp.triu(upper.astype(dtype), 1) + jnp.diag(sign.value.astype(dtype) * jnp.exp(log_abs_s.astype(dtype)))
        p_mat = permutation.value.astype(dtype)
        positions = math.prod(x.shape[1:-1])
        log_det = constant_log_det(positions * jnp.sum(log_abs_s).astype(dtype), x)
        flat = x.reshape(-1, c).astype(dtype)
        if inverse:
            # x = y W^{-T}: solve W xᵀ = yᵀ with W = P L U, i.e. U⁻¹ L⁻¹ Pᵀ yᵀ
            h = solve_triangular(l_mat, p_mat.T @ flat.T, lower=True, unit_diagonal=True)
            out = solve_triangular(u_mat, h, lower=False).T
            return out.reshape(x.shape).astype(x.dtype), -log_det
        weight = p_mat @ l_mat @ u_mat
        return (flat @ weight.T).reshape(x.shape).astype(x.dtype), log_det
