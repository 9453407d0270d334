import gc
import os
import re

import chex
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


def _flow_state(x, lr=1e-3, loss_fn=fc.flow_nll, seed=0, tx=None):
    model = fc.tabular_realnvp(2, 2, num_couplings=4, hidden=(32, 32), means=((-4, 0), (4, 0)))
    return fc.create_train_state(model, jax.random.key(seed), x[:1], tx or optax.adam(lr), loss_fn)


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


def test_epoch_blocks_of_any_length_are_one_program_and_equal_single_steps(moons, caplog):
    """7 steps in blocks of 3, 3 and 1 compile one program and train exactly as 7 calls of
    train_step on the epoch's shuffled batches (no augmentation, no key in the loss)."""
    (train, _), _ = moons
    x, y = train[0][:7 * 32], train[1][:7 * 32]
    key = jax.random.key(3)
    with jax.log_compiles(), caplog.at_level("WARNING"):
        state = _flow_state(x)
        runner = fc.EpochRunner(state, (x, y), batch_size=32, max_steps_per_call=3)
        state, metrics, _, _ = runner.run(state, key)
    assert runner.blocks == [3, 3, 1]
    assert sum("compilation of jit(_run_block)" in r.getMessage() for r in caplog.records) == 1
    order = np.asarray(jax.random.permutation(jax.random.fold_in(key, 0), len(x))).reshape(7, 32)
    reference, losses = _flow_state(x), []
    for rows in order:
        reference, aux = fc.train_step(reference, (jnp.asarray(x[rows]), jnp.asarray(y[rows])))
        losses.append(float(aux["loss"]))
    assert int(state.step) == int(reference.step) == 7
    chex.assert_trees_all_close(state.params, reference.params, rtol=1e-5, atol=1e-6)
    assert metrics["loss"].count == 7 * 32
    np.testing.assert_allclose(metrics["loss"].total / metrics["loss"].count, np.mean(losses), rtol=1e-5)


@pytest.mark.parametrize("setup", ["adam", "augment", "mesh", "clipped_and_averaged"])
def test_an_epoch_runner_traces_the_loss_once(moons, setup):
    """The block's sums take their shapes from the same trace as its loop body: the model and its
    gradient are traced once per runner, not twice (about 0.2 s of a moons fit, 1 s of a
    multi-scale image flow's). A second trace means the loop body's inputs (the index, the state's
    dtypes or weak types) no longer match eval_shape's."""
    (train, _), _ = moons
    traced = []

    def counting_loss(apply_fn, variables, x, y):
        traced.append(x.shape)
        return fc.flow_nll(apply_fn, variables, x, y)

    tx = fc.optim.make_optimizer(1e-3, clip_norm=1.0, ema_decay=0.9) if setup == "clipped_and_averaged" else None
    state = _flow_state(train[0], loss_fn=counting_loss, tx=tx)
    augment = (lambda key, x: x + 0.01 * jax.random.normal(key, x.shape, x.dtype)) if setup == "augment" else None
    mesh = fc.sharding.data_mesh(jax.devices()[:1]) if setup == "mesh" else None
    traced.clear()  # create_train_state may trace the loss itself
    runner = fc.EpochRunner(state, train, batch_size=32, max_steps_per_call=4, augment=augment, mesh=mesh)
    assert traced == [(32, 2)]
    runner.run(state, jax.random.key(0))
    assert traced == [(32, 2)]  # running the compiled blocks traces nothing


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
    with pytest.raises(fc.NonFiniteLossError, match=r"loss became nan in epoch (\d+); stopped") as info:
        fc.fit(state, train, val, key=jax.random.key(1), progress=False, checkpoint_dir=tmp_path / "ckpt",
               config=fc.TrainConfig(epochs=30, batch_size=64, checkpoint_every_s=0.0))
    bad_epoch = int(re.search(r"epoch (\d+);", str(info.value)).group(1))
    assert info.value.epoch == bad_epoch > 1 and info.value.quantity == "train_loss"
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


