"""Opt-in bfloat16 compute for conditioner networks: float32 parameters, log-dets and
base log-probabilities; the same accuracy as float32 training."""

import jax
import jax.numpy as jnp
import optax
import pytest

import flowclass as fc
from flowclass.data import make_moons, train_val_split


def _moons_flow(dtype):
    return fc.tabular_realnvp(2, 2, num_couplings=4, hidden=(64, 64), means=((-4, 0), (4, 0)), dtype=dtype)


@pytest.mark.parametrize("model", [
    _moons_flow(jnp.bfloat16),
    fc.image_realnvp("multiscale", input_shape=(8, 8, 1), num_classes=3, dtype=jnp.bfloat16),
    fc.image_realnvp("fast", input_shape=(8, 8, 1), num_classes=3, dtype=jnp.bfloat16),
], ids=["tabular", "image-seed", "image-fast"])
def test_bfloat16_conditioners_keep_float32_params_and_log_dets(model):
    """Checked on shapes and dtypes only (``jax.eval_shape``: traced, never compiled)."""
    x = jnp.full((4, *model.event_shape), 0.5)
    variables = jax.eval_shape(model.init, jax.random.key(1), x)
    assert {leaf.dtype for leaf in jax.tree.leaves(variables["params"])} == {jnp.dtype(jnp.float32)}
    z, log_det = jax.eval_shape(lambda v: model.apply(v, x, method="encode"), variables)
    assert z.dtype == log_det.dtype == jnp.float32
    per_class = jax.eval_shape(lambda v: model.apply(v, x, method="class_log_likelihoods"), variables)
    assert per_class.dtype == jnp.float32
    grads = jax.eval_shape(
        jax.grad(lambda p, v: model.apply({**v, "params": p}, x, method="marginal_log_prob").sum()),
        variables["params"], variables,
    )
    assert {leaf.dtype for leaf in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}


def test_bfloat16_conditioners_compute_in_bfloat16():
    net = fc.MLP((8,), dtype=jnp.bfloat16)
    x = jnp.ones((2, 3))
    assert net.apply(net.init(jax.random.key(0), x), x).dtype == jnp.bfloat16


def test_bfloat16_moons_flow_trains_to_float32_accuracy():
    x, y = make_moons(3000, noise=0.1, random_state=0)
    train, val = train_val_split(x, y, val_fraction=0.2, seed=0)
    x_test, y_test = make_moons(2000, noise=0.1, random_state=1)  # a fresh set
    accuracy = {}
    for dtype in (jnp.float32, jnp.bfloat16):
        state = fc.create_train_state(_moons_flow(dtype), jax.random.key(0), x[:1], optax.adam(3e-3), fc.flow_nll)
        result = fc.fit(state, train, val, key=jax.random.key(1), progress=False,
                        config=fc.TrainConfig(epochs=8, batch_size=64))
        accuracy[dtype] = fc.evaluate(result.state, x_test, y_test)["accuracy"]
    assert accuracy[jnp.float32] > 0.97, accuracy
    assert abs(accuracy[jnp.bfloat16] - accuracy[jnp.float32]) < 0.01, accuracy
