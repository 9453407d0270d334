"""Sequential composition of bijectors.

For layers ``f_1, ..., f_L`` written in that order, ``Chain`` computes

    forward:  y = f_L ∘ ... ∘ f_1 (x),      log|det J| = Σ_l log|det J_{f_l}|
    inverse:  x = f_1⁻¹ ∘ ... ∘ f_L⁻¹ (y),  with the log-dets of the inverses summed.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


class Chain(nn.Module):
    """Applies ``layers`` in the order written; inverts them in reverse order.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from flowclass.bijectors import AffineCoupling
      >>> from flowclass.nets import MLP
      >>> flow = Chain([AffineCoupling(MLP((8,)), parity=p) for p in (0, 1)])
      >>> variables = flow.init(jax.random.key(0), jnp.zeros((1, 2)))
      >>> z, log_det = flow.apply(variables, jnp.ones((4, 2)))
      >>> z.shape, log_det.shape
      ((4, 2), (4,))
    """

    layers: Sequence[nn.Module]

    def __call__(self, x: jnp.ndarray, inverse: bool = False) -> tuple[jnp.ndarray, jnp.ndarray]:
        log_det_dtype = jnp.promote_types(x.dtype, jnp.float32)  # never below float32
        total = jnp.zeros((x.shape[0],), log_det_dtype)
        for layer in reversed(self.layers) if inverse else self.layers:
            x, log_det = layer(x, inverse=inverse)
            total = total + log_det.astype(log_det_dtype)
        return x, total