@pytest.mark.parametrize("packed", [False, True], ids=["adam", "packed_adam"])
def test_resume_from_checkpoint_equals_an_uninterrupted_run(moons, tmp_path, packed):
    (train, val), _ = moons
    # packed: the optimiser state holds PackedState's int32 indices, which must come back from the checkpoint
    tx = fc.optim.pack_small_leaves(optax.adam(1e-3), max_size=64, min_params=0) if packed else None
    kwargs = dict(key=jax.random.key(3), progress=False)
    four, two = (fc.TrainConfig(epochs=n, batch_size=128, checkpoint_every_s=0.0) for n in (4, 2))
    full = fc.fit(_flow_state(train[0], tx=tx), train, val, config=four, **kwargs)
    fc.fit(_flow_state(train[0], tx=tx), train, val, config=two, checkpoint_dir=tmp_path, **kwargs)
    with pytest.raises(FileExistsError, match=r"holds checkpoints of an earlier run \(epochs \[1, 2\]\)"):
        fc.fit(_flow_state(train[0], tx=tx), train, val, config=four, checkpoint_dir=tmp_path, **kwargs)
    resumed = fc.fit(_flow_state(train[0], tx=tx), train, val, config=four, checkpoint_dir=tmp_path, resume=True,
                     **kwargs)
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


# ---- bad inputs at the training entry points: each refused up front, with the argument named ----

def _small():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    return (x[:160], y[:160]), (x[160:], y[160:])


def _tiny_state():
    model = fc.tabular_realnvp(2, 2, num_couplings=2, hidden=(8,), means=((-4, 0), (4, 0)))
    return fc.create_train_state(model, jax.random.key(0), np.zeros((1, 2), np.float32), optax.adam(1e-3),
                                 fc.flow_nll)


def _fit(**changes):
    train, val = _small()
    args = dict(state=_tiny_state(), train=train, val=val, key=jax.random.key(1),
                config=fc.TrainConfig(epochs=1, batch_size=32), progress=False)
    args.update(changes)
    return lambda: fc.fit(**args)


def _with(split, x=None, y=None):
    return (split[0] if x is None else x, split[1] if y is None else y)


