import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowclass as fc
from flowclass.data import moons_splits, train_val_split


@pytest.fixture(scope="module")
def moons():
    (x, y), test = moons_splits(0.1, n_samples=2000, n_train=1600)
    return train_val_split(x, y, val_fraction=0.2, seed=0), test


def _flow_state(x, lr=1e-3, loss_fn=fc.flow_nll, seed=0):
    model = fc.tabular_realnvp(2, 2, num_couplings=4, hidden=(32, 32), means=((-4, 0), (4, 0)))
    return fc.create_train_state(model, jax.random.key(seed), x[:1], optax.adam(lr), loss_fn)


def test_train_step_lowers_the_loss_and_donates_state(moons):
    (train, _), _ = moons
    state = _flow_state(train[0])
    batch = (jnp.asarray(train[0][:256]), jnp.asarray(train[1][:256]))
    first = fc.eval_step(state, batch)["loss"]
    old = state
    for _ in range(50):
        state, aux = fc.train_step(state, batch)
    assert float(fc.eval_step(state, batch)["loss"]) < float(first) - 0.5
    assert int(state.step) == 50
    assert jax.tree.leaves(old.params)[0].is_deleted()  # buffers were donated


def test_fit_selects_on_validation_and_reaches_high_accuracy(moons):
    (train, val), (x_test, y_test) = moons
    result = fc.fit(_flow_state(train[0], lr=3e-3), train, val, key=jax.random.key(1), progress=False,
                    config=fc.TrainConfig(epochs=20, batch_size=64))
    val_loss = result.history["val_loss"]
    assert val_loss.shape == (20,)
    assert result.best_epoch == int(np.argmin(val_loss)) + 1
    selected = fc.evaluate(result.state, *val)
    np.testing.assert_allclose(selected["loss"], val_loss.min(), rtol=1e-4)
    assert fc.evaluate(result.state, x_test, y_test)["accuracy"] > 0.98
    assert result.train_samples_per_s > 0 and result.compile_s > 0


def test_same_seed_same_numbers(moons):
    (train, val), _ = moons
    runs = [
        fc.fit(_flow_state(train[0]), train, val, key=jax.random.key(7), progress=False,
               config=fc.TrainConfig(epochs=2, batch_size=128))
        for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0].history["val_loss"], runs[1].history["val_loss"])


def test_non_finite_loss_stops_with_a_message_and_keeps_the_good_state(moons, tmp_path):
    (train, val), _ = moons

    def explodes_after_first_epoch(apply_fn, variables, x, y):
        loss, aux = fc.flow_nll(apply_fn, variables, x, y)
        steps = variables["params"]["flow"]["layers_0"]["log_scale_bound"][0]  # any param will do
        poisoned = jnp.where(aux["loss"] < 2.5, jnp.nan, loss) + 0 * steps
        return poisoned, {**aux, "loss": poisoned}

    state = _flow_state(train[0], lr=3e-3, loss_fn=explodes_after_first_epoch)
    with pytest.raises(fc.NonFiniteLossError, match=r"non-finite in epoch (\d+); stopped") as info:
        fc.fit(state, train, val, key=jax.random.key(1), progress=False, checkpoint_dir=tmp_path / "ckpt",
               config=fc.TrainConfig(epochs=30, batch_size=64, checkpoint_every_s=0.0))
    bad_epoch = int(re.search(r"epoch (\d+);", str(info.value)).group(1))
    best = info.value.best_state
    assert best is not None
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(best.params))
    # the failing epoch was never saved: the newest checkpoint is the epoch before it
    assert fc.Checkpointer(tmp_path / "ckpt").latest_step == bad_epoch - 1


def test_hybrid_loss_adds_weighted_cross_entropy(moons):
    (train, _), _ = moons
    state = _flow_state(train[0])
    x, y = jnp.asarray(train[0][:64]), jnp.asarray(train[1][:64])
    plain = fc.flow_nll(state.apply_fn, state.variables, x, y)[1]
    hybrid_loss, aux = fc.make_flow_loss(cross_entropy_weight=3.0)(state.apply_fn, state.variables, x, y)
    np.testing.assert_allclose(hybrid_loss, plain["nll"] + 3.0 * plain["cross_entropy"], rtol=1e-5)
    np.testing.assert_allclose(aux["bits_per_dim"], plain["nll"] / (2 * np.log(2)), rtol=1e-5)


