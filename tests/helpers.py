"""Shared test helpers."""

import jax
import jax.numpy as jnp
import numpy as np


def perturb(variables, key, scale=0.3):
    """Adds ``scale · N(0, 1)`` to every parameter (the ``params`` collection only, so fixed
    constants such as permutations stay valid) so zero-initialised layers stop being identities.

    The noise is drawn and added by NumPy (from a generator seeded with ``key``'s data): JAX's
    normal draws would compile one random-number program per parameter shape (0.1-0.4 s each on CPU)."""
    if "params" not in variables:
        return variables
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    noisy = jax.tree.map(lambda leaf: np.asarray(leaf, np.float64) + scale * rng.standard_normal(leaf.shape),
                         variables["params"])
    return {**variables, "params": jax.tree.map(lambda a, leaf: jnp.asarray(a, leaf.dtype), noisy, variables["params"])}


def cast(tree, dtype):
    return jax.tree.map(lambda a: jnp.asarray(a, dtype), tree)
