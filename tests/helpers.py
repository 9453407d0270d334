"""Shared test helpers."""

import jax
import jax.numpy as jnp


def perturb(variables, key, scale=0.3):
    """Adds ``scale · N(0, 1)`` to every parameter so zero-initialised layers stop being identities."""
    leaves, treedef = jax.tree.flatten(variables)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        treedef, [leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype) for leaf, k in zip(leaves, keys)]
    )


def cast(tree, dtype):
    return jax.tree.map(lambda a: jnp.asarray(a, dtype), tree)
