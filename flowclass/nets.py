"""Networks: conditioner MLPs for couplings and the discriminative baselines."""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

Activation = Callable[[jnp.ndarray], jnp.ndarray]


class MLP(nn.Module):
    """Hidden layers ``h_{l+1} = act(W_l h_l + b_l)``; no output layer.

    Used as a coupling conditioner, where :class:`~flowclass.bijectors.AffineCoupling`
    adds the zero-initialised output projection. ``dtype`` sets the compute dtype
    (e.g. ``jnp.bfloat16`` on TPU); parameters stay ``float32``.
    """

    hidden: Sequence[int] = (100, 100)
    activation: Activation = nn.relu
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        for width in self.hidden:
            x = self.activation(nn.Dense(width, dtype=self.dtype)(x))
        return x


class ConvNet(nn.Module):
    """Hidden ``k × k`` convolutions ``h_{l+1} = act(conv_l(h_l))`` over NHWC images, 'SAME'
    padding; no output layer (a coupling conditioner for image masks)."""

    features: Sequence[int] = (32, 32)
    kernel_size: int = 3
    activation: Activation = nn.relu
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        window = (self.kernel_size, self.kernel_size)
        for width in self.features:
            x = self.activation(nn.Conv(width, window, padding="SAME", dtype=self.dtype)(x))
        return x


class FNN(nn.Module):
    """The seed's discriminative baseline: ``D → 100 → 100 → K`` with ReLU; returns logits.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> net = FNN(num_classes=2)
      >>> variables = net.init(jax.random.key(0), jnp.zeros((1, 2)))
      >>> net.apply(variables, jnp.ones((5, 2))).shape
      (5, 2)
    """

    num_classes: int
    hidden: Sequence[int] = (100, 100)
    activation: Activation = nn.relu

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = MLP(self.hidden, self.activation)(x)
        return nn.Dense(self.num_classes)(x)
