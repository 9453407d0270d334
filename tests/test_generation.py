import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowclass as fc
from flowclass.generation import class_samples, image_grid, interpolate, prototypes

from helpers import perturb


@pytest.fixture(scope="module")
def model_and_variables():
    model = fc.tabular_realnvp(2, 3, num_couplings=3, hidden=(16,), means="normal", mean_scale=4.0)
    variables = perturb(jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 2))), jax.random.key(1))
    return model, variables


def test_interpolation_end_points_reproduce_the_inputs_and_follow_a_latent_line(model_and_variables):
    model, v = model_and_variables
    x_a, x_b = jnp.array([[0.3, -1.0], [1.0, 2.0]]), jnp.array([[2.0, 0.5], [-1.5, 0.0]])
    path = interpolate(model, v, x_a, x_b, 7)
    assert path.shape == (2, 7, 2)
    np.testing.assert_allclose(path[:, 0], x_a, atol=1e-4)
    np.testing.assert_allclose(path[:, -1], x_b, atol=1e-4)
    # the flow is not the identity, so the path bends in x but is straight in z
    z = model.apply(v, path.reshape(-1, 2), method="encode")[0].reshape(2, 7, 2)
    t = np.linspace(0, 1, 7)[None, :, None]
    np.testing.assert_allclose(z, (1 - t) * z[:, :1] + t * z[:, -1:], atol=1e-4)
    straight = (1 - t) * x_a[:, None] + t * x_b[:, None]
    assert np.abs(np.asarray(path) - straight).max() > 1e-2
    single = interpolate(model, v, x_a[0], x_b[0], 7)
    np.testing.assert_allclose(single, path[0], atol=1e-5)


def test_prototypes_decode_the_class_means(model_and_variables):
    model, v = model_and_variables
    protos = prototypes(model, v)
    assert protos.shape == (3, 2)
    means = model.apply(v, method="class_means")
    np.testing.assert_allclose(model.apply(v, protos, method="encode")[0], means, atol=1e-4)
    np.testing.assert_array_equal(model.apply(v, protos, method="predict"), [0, 1, 2])


def test_class_samples_by_class_and_temperature(model_and_variables):
    model, v = model_and_variables
    samples = class_samples(model, v, jax.random.key(2), 200, temperature=0.5)
    assert samples.shape == (3, 200, 2)
    for k in range(3):
        assert np.mean(model.apply(v, samples[k], method="predict") == k) > 0.9
    cold = class_samples(model, v, jax.random.key(2), 4, temperature=0.0)
    np.testing.assert_allclose(cold, np.broadcast_to(prototypes(model, v)[:, None], (3, 4, 2)), atol=1e-5)


def test_image_grid_tiles_rows_and_columns():
    images = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5, 1).astype(float)
    grid = image_grid(images)
    assert grid.shape == (8, 15)
    np.testing.assert_array_equal(grid[4:8, 10:15], images[1, 2, ..., 0])
    assert image_grid(np.zeros((1, 2, 4, 4, 3))).shape == (4, 8, 3)


def test_bad_inputs(model_and_variables):
    model, v = model_and_variables
    with pytest.raises(ValueError, match="same shape"):
        interpolate(model, v, jnp.zeros(2), jnp.zeros((1, 2)), 5)
    with pytest.raises(ValueError, match="n must be an integer >= 2"):
        interpolate(model, v, jnp.zeros(2), jnp.ones(2), 1)
    with pytest.raises(ValueError, match=r"x_a must have shape \(batch, 2\)"):
        interpolate(model, v, jnp.zeros(3), jnp.ones(3), 4)
    with pytest.raises(ValueError, match="temperature"):
        class_samples(model, v, jax.random.key(0), 3, temperature=-1.0)
    with pytest.raises(ValueError, match="rows, cols"):
        image_grid(np.zeros((4, 4)))