TRAIN, VAL = _small()
MODEL = fc.tabular_realnvp(2, 2, num_couplings=2, hidden=(8,), means=((-4, 0), (4, 0)))
BAD_INPUTS = {
    # fit: sizes (TrainConfig validates them when built), keys, labels, lengths, values
    "fit batch_size=64.0": (lambda: fc.TrainConfig(batch_size=64.0), TypeError, r"train.batch_size must be an integer"),
    "fit max_steps_per_call=0": (lambda: fc.TrainConfig(max_steps_per_call=0), ValueError,
                                 r"train.max_steps_per_call must be an integer >= 1; got 0"),
    "fit eval_batch_size=0": (lambda: fc.TrainConfig(eval_batch_size=0), ValueError,
                              r"train.eval_batch_size must be an integer >= 1; got 0"),
    "fit epochs=True": (lambda: fc.TrainConfig(epochs=True), TypeError, r"train.epochs must be an integer; got True"),
    "fit checkpoint_every_s='1'": (lambda: fc.TrainConfig(checkpoint_every_s="1"), TypeError,
                                   r"train.checkpoint_every_s must be a number"),
    "fit select=3": (lambda: fc.TrainConfig(select=3), TypeError, r"train.select must be a string"),
    "fit config=dict": (_fit(config={"epochs": 1}), TypeError, r"config must be a flowclass.TrainConfig; got dict"),
    "fit key=1": (_fit(key=1), TypeError, r"key must be a JAX PRNG key \(jax.random.key\(seed\)\); got int 1"),
    "fit key=keys": (_fit(key=jax.random.split(jax.random.key(0), 2)), TypeError, r"key must be a single JAX PRNG key"),
    "fit key=float array": (_fit(key=np.zeros(2, np.float32)), TypeError, r"key must be a JAX PRNG key"),
    "fit state=module": (_fit(state=MODEL), TypeError, r"state must be a flowclass.TrainState"),
    "fit train triple": (_fit(train=(*TRAIN, None)), TypeError, r"train must be a pair \(x, y\)"),
    "fit train y=-1": (_fit(train=_with(TRAIN, y=np.where(np.arange(160) == 7, -1, TRAIN[1]))), ValueError,
                       r"train y holds unlabelled examples \(label -1\), but this loss does not accept them"),
    "fit train y>=K": (_fit(train=_with(TRAIN, y=TRAIN[1] + 1)), ValueError,
                       r"train y must hold labels in \[0, 2\); got values in \[1, 2\]"),
    "fit val y>=K": (_fit(val=_with(VAL, y=VAL[1] * 5)), ValueError, r"validation y must hold labels in \[0, 2\)"),
    "fit train y float": (_fit(train=_with(TRAIN, y=TRAIN[1].astype(np.float32))), ValueError,
                          r"train y must hold integer class labels"),
    "fit train lengths": (_fit(train=_with(TRAIN, y=TRAIN[1][:150])), ValueError,
                          r"train y has 150 labels but train x has 160 examples"),
    "fit val lengths": (_fit(val=_with(VAL, y=VAL[1][:30])), ValueError,
                        r"validation y has 30 labels but validation x has 40 examples"),
    "fit val shape": (_fit(val=_with(VAL, x=np.zeros((40, 3), np.float32))), ValueError, r"validation x"),
    "fit train NaN": (_fit(train=_with(TRAIN, x=np.where(np.arange(160)[:, None] == 3, np.nan, TRAIN[0]))),
                      ValueError, r"train x must be finite"),
    "fit train int x": (_fit(train=_with(TRAIN, x=TRAIN[0].astype(np.int32))), ValueError,
                        r"train x must be a floating-point array"),
    "fit batch > data": (_fit(config=fc.TrainConfig(epochs=1, batch_size=500)), ValueError,
                         r"config.batch_size \(train.batch_size\) must be in \[1, 160\]"),
    # evaluate
    "evaluate batch_size=0": (lambda: fc.evaluate(_tiny_state(), *VAL, batch_size=0), ValueError,
                              r"batch_size must be an integer >= 1; got 0"),
    "evaluate batch_size=2.0": (lambda: fc.evaluate(_tiny_state(), *VAL, batch_size=2.0), ValueError,
                                r"batch_size must be an integer >= 1; got 2.0"),
    "evaluate y=-1": (lambda: fc.evaluate(_tiny_state(), VAL[0], -np.ones(40, np.int32)), ValueError,
                      r"evaluate y holds unlabelled examples"),
    "evaluate y>=K": (lambda: fc.evaluate(_tiny_state(), VAL[0], VAL[1] + 2), ValueError,
                      r"evaluate y must hold labels in \[0, 2\)"),
    "evaluate lengths": (lambda: fc.evaluate(_tiny_state(), VAL[0], VAL[1][:5]), ValueError,
                         r"evaluate y has 5 labels but evaluate x has 40 examples"),
    "evaluate state=module": (lambda: fc.evaluate(MODEL, *VAL), TypeError, r"state must be a flowclass.TrainState"),
    # predict_logits
    "predict_logits batch_size=0": (lambda: fc.predict_logits(MODEL.apply, _tiny_state().variables, VAL[0],
                                                              batch_size=0),
                                    ValueError, r"batch_size must be an integer"),
    "predict_logits NaN": (lambda: fc.predict_logits(MODEL.apply, _tiny_state().variables,
                                                     np.full((3, 2), np.nan, np.float32)), ValueError,
                           r"x must be finite"),
    "predict_logits variables=None": (lambda: fc.predict_logits(MODEL.apply, None, VAL[0]), TypeError,
                                      r"variables must be a mapping"),
    "predict_logits method=1": (lambda: fc.predict_logits(MODEL.apply, _tiny_state().variables, VAL[0], method=1),
                                TypeError, r"method must be the name of a model method"),
    # train_step / eval_step
    "train_step y>=K": (lambda: fc.train_step(_tiny_state(), (VAL[0], VAL[1] + 2)), ValueError,
                        r"batch y must hold labels in \[0, 2\)"),
    "train_step y=-1": (lambda: fc.train_step(_tiny_state(), (VAL[0], -np.ones(40, np.int32))), ValueError,
                        r"batch y holds unlabelled examples"),
    "train_step lengths": (lambda: fc.train_step(_tiny_state(), (VAL[0], VAL[1][:5])), ValueError,
                           r"batch y has 5 labels but batch x has 40 examples"),
    "train_step NaN": (lambda: fc.train_step(_tiny_state(), (np.full((4, 2), np.nan, np.float32), VAL[1][:4])),
                       ValueError, r"batch x must be finite"),
    "train_step batch=x": (lambda: fc.train_step(_tiny_state(), VAL[0]), TypeError, r"batch must be a pair \(x, y\)"),
    "train_step state=dict": (lambda: fc.train_step({"params": {}}, VAL), TypeError,
                              r"state must be a flowclass.TrainState"),
    "eval_step y>=K": (lambda: fc.eval_step(_tiny_state(), (VAL[0], VAL[1] + 2)), ValueError,
                       r"batch y must hold labels in \[0, 2\)"),
    # create_train_state
    "create key=1": (lambda: fc.create_train_state(MODEL, 1, VAL[0][:1], optax.adam(1e-3), fc.flow_nll), TypeError,
                     r"key must be a JAX PRNG key"),
    "create sample NaN": (lambda: fc.create_train_state(MODEL, jax.random.key(0), np.full((1, 2), np.nan, np.float32),
                                                        optax.adam(1e-3), fc.flow_nll), ValueError,
                          r"sample_x must be finite"),
    "create tx=None": (lambda: fc.create_train_state(MODEL, jax.random.key(0), VAL[0][:1], None, fc.flow_nll),
                       TypeError, r"tx must be an optax.GradientTransformation"),
    "create loss_fn=None": (lambda: fc.create_train_state(MODEL, jax.random.key(0), VAL[0][:1], optax.adam(1e-3), None),
                            TypeError, r"loss_fn must be a function"),
    "create model=str": (lambda: fc.create_train_state("realnvp", jax.random.key(0), VAL[0][:1], optax.adam(1e-3),
                                                       fc.flow_nll), TypeError, r"model must be a flax.linen.Module"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_training_entry_points_refuse_bad_inputs_naming_the_argument(case):
    call, error, message = BAD_INPUTS[case]
    with pytest.raises(error, match=message):
        call()


IMAGE_FLOW = fc.image_realnvp("fast", input_shape=(8, 8, 1), num_classes=3)


def test_image_flows_refuse_pixels_outside_the_unit_interval_at_every_training_entry_point():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (16, 8, 8, 1)).astype(np.float32)  # raw 8-bit values, not scaled
    labels = np.arange(16) % 3
    message = r"must hold pixels in \[0, 1\] for this image flow .* \(8-bit pixels\? divide by 255\)"
    with pytest.raises(ValueError, match="sample_x " + message):
        fc.create_train_state(IMAGE_FLOW, jax.random.key(0), pixels, optax.adam(1e-3), fc.flow_nll)
    state = fc.create_train_state(IMAGE_FLOW, jax.random.key(0), pixels / 255, optax.adam(1e-3), fc.flow_nll)
    with pytest.raises(ValueError, match="train x " + message):
        fc.fit(state, (pixels, labels), (pixels / 255, labels), key=jax.random.key(0), progress=False,
               config=fc.TrainConfig(epochs=1, batch_size=8))
    with pytest.raises(ValueError, match="evaluate x " + message):
        fc.evaluate(state, pixels, labels)
    with pytest.raises(ValueError, match="batch x " + message):
        fc.train_step(state, (pixels, labels))
    with pytest.raises(ValueError, match="^x " + message):
        fc.predict_logits(state.apply_fn, state.variables, pixels)
    with pytest.raises(ValueError, match=r"train y must hold labels in \[0, 3\); got values in \[1, 3\]"):
        fc.fit(state, (pixels / 255, labels + 1), (pixels / 255, labels), key=jax.random.key(0), progress=False,
               config=fc.TrainConfig(epochs=1, batch_size=8))
    assert np.isfinite(fc.evaluate(state, pixels / 255, labels)["loss"])  # scaled pixels are fine


def test_array_likes_and_legacy_keys_are_accepted():
    (x, y), val = _small()
    result = fc.fit(_tiny_state(), (x.tolist(), y.tolist()), val, key=jax.random.PRNGKey(1), progress=False,
                    config=fc.TrainConfig(epochs=1, batch_size=32))
    typed = fc.fit(_tiny_state(), (x, y), val, key=jax.random.key(1), progress=False,
                   config=fc.TrainConfig(epochs=1, batch_size=32))
    np.testing.assert_allclose(result.history["val_loss"], typed.history["val_loss"], rtol=1e-6)  # same numbers
    assert fc.predict_logits(MODEL.apply, _tiny_state().variables, [[0.0, 0.0]]).shape == (1, 2)
    # labels of any integer dtype
    assert np.isfinite(fc.evaluate(_tiny_state(), val[0], val[1].astype(np.uint8))["loss"])


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="counts Linux memory maps")
def test_repeated_fits_free_their_executables(moons):
    # Each fit builds a new optimiser and loss, which are static parts of the jitted state: with
    # module-level jits every fit's executables stayed cached for the process's life (~450 memory
    # maps each on CPU), and after ~140 fits (a grid search) mmap failed and XLA segfaulted.
    (train, val), _ = moons
    x = train[0]

    def one_fit(seed):
        model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
        state = fc.create_train_state(model, jax.random.key(seed), x[:1], optax.adam(1e-3), fc.make_flow_loss())
        fc.fit(state, train, val, key=jax.random.key(seed), config=fc.TrainConfig(epochs=1, batch_size=64),
               progress=False)

    def maps():
        gc.collect()
        with open("/proc/self/maps") as f:
            return sum(1 for _ in f)

    one_fit(0)
    before = maps()
    for seed in range(1, 3):
        one_fit(seed)
    assert maps() - before < 200, f"{maps() - before} memory maps more after 2 fits"


