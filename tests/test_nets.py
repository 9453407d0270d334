"""conv2d: same values and gradients as lax.conv_general_dilated; canonical gradient convs inside loops."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from flowclass.nets import Conv, concat_elu, conv2d

PADDINGS = {"same": ((1, 1), (1, 1)), "valid": ((0, 0), (0, 0))}


def _reference(x, kernel, padding):
    return lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("padding", sorted(PADDINGS))
def test_conv2d_values_gradients_and_forward_mode_match_lax(padding):
    pads = PADDINGS[padding]
    x = jax.random.normal(jax.random.key(0), (3, 6, 5, 4))
    kernel = jax.random.normal(jax.random.key(1), (3, 3, 4, 2))

    def loss(conv):
        return lambda x, k: jnp.sum(jnp.sin(conv(x, k, pads)))

    np.testing.assert_allclose(conv2d(x, kernel, pads), _reference(x, kernel, pads), rtol=1e-6, atol=1e-6)
    ours, theirs = jax.grad(loss(conv2d), (0, 1))(x, kernel), jax.grad(loss(_reference), (0, 1))(x, kernel)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    tangents = (jnp.ones_like(x), jnp.ones_like(kernel))
    np.testing.assert_allclose(jax.jvp(lambda a, b: conv2d(a, b, pads), (x, kernel), tangents)[1],
                               jax.jvp(lambda a, b: _reference(a, b, pads), (x, kernel), tangents)[1],
                               rtol=1e-5, atol=1e-5)


def test_gradients_inside_a_loop_compile_to_canonical_convolutions():
    layer = Conv(4, (3, 3))
    x = jnp.ones((2, 6, 6, 3))
    params = layer.init(jax.random.key(0), x)

    def descend(params, x):
        def step(p, _):
            g = jax.grad(lambda p, x: jnp.sum(layer.apply(p, x) ** 2), (0, 1))(p, x)
            return jax.tree.map(lambda a, b: a - 0.1 * b, p, g[0]), None
        return lax.scan(step, params, None, length=2)[0]

    hlo = jax.jit(descend).lower(params, x).compile().as_text()
    assert set(re.findall(r"dim_labels=([^,\s]+)", hlo)) == {"b01f_01io->b01f"}


def test_concat_elu_values_and_gradients_match_elu_including_at_zero():
    x = jnp.array([[-3.0, -1e-3, 0.0, 1e-3, 2.5]])
    reference = lambda v: nn.elu(jnp.concatenate([v, -v], axis=-1))  # noqa: E731
    np.testing.assert_allclose(concat_elu(x), reference(x), rtol=1e-6, atol=1e-7)
    weights = jnp.arange(1.0, 11.0)
    grad = jax.grad(lambda v: (concat_elu(v) * weights).sum())(x)
    grad_reference = jax.grad(lambda v: (reference(v) * weights).sum())(x)
    np.testing.assert_allclose(grad, grad_reference, rtol=1e-6, atol=1e-7)
