"""Additive Gaussian noise as a perturbation ``(key, x) -> x`` for tabular data (the second copy
of FlowGMM-cons's consistency term, :func:`flowclass.make_semi_supervised_loss`)."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class GaussianNoise:
    """``x + std · ε``, ``ε ~ N(0, I)`` of ``x``'s shape and dtype; ``std`` in the input's units.

    Frozen and hashable: equal instances give one compiled training step.

    Raises:
      ValueError: ``std`` not a finite number > 0.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> noisy = GaussianNoise(0.1)(jax.random.key(0), jnp.zeros((1000, 2)))
      >>> noisy.shape, 0.09 < float(noisy.std()) < 0.11
      ((1000, 2), True)
    """

    std: float

    def __post_init__(self) -> None:
        if isinstance(self.std, bool) or not isinstance(self.std, (int, float)) or not (
                math.isfinite(self.std) and self.std > 0):
            raise ValueError(f"std must be a finite number > 0; got {self.std!r}.")
        object.__setattr__(self, "std", float(self.std))

    def __call__(self, key: jax.Array, x: jnp.ndarray) -> jnp.ndarray:
        return x + self.std * jax.random.normal(key, x.shape, x.dtype)
