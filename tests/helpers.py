"""Shared test helpers."""

import jax
import jax.numpy as jnp


def perturb(variables, key, scale=0.3):
    """Adds ``scale · N(0, 1)`` to every parameter (the ``params`` collection only, so fixed
    constants such as permutations stay valid) so zero-initialised layers stop being identities."""
    if "params" not in variables:
        return variables
    leaves, treedef = jax.tree.flatten(variables["params"])
    keys = jax.random.split(key, len(leaves))
    noisy = [leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype) for leaf, k in zip(leaves, keys, strict=True)]
    params = jax.tree.unflatten(treedef, noisy)
    return {**variables, "params": params}


def cast(tree, dtype):
    return jax.tree.map(lambda a: jnp.asarray(a, dtype), tree)
