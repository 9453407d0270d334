"""Parameter averaging: params_ema in the optimiser state, fc.averaged, and fit's use of it."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowclass as fc
from flowclass.averaging import averaged_params
from flowclass.data import moons_splits, train_val_split

MEANS = ((-4.0, 0.0), (4.0, 0.0))


def _state(tx):
    model = fc.tabular_realnvp(2, 2, num_couplings=2, hidden=(16,), means=MEANS)
    return fc.create_train_state(model, jax.random.key(0), jnp.zeros((1, 2)), tx, fc.flow_nll)


def _batches(n=6):
    rng = np.random.default_rng(0)
    return [(rng.normal(size=(32, 2)).astype(np.float32), rng.integers(0, 2, 32).astype(np.int32)) for _ in range(n)]


def test_params_ema_leaves_training_unchanged_and_averages_the_visited_parameters():
    decay = 0.8
    plain, smoothed = _state(optax.adam(1e-2)), _state(optax.chain(optax.adam(1e-2), fc.params_ema(decay)))
    visited = []
    for batch in _batches():
        plain, _ = fc.train_step(plain, batch)
        smoothed, _ = fc.train_step(smoothed, batch)
        visited.append(jax.tree.map(np.asarray, smoothed.params))
    for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(smoothed.params), strict=True):
        np.testing.assert_array_equal(a, b)  # the transformation passes the updates through untouched
    t = len(visited)
    weights = [(1 - decay) * decay ** (t - 1 - i) for i in range(t)]  # m_t = Σ (1−d) d^{t−1−i} θ_i
    expected = jax.tree.map(lambda *ps: sum(w * p for w, p in zip(weights, ps, strict=True)) / (1 - decay**t),
                            *visited)
    got = fc.averaged(smoothed).params
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(jax.tree.leaves(got)[0], jax.tree.leaves(smoothed.params)[0])


def test_fit_validates_and_returns_the_averaged_parameters():
    (x, y), _ = moons_splits(noise=0.1, n_samples=700, n_train=600)
    train, val = train_val_split(x, y, val_fraction=0.2, seed=0)
    state = _state(optax.chain(optax.adam(1e-2), fc.params_ema(0.9)))
    result = fc.fit(state, train, val, key=jax.random.key(1), progress=False,
                    config=fc.TrainConfig(epochs=3, batch_size=64))
    last_averaged = fc.averaged(result.last_state)
    val_loss = fc.evaluate(last_averaged, *val)["loss"]
    np.testing.assert_allclose(result.history["val_loss"][-1], val_loss, rtol=1e-5)
    raw_loss = fc.evaluate(result.last_state, *val)["loss"]
    assert abs(raw_loss - val_loss) > 1e-6  # the raw parameters would have scored differently
    if result.best_epoch == result.epochs_run:
        for a, b in zip(jax.tree.leaves(result.state.params), jax.tree.leaves(last_averaged.params), strict=True):
            np.testing.assert_array_equal(a, b)


def test_averaging_errors_say_what_is_expected():
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\)"):
        fc.params_ema(1.0)
    with pytest.raises(ValueError, match="add flowclass.params_ema"):
        fc.averaged(_state(optax.adam(1e-3)))
    tx = fc.params_ema(0.9)
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))
    assert averaged_params(tx.init({"w": jnp.ones(2)}))["w"].tolist() == [0.0, 0.0]