def test_posterior_temperature_tempers_only_the_cross_entropy_term(moons):
    (train, _), _ = moons
    state = _flow_state(train[0])
    x, y = jnp.asarray(train[0][:64]), jnp.asarray(train[1][:64])
    plain = fc.flow_nll(state.apply_fn, state.variables, x, y)[1]
    logits = fc.predict_logits(state.apply_fn, state.variables, x)
    tempered_ce = np.mean(optax.softmax_cross_entropy_with_integer_labels(logits / 20.0, y))
    loss, aux = fc.make_flow_loss(cross_entropy_weight=2.0, posterior_temperature=20.0)(
        state.apply_fn, state.variables, x, y)
    np.testing.assert_allclose(loss, plain["nll"] + 2.0 * tempered_ce, rtol=1e-5)
    np.testing.assert_allclose(aux["cross_entropy"], plain["cross_entropy"], rtol=1e-6)  # reported at T = 1
    np.testing.assert_allclose(aux["accuracy"], plain["accuracy"])
    with pytest.raises(ValueError, match="posterior_temperature must be > 0"):
        fc.make_flow_loss(posterior_temperature=0.0)


def test_fnn_baseline_trains(moons):
    (train, val), (x_test, y_test) = moons
    state = fc.create_train_state(fc.FNN(2), jax.random.key(0), train[0][:1], optax.adam(3e-3), fc.cross_entropy)
    result = fc.fit(state, train, val, key=jax.random.key(1), progress=False,
                    config=fc.TrainConfig(epochs=20, batch_size=64))
    assert fc.evaluate(result.state, x_test, y_test)["accuracy"] > 0.97


def test_resume_from_checkpoint_equals_an_uninterrupted_run(moons, tmp_path):
    (train, val), _ = moons
    kwargs = dict(key=jax.random.key(3), progress=False)
    four, two = (fc.TrainConfig(epochs=n, batch_size=128, checkpoint_every_s=0.0) for n in (4, 2))
    full = fc.fit(_flow_state(train[0]), train, val, config=four, **kwargs)
    fc.fit(_flow_state(train[0]), train, val, config=two, checkpoint_dir=tmp_path, **kwargs)
    with pytest.raises(FileExistsError, match=r"holds checkpoints of an earlier run \(epochs \[1, 2\]\)"):
        fc.fit(_flow_state(train[0]), train, val, config=four, checkpoint_dir=tmp_path, **kwargs)
    resumed = fc.fit(_flow_state(train[0]), train, val, config=four, checkpoint_dir=tmp_path, resume=True, **kwargs)
    assert resumed.epochs_run == 4 and len(resumed.history["val_loss"]) == 4
    np.testing.assert_allclose(resumed.history["val_loss"], full.history["val_loss"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(resumed.last_state.params), jax.tree.leaves(full.last_state.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert resumed.best_epoch == full.best_epoch


def test_time_budget_and_accuracy_selection(moons):
    (train, val), _ = moons
    config = fc.TrainConfig(epochs=50, batch_size=32, max_steps_per_call=5, time_budget_s=1e-9, select="accuracy")
    result = fc.fit(_flow_state(train[0]), train, val, key=jax.random.key(0), progress=False, config=config)
    assert result.epochs_run == 1  # stopped after the first block, then validated
    assert result.train_samples_per_s * result.train_s == pytest.approx(5 * 32)  # the examples of that block only
    assert result.best_epoch == 1
    assert result.history["train_loss"].shape == (1,)


def test_extra_validation_metrics_join_the_history_and_can_be_selected(moons):
    (train, val), _ = moons
    steps = []

    def metrics(state):
        steps.append(int(state.step))
        return {"early_accuracy": -float(state.step)}  # a made-up rule whose "accuracy" falls every epoch

    result = fc.fit(_flow_state(train[0], lr=3e-3), train, val, key=jax.random.key(0), extra_val_metrics=metrics,
                    progress=False, config=fc.TrainConfig(epochs=3, batch_size=128, select="early_accuracy"))
    per_epoch = len(train[0]) // 128
    assert steps == [per_epoch, 2 * per_epoch, 3 * per_epoch]  # called with each epoch's state
    np.testing.assert_array_equal(result.history["val_early_accuracy"], [-s for s in steps])
    assert result.history["val_loss"][-1] < result.history["val_loss"][0]
    assert result.best_epoch == 1  # names ending in "_accuracy" are maximised
    with pytest.raises(ValueError, match="not a validation metric"):
        fc.fit(_flow_state(train[0]), train, val, key=jax.random.key(0), progress=False,
               config=fc.TrainConfig(epochs=1, select="acuracy"))


def test_augment_runs_inside_the_step(moons):
    (train, val), _ = moons
    calls = []

    def shift(key, x):
        calls.append(1)  # traced once, at compile time
        return x + 100.0  # far off the data: the training loss (on augmented batches) must show it

    one = fc.TrainConfig(epochs=1)
    plain = fc.fit(_flow_state(train[0]), train, val, key=jax.random.key(0), progress=False, config=one)
    shifted = fc.fit(_flow_state(train[0]), train, val, key=jax.random.key(0), augment=shift, progress=False,
                     config=one)
    assert calls and shifted.history["train_loss"][0] > plain.history["train_loss"][0] + 100.0
