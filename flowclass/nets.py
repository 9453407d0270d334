"""Networks: conditioner MLPs for couplings and the discriminative baselines."""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp
from jax.typing import DTypeLike

Activation = Callable[[jnp.ndarray], jnp.ndarray]


class MLP(nn.Module):
    """Hidden layers ``h_{l+1} = act(W_l h_l + b_l)``; no output layer.

    Used as a coupling conditioner, where :class:`~flowclass.bijectors.AffineCoupling`
    adds the zero-initialised output projection. ``dtype`` sets the compute dtype
    (e.g. ``jnp.bfloat16`` on TPU); parameters stay ``float32``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> net = MLP(hidden=(16, 8))
      >>> net.apply(net.init(jax.random.key(0), jnp.zeros((1, 2))), jnp.ones((3, 2))).shape
      (3, 8)
    """

    hidden: Sequence[int] = (100, 100)
    activation: Activation = nn.relu
    dtype: DTypeLike | None = None

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        for width in self.hidden:
            x = self.activation(nn.Dense(width, dtype=self.dtype)(x))
        return x


class ConvNet(nn.Module):
    """Hidden ``k × k`` convolutions ``h_{l+1} = act(conv_l(h_l))`` over NHWC images, 'SAME'
    padding; no output layer (a coupling conditioner for image masks).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> net = ConvNet(features=(4, 4))
      >>> x = jnp.ones((2, 8, 8, 1))
      >>> net.apply(net.init(jax.random.key(0), x), x).shape
      (2, 8, 8, 4)
    """

    features: Sequence[int] = (32, 32)
    kernel_size: int = 3
    activation: Activation = nn.relu
    dtype: DTypeLike | None = None

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


def concat_elu(x: jnp.ndarray) -> jnp.ndarray:
    """``[elu(x), elu(−x)]`` on the channel axis: keeps sign information, doubles channels."""
    return nn.elu(jnp.concatenate([x, -x], axis=-1))


class GatedConvBlock(nn.Module):
    """Residual gated block: ``h + a ⊙ sigmoid(g)``, ``[a, g] = conv1x1(concat_elu(conv3x3(concat_elu(h))))``,
    followed by a per-position layer norm over channels."""

    features: int
    dtype: DTypeLike | None = None

    @nn.compact
    def __call__(self, h: jnp.ndarray) -> jnp.ndarray:
        out = nn.Conv(self.features, (3, 3), padding="SAME", dtype=self.dtype)(concat_elu(h))
        out = nn.Conv(2 * self.features, (1, 1), dtype=self.dtype)(concat_elu(out))
        value, gate = jnp.split(out, 2, axis=-1)
        return nn.LayerNorm(dtype=self.dtype)(h + value * nn.sigmoid(gate))


class GatedConvNet(nn.Module):
    """The seed's coupling conditioner: conv3x3 to ``features``, ``num_blocks`` gated blocks,
    then ``concat_elu`` (the coupling adds the zero-initialised output projection).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> net = GatedConvNet(features=8, num_blocks=1)
      >>> x = jnp.ones((2, 8, 8, 1))
      >>> net.apply(net.init(jax.random.key(0), x), x).shape  # concat_elu doubles the channels
      (2, 8, 8, 16)
    """

    features: int = 32
    num_blocks: int = 3
    dtype: DTypeLike | None = None

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        h = nn.Conv(self.features, (3, 3), padding="SAME", dtype=self.dtype)(x)
        for _ in range(self.num_blocks):
            h = GatedConvBlock(self.features, self.dtype)(h)
        return concat_elu(h)


class CNN(nn.Module):
    """The seed's MNIST baseline: conv 1→10 7×7, conv 10→10 5×5 (valid padding), linear 3240→50,
    linear 50→10, ReLU between; returns logits.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> net = CNN()
      >>> net.apply(net.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1))), jnp.zeros((2, 28, 28, 1))).shape
      (2, 10)
    """

    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = nn.relu(nn.Conv(10, (7, 7), padding="VALID")(x))
        x = nn.relu(nn.Conv(10, (5, 5), padding="VALID")(x))
        x = nn.relu(nn.Dense(50)(x.reshape(x.shape[0], -1)))
        return nn.Dense(self.num_classes)(x)