def test_check_data_reads_num_classes_from_the_model_and_else_from_its_logits(monkeypatch):
    import flax.linen as nn

    from flowclass import training

    model = fc.tabular_realnvp(2, 3)
    state = fc.create_train_state(model, jax.random.key(0), jnp.zeros((1, 2)), optax.adam(1e-3), fc.flow_nll)

    class Logits(nn.Module):  # no num_classes attribute: K comes from the logits' shape
        @nn.compact
        def __call__(self, x):
            return nn.Dense(4)(x)

    other = fc.create_train_state(Logits(), jax.random.key(0), jnp.zeros((1, 2)), optax.adam(1e-3), fc.cross_entropy)
    training.check_data(other, np.zeros((2, 2), np.float32), np.array([0, 3]), name="train")  # traced once, cached
    with pytest.raises(ValueError, match=re.escape("train y must hold labels in [0, 4)")):
        training.check_data(other, np.zeros((2, 2), np.float32), np.array([0, 4]), name="train")

    def no_tracing(*args, **kwargs):
        raise AssertionError("the model was traced to find its number of classes")

    monkeypatch.setattr(training.jax, "eval_shape", no_tracing)
    training.check_data(state, np.zeros((2, 2), np.float32), np.array([0, 2]), name="train")
    with pytest.raises(ValueError, match=re.escape("train y must hold labels in [0, 3)")):
        training.check_data(state, np.zeros((2, 2), np.float32), np.array([0, 3]), name="train")
