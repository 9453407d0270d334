"""Multi-scale factor-out (RealNVP's split): half of the channels leave the flow.

With ``x = [x_1, x_2]`` split on the channel axis and an inner flow ``g``:

    forward:  y = [g(x_1), x_2],     inverse: x = [g⁻¹(y_1), y_2]
    log|det| = log|det J_g(x_1)|

``x_2`` goes to the base density unchanged, so deeper layers work on half the data.
``g`` must preserve the shape of ``x_1``.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


class FactorOut(nn.Module):
    """Applies ``inner`` to the first half of the channels and passes the second half through.

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

    inner: nn.Module

    def __call__(self, x: jnp.ndarray, inverse: bool = False) -> tuple[jnp.ndarray, jnp.ndarray]:
        channels = x.shape[-1]
        if channels % 2:
            raise ValueError(f"factor-out needs an even number of channels; got shape {x.shape}.")
        kept, factored = jnp.split(x, 2, axis=-1)
        y, log_det = self.inner(kept, inverse=inverse)
        if y.shape != kept.shape:
            raise ValueError(f"the inner flow of FactorOut must preserve shape {kept.shape}; it gave {y.shape}.")
        return jnp.concatenate([y, factored], axis=-1), log_det
