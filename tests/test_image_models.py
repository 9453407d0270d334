"""One end-to-end training step of each image model (the MNIST experiment: tests/test_experiment_mnist.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowclass as fc
from flowclass.data.pixels import bin_centres

from test_image_data import FASHION_DIR


@pytest.fixture(scope="module")
def images():
    if FASHION_DIR.is_dir():  # a small real slice when Debian's package is installed
        x, y = fc.data.load_image_dataset("fashion_mnist", data_dir=FASHION_DIR)["train"]
        return np.asarray(bin_centres(x[:64])), y[:64]
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 256, (64, 28, 28, 1)) + 0.5).astype(np.float32) / 256
    return x, rng.integers(0, 10, 64).astype(np.int32)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["flow-fast", "flow-multiscale", "cnn"])
def test_one_training_step(images, name):
    x, y = images
    if name == "cnn":
        model, loss_fn = fc.CNN(), fc.cross_entropy
    else:
        model = fc.image_realnvp(name.split("-")[1])
        loss_fn = fc.make_flow_loss(cross_entropy_weight=1.0, nll_unit="bits_per_dim", num_bins=256)
    state = fc.create_train_state(model, jax.random.key(0), x, optax.adam(1e-3), loss_fn)
    batch = (jnp.asarray(x[:32]), jnp.asarray(y[:32]))
    before = fc.eval_step(state, batch)
    for _ in range(3):
        state, aux = fc.train_step(state, batch)
    after = fc.eval_step(state, batch)
    assert np.isfinite(float(aux["loss"]))
    assert float(after["loss"]) < float(before["loss"])
    if name != "cnn":
        assert 0.5 < float(after["bits_per_dim"]) < 12
        # jitted as users run them (op by op, the multi-scale flow's encode and sample took 8-10 s each)
        z, log_det = jax.jit(lambda v, x: model.apply(v, x, method="encode"))(state.variables, batch[0])
        assert z.shape[1:] == model.latent_shape and np.prod(model.latent_shape) == 784
        x_back, _ = jax.jit(lambda v, z: model.apply(v, z, method="decode"))(state.variables, z)
        np.testing.assert_allclose(x_back, batch[0], atol=2e-4)
        sample = jax.jit(lambda v, k: model.apply(v, k, 3, 2, method="sample"))(state.variables, jax.random.key(1))
        assert sample.shape == (2, 28, 28, 1)
