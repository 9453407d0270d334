"""NaN-safe training: what ``fit`` leaves behind, checkpoints and says when training turns non-finite.

A poisoned optimiser (Adam, then NaN updates from a chosen step on) makes the failure land on an
exact step: the loss of a step is computed before its update, so a NaN update on an epoch's last
step leaves that epoch's summed loss finite and only the parameters tell.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowclass as fc
from flowclass.data import moons_splits, train_val_split

BATCH = 64


@pytest.fixture(scope="module")
def moons():
    (x, y), _ = moons_splits(0.1, n_samples=1000, n_train=800)
    return train_val_split(x, y, val_fraction=0.2, seed=0)  # 640 train: 10 steps per epoch


def nan_updates_from(step: int) -> optax.GradientTransformation:
    """Passes updates through, except from update number ``step`` (1-based) on, which are NaN."""

    def init(params):
        return {"count": jnp.zeros((), jnp.int32)}

    def update(updates, state, params=None):
        count = state["count"] + 1
        poisoned = jax.tree.map(lambda u: jnp.where(count >= step, jnp.nan, u), updates)
        return poisoned, {"count": count}

    return optax.GradientTransformation(init, update)


def _state(x, poison_at: int, lr: float = 1e-3, loss_fn=fc.flow_nll):
    model = fc.tabular_realnvp(2, 2, num_couplings=2, hidden=(16, 16), means=((-4, 0), (4, 0)))
    tx = optax.chain(optax.adam(lr), nan_updates_from(poison_at))
    return fc.create_train_state(model, jax.random.key(0), x[:1], tx, loss_fn)


def _host_copy(state):
    return jax.tree.map(np.array, (state.params, state.opt_state, state.step))


def _all_finite(tree) -> bool:
    return all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(tree)
               if np.issubdtype(np.asarray(leaf).dtype, np.inexact))


def test_nan_in_the_first_epoch_leaves_the_callers_state_and_no_checkpoint(moons, tmp_path):
    train, val = moons
    state = _state(train[0], poison_at=3)  # the loss is NaN from the 4th step of epoch 1 on
    before = _host_copy(state)
    with pytest.raises(fc.NonFiniteLossError) as info:
        fc.fit(state, train, val, key=jax.random.key(1), progress=False, checkpoint_dir=tmp_path / "ckpt",
               config=fc.TrainConfig(epochs=3, batch_size=BATCH, checkpoint_every_s=0.0))
    error = info.value
    assert error.epoch == 1 and error.quantity == "train_loss"
    assert error.best_state is None
    message = str(error)
    assert "the training loss became nan in epoch 1" in message
    assert "(and the state holds NaN/inf, first at params/flow/" in message  # parameters named before Adam's moments
    assert "No epoch completed, so .best_state is None" in message
    assert "the state passed to fit is unchanged" in message
    assert "best state so far" not in message
    # the inputs were fine (finite at the start on every example): the advice is about the optimisation
    assert "the data are not the cause" in message and "lower learning rate" in message
    assert "newest checkpoint is none" in message
    assert fc.Checkpointer(tmp_path / "ckpt").latest_step is None
    # the caller's state was not donated: its buffers are alive, finite and unchanged
    assert not any(leaf.is_deleted() for leaf in jax.tree.leaves(state.params))
    jax.tree.map(np.testing.assert_array_equal, _host_copy(state), before)
    assert _all_finite(state.params)
    # ... and usable: training it (without the poison firing) works
    assert np.isfinite(fc.evaluate(state, *val)["loss"])


def test_nan_update_on_an_epochs_last_step_is_not_checkpointed_and_resume_works(moons, tmp_path):
    train, val = moons
    steps = len(train[0]) // BATCH
    config = fc.TrainConfig(epochs=4, batch_size=BATCH, checkpoint_every_s=0.0)
    kwargs = dict(key=jax.random.key(3), progress=False)
    with pytest.raises(fc.NonFiniteLossError) as info:
        # the last update of epoch 2 is NaN; the loss summed over epoch 2 was computed before it, finite
        fc.fit(_state(train[0], poison_at=2 * steps), train, val, checkpoint_dir=tmp_path, config=config, **kwargs)
    error = info.value
    assert error.epoch == 2
    assert error.quantity.startswith("params/flow/layers_0/")  # the first parameter array in tree order
    message = str(error)
    assert f"the state after epoch 2's last update holds NaN/inf at {error.quantity}" in message
    assert "stayed finite: an update was non-finite" in message
    assert "lower learning rate" in message and "clip" in message
    assert "The best state so far (epoch 1, val_loss = " in message
    assert "Epoch 2 was not checkpointed; the newest checkpoint is epoch 1" in message
    # the NaN state was never written: epoch 1 is the newest checkpoint, and it is finite
    with fc.Checkpointer(tmp_path, create=False) as checkpointer:
        assert checkpointer.steps == [1]
    best = error.best_state
    assert best is not None and _all_finite((best.params, best.collections, best.opt_state))
    restored, meta = fc.restore_best(tmp_path, _state(train[0], poison_at=10**9))
    assert meta["epoch"] == 1 and _all_finite(restored.params)
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, restored.params),
                 jax.tree.map(np.asarray, best.params))
    # resuming from the last good checkpoint (no poison this time) equals a run that never failed
    resumed = fc.fit(_state(train[0], poison_at=10**9), train, val, checkpoint_dir=tmp_path, resume=True,
                     config=config, **kwargs)
    clean = fc.fit(_state(train[0], poison_at=10**9), train, val, config=config, **kwargs)
    assert resumed.epochs_run == 4
    np.testing.assert_allclose(resumed.history["val_loss"], clean.history["val_loss"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(resumed.last_state.params), jax.tree.leaves(clean.last_state.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_loss_already_non_finite_on_some_inputs_is_not_blamed_on_the_learning_rate(moons):
    train, val = moons
    x = train[0].copy()
    x[300] = 50.0  # finite, so it passes the input checks; this loss cannot evaluate it

    def fragile(apply_fn, variables, x, y):
        loss, aux = fc.flow_nll(apply_fn, variables, x, y)
        loss = jnp.where(jnp.any(x > 20.0), jnp.nan, loss)
        return loss, {**aux, "loss": loss}

    with pytest.raises(fc.NonFiniteLossError) as info:
        fc.fit(_state(x, poison_at=10**9, loss_fn=fragile), (x, train[1]), val, key=jax.random.key(1),
               progress=False, config=fc.TrainConfig(epochs=2, batch_size=BATCH, eval_batch_size=100))
    message = str(info.value)
    assert info.value.epoch == 1 and info.value.quantity == "train_loss"
    assert "already non-finite at the parameters fit started from, on the training examples [300, 400)" in message
    assert "a lower learning rate will not help" in message
    assert "Try a lower learning rate" not in message


def test_non_finite_inputs_and_states_are_refused_before_training(moons):
    train, val = moons
    state = _state(train[0], poison_at=10**9)
    runs_an_epoch = dict(key=jax.random.key(0), progress=False, config=fc.TrainConfig(epochs=1, batch_size=BATCH))
    # a state with a NaN parameter (e.g. from a failed run) is refused, naming the array
    params = jax.tree.map(jnp.copy, state.params)
    params["flow"]["layers_1"]["zero_proj"]["kernel"] = params["flow"]["layers_1"]["zero_proj"]["kernel"].at[0, 0].set(
        jnp.nan)
    with pytest.raises(ValueError,
                       match=r"state holds NaN/inf before training, at params/flow/layers_1/zero_proj/kernel"):
        fc.fit(state.replace(params=params), train, val, **runs_an_epoch)
    # input problems are named as such, never "lower learning rate"
    bad_x = train[0].copy()
    bad_x[5, 1] = np.nan
    with pytest.raises(ValueError, match=r"train x must be finite; got 1 NaN/inf value"):
        fc.fit(state, (bad_x, train[1]), val, **runs_an_epoch)
    with pytest.raises(ValueError, match=r"validation y must hold labels in \[0, 2\); got values in \[0, 2\]"):
        fc.fit(state, train, (val[0], np.where(np.arange(len(val[1])) == 3, 2, val[1])), **runs_an_epoch)

    def always_nan(apply_fn, variables, x, y):
        loss, aux = fc.flow_nll(apply_fn, variables, x, y)
        return loss * jnp.nan, {**aux, "loss": loss * jnp.nan}

    with pytest.raises(ValueError, match=r"the loss is nan on the first train examples at the state passed in"):
        fc.fit(_state(train[0], poison_at=10**9, loss_fn=always_nan), train, val, **runs_an_epoch)


@pytest.mark.parametrize("trainable", [True, False])
def test_nan_means_are_refused_before_training(moons, trainable):
    train, val = moons
    with pytest.raises(ValueError, match="means|the loss is nan on the first train examples"):
        # refused when the model is built (distributions), when the state is created (a NaN parameter is
        # named), or at the latest by fit's probe of the initial loss; never after an epoch
        model = fc.tabular_realnvp(2, 2, means=((np.nan, 0.0), (4.0, 0.0)), trainable_means=trainable)
        state = fc.create_train_state(model, jax.random.key(0), train[0][:1], optax.adam(1e-3), fc.flow_nll)
        fc.fit(state, train, val, key=jax.random.key(0), progress=False,
               config=fc.TrainConfig(epochs=1, batch_size=BATCH))


def test_a_non_finite_state_is_never_checkpointed(moons, tmp_path):
    train, _ = moons
    state = _state(train[0], poison_at=10**9)
    checkpoint = fc.FitCheckpoint(tmp_path, state, resume=False)
    selection = fc.Selection("loss")
    bad = state.replace(opt_state=jax.tree.map(lambda a: a * jnp.nan if jnp.issubdtype(a.dtype, jnp.floating) else a,
                                               state.opt_state))
    with pytest.raises(FloatingPointError, match=r"refusing to checkpoint epoch 1: it holds NaN/inf at "
                                                 r"state/opt_state/0/0/mu/flow"):
        checkpoint.save(1, bad, selection, history=[])
    checkpoint.save(1, state, selection, history=[])
    assert checkpoint.checkpointer.steps == [1]
    checkpoint.close()


def test_the_callers_state_survives_a_successful_fit_too(moons):
    train, val = moons
    state = _state(train[0], poison_at=10**9)
    before = _host_copy(state)
    result = fc.fit(state, train, val, key=jax.random.key(0), progress=False,
                    config=fc.TrainConfig(epochs=1, batch_size=BATCH))
    assert int(result.last_state.step) == len(train[0]) // BATCH
    jax.tree.map(np.testing.assert_array_equal, _host_copy(state), before)
