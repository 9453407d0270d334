import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowclass as fc
from flowclass._validation import check_labels
from flowclass.data import make_moons, moons_splits
from flowclass.data.labels import UNLABELLED, balanced_label_subset, hide_labels
from flowclass.losses import make_semi_supervised_loss

from helpers import perturb


@functools.cache
def _model_and_variables(num_classes=3):
    model = fc.tabular_realnvp(2, num_classes, num_couplings=3, hidden=(16,), means="normal", mean_scale=2.0,
                               trainable_weights=True)
    variables = perturb(jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 2))), jax.random.key(1))
    return model, variables


def _jit_loss(loss_fn):
    return jax.jit(loss_fn, static_argnums=0)  # one compile instead of op-by-op dispatch


def test_unlabelled_term_is_logsumexp_of_class_likelihoods_plus_log_weights():
    model, v = _model_and_variables()
    x = jax.random.normal(jax.random.key(2), (8, 2))
    y = jnp.array([0, -1, 2, -1, -1, 1, -1, 0])
    per_class = model.apply(v, x, method="class_log_likelihoods")
    log_w = model.apply(v, method="log_weights")
    assert not np.allclose(log_w, log_w[0])  # non-uniform weights, so they matter
    marginal = jax.scipy.special.logsumexp(per_class + log_w, axis=-1)
    labelled = y >= 0
    joint = (per_class + log_w)[jnp.arange(8), jnp.where(labelled, y, 0)]

    loss, aux = _jit_loss(make_semi_supervised_loss(unlabelled_weight=0.3))(model.apply, v, x, y)
    expected = jnp.mean(jnp.where(labelled, -joint, 0.3 * -marginal))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(aux["marginal_nll"], -jnp.mean(marginal), rtol=1e-5)

    all_unlabelled = jnp.full(8, UNLABELLED)
    loss, _ = _jit_loss(make_semi_supervised_loss())(model.apply, v, x, all_unlabelled)
    np.testing.assert_allclose(loss, -jnp.mean(marginal), rtol=1e-5)
    np.testing.assert_allclose(marginal, model.apply(v, x, method="marginal_log_prob"), rtol=1e-5)


def test_on_labelled_data_it_is_the_supervised_loss_plus_log_k():
    model = fc.tabular_realnvp(2, 2, num_couplings=2, hidden=(8,), means=((-4, 0), (4, 0)))
    v = perturb(jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 2))), jax.random.key(1))
    x, y = jax.random.normal(jax.random.key(3), (6, 2)), jnp.array([0, 1, 1, 0, 1, 0])
    for unit in ("nats", "bits_per_dim"):
        semi = _jit_loss(make_semi_supervised_loss(cross_entropy_weight=0.5, nll_unit=unit))(model.apply, v, x, y)
        flow = _jit_loss(fc.make_flow_loss(cross_entropy_weight=0.5, nll_unit=unit))(model.apply, v, x, y)
        scale = 1.0 if unit == "nats" else 2 * np.log(2)
        np.testing.assert_allclose(semi[0], flow[0] + np.log(2) / scale, rtol=1e-5)
        for name in ("nll", "bits_per_dim", "cross_entropy", "accuracy"):
            mean = semi[1][name]  # a (total, count) pair over the labelled examples: all 6 here
            np.testing.assert_allclose(mean.total / mean.count, flow[1][name], rtol=1e-5)


def test_labelled_metrics_ignore_unlabelled_examples_in_batches_and_evaluate():
    model, v = _model_and_variables()
    loss_fn = make_semi_supervised_loss()
    x = jax.random.normal(jax.random.key(4), (20, 2))
    y_true = np.asarray(jax.random.randint(jax.random.key(5), (20,), 0, 3), np.int32)
    y = y_true.copy()
    y[[1, 2, 3, 5, 8, 9, 10, 11, 12, 15]] = UNLABELLED  # batches of 4 hold 3, 2, 0, 2, 3 labels
    _, aux = _jit_loss(loss_fn)(model.apply, v, x, jnp.asarray(y))
    on_labelled = _jit_loss(fc.make_flow_loss())(model.apply, v, x[y >= 0], jnp.asarray(y[y >= 0]))[1]
    labelled_only = ("nll", "nll_per_dim", "bits_per_dim", "cross_entropy", "accuracy")
    for name in labelled_only:
        assert isinstance(aux[name], fc.Mean) and float(aux[name].count) == 10  # weighted by the labelled examples
        np.testing.assert_allclose(aux[name].total / aux[name].count, on_labelled[name], rtol=1e-5)

    state = fc.create_train_state(model, jax.random.key(0), x[:1], optax.adam(1e-3), loss_fn)
    state = state.replace(params=v["params"])
    metrics = fc.evaluate(state, x, y, batch_size=4)
    for name in labelled_only:
        np.testing.assert_allclose(metrics[name], on_labelled[name], rtol=1e-5)
    np.testing.assert_allclose(metrics["marginal_nll"], aux["marginal_nll"], rtol=1e-5)
    assert np.isnan(fc.evaluate(state, x, np.full(20, UNLABELLED, np.int32))["accuracy"])


def _fresh_accuracy(result, x, y):
    logits = fc.predict_logits(result.state.apply_fn, result.state.variables, x)
    return float(np.mean(np.argmax(logits, -1) == y))


def test_ten_labels_plus_unlabelled_moons_beat_the_ten_labels_alone():
    """Two moons, noise 0.1: 10 balanced labels (label seed 0; 4 of the 5 seeds 0-4 work) repeated
    85 times (~10 % of the rows) plus ~7650 unlabelled points, vs the same flow and loss on the
    repeated labels alone for as many steps. Measured: 99.9 % vs 89.6 % on fresh points."""
    (x, y), _ = moons_splits(0.1)
    keep = balanced_label_subset(y, 10, seed=0)
    rest = np.random.default_rng(0).permutation(np.setdiff1d(np.arange(len(y)), keep))
    val = (x[rest[:400]], np.full(400, UNLABELLED, np.int32))  # model selection sees no labels
    unlabelled = rest[400:]
    x_lab, y_lab = np.repeat(x[keep], 85, axis=0), np.repeat(y[keep], 85, axis=0)
    semi = (np.concatenate([x_lab, x[unlabelled]]), np.concatenate([y_lab, np.full(len(unlabelled), -1, np.int32)]))
    x_fresh, y_fresh = make_moons(20_000, 0.1, 99)
    accuracy = {}
    for name, train, epochs in (("semi", semi, 10), ("labels", (x_lab, y_lab), 100)):  # 660 vs 600 steps
        model = fc.tabular_realnvp(2, 2, num_couplings=4, hidden=(64, 64), means=((-4, 0), (4, 0)))
        state = fc.create_train_state(model, jax.random.key(0), x[:1], optax.adam(2e-3), make_semi_supervised_loss())
        result = fc.fit(state, train, val, key=jax.random.key(1), progress=False,
                        config=fc.TrainConfig(epochs=epochs, batch_size=128))
        assert np.isnan(result.history["val_accuracy"]).all()  # validation is unlabelled
        assert np.isfinite(result.history["train_accuracy"]).all()
        accuracy[name] = _fresh_accuracy(result, x_fresh, y_fresh)
    assert accuracy["semi"] > 0.98, accuracy
    assert accuracy["semi"] > accuracy["labels"] + 0.05, accuracy


def test_unlabelled_labels_need_to_be_asked_for():
    model, v = _model_and_variables(2)
    x, y = np.zeros((8, 2), np.float32), np.array([0, 1, -1, -1, 0, 1, -1, 0], np.int32)
    with pytest.raises(ValueError, match=r"labels in \[0, 2\); got values in \[-1, 1\]; -1 marks an unlabelled"):
        check_labels(y, 2)
    check_labels(y, 2, allow_unlabelled=True)
    with pytest.raises(ValueError, match=r"\[0, 2\) or -1 \(unlabelled\); got values in \[-2, 1\]"):
        check_labels(np.array([0, -2, 1]), 2, allow_unlabelled=True)

    semi = fc.create_train_state(model, jax.random.key(0), x[:1], optax.adam(1e-3), make_semi_supervised_loss())
    supervised = fc.create_train_state(model, jax.random.key(0), x[:1], optax.adam(1e-3), fc.flow_nll)
    one_epoch = fc.TrainConfig(epochs=1, batch_size=4)
    with pytest.raises(ValueError, match="train y holds unlabelled examples.*this loss does not accept them"):
        fc.fit(supervised, (x, y), (x, np.zeros(8, np.int32)), key=jax.random.key(0), config=one_epoch)
    with pytest.raises(ValueError, match="validation y holds unlabelled examples.*does not accept them"):
        fc.fit(supervised, (x, np.zeros(8, np.int32)), (x, y), key=jax.random.key(0), config=one_epoch)
    with pytest.raises(ValueError, match="evaluate y holds unlabelled examples.*does not accept them"):
        fc.evaluate(supervised, x, y)
    with pytest.raises(ValueError, match=r"labels in \[0, 2\) or -1 \(unlabelled\); got values in \[-1, 2\]"):
        fc.evaluate(semi, x, np.where(np.arange(8) == 0, 2, y).astype(np.int32))
    fc.evaluate(semi, x, y)  # the semi-supervised loss accepts them: no flag needed
    with pytest.raises(ValueError, match="validation set has none"):
        fc.fit(semi, (x, y), (x, np.full(8, -1, np.int32)), key=jax.random.key(0),
               config=fc.TrainConfig(epochs=1, batch_size=4, select="accuracy"))
    with pytest.raises(ValueError, match="unlabelled_weight must be a finite number >= 0; got -1.0"):
        make_semi_supervised_loss(unlabelled_weight=-1.0)


def test_balanced_label_subset():
    y = np.repeat(np.arange(4), 25).astype(np.int32)
    idx = balanced_label_subset(y, 12, seed=3)
    assert len(idx) == 12 and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(np.bincount(y[idx]), [3, 3, 3, 3])
    np.testing.assert_array_equal(idx, balanced_label_subset(y, 12, seed=3))
    assert not np.array_equal(idx, balanced_label_subset(y, 12, seed=4))
    hidden = hide_labels(y, idx)
    assert hidden.dtype == np.int32 and np.sum(hidden >= 0) == 12
    np.testing.assert_array_equal(hidden[idx], y[idx])
    with pytest.raises(ValueError, match=r"multiple of the number of classes \(4\) for a balanced subset; got 10"):
        balanced_label_subset(y, 10)
    with pytest.raises(ValueError, match="class 3 has 1 examples; 2 are needed"):
        balanced_label_subset(np.array([0, 0, 1, 1, 2, 2, 3]), 8)
    with pytest.raises(ValueError, match=r"true labels \(>= 0\)"):
        balanced_label_subset(hidden, 4)
    with pytest.raises(ValueError, match="num_classes is 3"):
        balanced_label_subset(y, 6, num_classes=3)


# ---------------------------------------------------------------- consistency (FlowGMM-cons)

def _shift(amount):
    return lambda key, x: x + amount  # a deterministic "perturbation", to compare with closed forms


def _posteriors(model, v, x):
    return jax.nn.log_softmax(model.apply(v, x, method="class_log_likelihoods") + model.apply(v, method="log_weights"))


def _assert_same_gradients(by_loss, by_hand, params):
    """The gradients of two scalar functions of ``params`` agree, and are not all (nearly) zero."""
    got, expected = jax.jit(jax.grad(by_loss))(params), jax.jit(jax.grad(by_hand))(params)
    assert max(float(jnp.max(jnp.abs(a))) for a in jax.tree.leaves(expected)) > 1e-3
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_consistency_is_zero_when_the_two_copies_are_equal():
    model, v = _model_and_variables()
    x = jax.random.normal(jax.random.key(2), (8, 2))
    y = jnp.array([0, -1, 2, -1, -1, 1, -1, 0])
    base, base_aux = _jit_loss(make_semi_supervised_loss(cross_entropy_weight=0.5))(model.apply, v, x, y)
    cons = make_semi_supervised_loss(cross_entropy_weight=0.5, consistency_weight=3.0, perturb=lambda key, x: x)
    loss, aux = jax.jit(cons, static_argnums=0)(model.apply, v, x, y, key=jax.random.key(0), step=0)
    assert float(aux["consistency"].total) == pytest.approx(0.0, abs=1e-5)
    assert float(aux["consistency"].count) == 4  # the unlabelled examples
    assert float(aux["consistency_agreement"].total) == 4
    np.testing.assert_allclose(loss, base, rtol=1e-6)
    # evaluation (no key) leaves the term out; the likelihood metrics are the base loss's
    _, eval_aux = _jit_loss(cons)(model.apply, v, x, y)
    assert "consistency" not in eval_aux
    np.testing.assert_allclose(eval_aux["marginal_nll"], base_aux["marginal_nll"], rtol=1e-6)


def test_consistency_is_the_kl_from_the_perturbed_copy_over_unlabelled_examples_with_a_ramp():
    model, v = _model_and_variables()
    x = jax.random.normal(jax.random.key(2), (8, 2))
    y = jnp.array([0, -1, 2, -1, -1, 1, -1, 0])
    unlabelled = np.asarray(y == -1, np.float32)
    target, pred = _posteriors(model, v, x + 0.7), _posteriors(model, v, x)
    kl = np.sum(np.exp(target) * (target - pred), axis=-1)
    assert np.sum(unlabelled * kl) > 0.1  # the shift moves the posteriors: a real test
    base, _ = _jit_loss(make_semi_supervised_loss())(model.apply, v, x, y)
    cons = jax.jit(make_semi_supervised_loss(consistency_weight=2.0, consistency_rampup_steps=10, perturb=_shift(0.7)),
                   static_argnums=0)
    for step, weight in ((0, 0.2), (4, 1.0), (9, 2.0), (500, 2.0)):
        loss, aux = cons(model.apply, v, x, y, key=jax.random.key(0), step=step)
        np.testing.assert_allclose(aux["consistency_weight"], weight, rtol=1e-6)
        np.testing.assert_allclose(aux["consistency"].total, np.sum(unlabelled * kl), rtol=1e-4)
        np.testing.assert_allclose(loss, base + weight * np.mean(unlabelled * kl), rtol=1e-5)
    agree = np.argmax(target, -1) == np.argmax(pred, -1)
    np.testing.assert_allclose(aux["consistency_agreement"].total, np.sum(unlabelled * agree))


def test_consistency_start_step_delays_the_term_and_its_ramp():
    """w(t) = w · clip((t + 1 − S) / R, 0, 1): before step S the loss is the loss without the term
    (the labelled terms train alone); from S the ramp runs as it would from step 0."""
    model, v = _model_and_variables()
    x = jax.random.normal(jax.random.key(2), (8, 2))
    y = jnp.array([0, -1, 2, -1, -1, 1, -1, 0])
    unlabelled = np.asarray(y == -1, np.float32)
    target, pred = _posteriors(model, v, x + 0.7), _posteriors(model, v, x)
    kl_mean = np.mean(unlabelled * np.sum(np.exp(target) * (target - pred), axis=-1))
    base, _ = _jit_loss(make_semi_supervised_loss())(model.apply, v, x, y)
    late = make_semi_supervised_loss(consistency_weight=2.0, consistency_rampup_steps=10, consistency_start_step=100,
                                     perturb=_shift(0.7))
    late_jit = jax.jit(late, static_argnums=0)
    for step, weight in ((0, 0.0), (99, 0.0), (100, 0.2), (104, 1.0), (109, 2.0), (5000, 2.0)):
        loss, aux = late_jit(model.apply, v, x, y, key=jax.random.key(0), step=step)
        np.testing.assert_allclose(aux["consistency_weight"], weight, rtol=1e-6)
        np.testing.assert_allclose(late.consistency_weight_at(step), weight, rtol=1e-6)
        np.testing.assert_allclose(loss, base + weight * kl_mean, rtol=1e-5)
    step_on = make_semi_supervised_loss(consistency_weight=2.0, consistency_start_step=7, perturb=_shift(0.7))
    assert [float(step_on.consistency_weight_at(t)) for t in (0, 6, 7, 8)] == [0.0, 0.0, 2.0, 2.0]
    for bad, message in ((-1, "consistency_start_step must be a finite number >= 0; got -1"),
                         (2.5, "consistency_start_step must be an integer .*got 2.5")):
        with pytest.raises(ValueError, match=message):
            make_semi_supervised_loss(consistency_start_step=bad)
    with pytest.raises(ValueError, match="consistency_start_step must be an integer >= 0 .*got True"):
        fc.SemiSupervisedLoss(consistency_start_step=True)


def test_consistency_gradient_flows_through_the_trained_copy_only():
    """The perturbed copy's posterior is a constant target: the gradient is that of the
    cross-entropy of p(· | x) against the fixed target (the target's entropy has none)."""
    model, v = _model_and_variables()
    x = jax.random.normal(jax.random.key(2), (8, 2))
    y = jnp.full(8, UNLABELLED)
    cons = make_semi_supervised_loss(unlabelled_weight=0.0, consistency_weight=1.0, perturb=_shift(0.7))
    target = np.exp(_posteriors(model, v, x + 0.7))  # computed outside: no gradient can reach it

    def by_hand(params):
        return -jnp.mean(jnp.sum(target * _posteriors(model, {**v, "params": params}, x), axis=-1))

    def by_loss(params):
        return cons(model.apply, {**v, "params": params}, x, y, key=jax.random.key(0), step=0)[0]

    _assert_same_gradients(by_loss, by_hand, v["params"])


def test_consistency_target_input_trains_the_perturbed_copy_towards_the_inputs_posterior():
    """consistency_target='input' (FixMatch's direction): KL(sg p(· | x) ‖ p(· | x̃)), its value
    and its gradient (through the perturbed copy only) by hand; 'perturbed' is the other KL."""
    model, v = _model_and_variables()
    x = jax.random.normal(jax.random.key(2), (8, 2))
    y = jnp.array([0, -1, 2, -1, -1, 1, -1, 0])
    unlabelled = np.asarray(y == -1, np.float32)
    moved, here = _posteriors(model, v, x + 0.7), _posteriors(model, v, x)
    base, _ = _jit_loss(make_semi_supervised_loss())(model.apply, v, x, y)
    for target, closed_form in (("input", np.sum(np.exp(here) * (here - moved), axis=-1)),
                                ("perturbed", np.sum(np.exp(moved) * (moved - here), axis=-1))):
        cons = make_semi_supervised_loss(consistency_weight=1.0, consistency_target=target, perturb=_shift(0.7))
        loss, aux = _jit_loss(cons)(model.apply, v, x, y, key=jax.random.key(0), step=0)
        np.testing.assert_allclose(aux["consistency"].total, np.sum(unlabelled * closed_form), rtol=1e-4)
        np.testing.assert_allclose(loss, base + np.mean(unlabelled * closed_form), rtol=1e-5)
    fixed = np.exp(here)  # computed outside: no gradient can reach the target
    y_un = jnp.full(8, UNLABELLED)
    cons = make_semi_supervised_loss(unlabelled_weight=0.0, consistency_weight=1.0, consistency_target="input",
                                     perturb=_shift(0.7))

    def by_hand(params):
        return -jnp.mean(jnp.sum(fixed * _posteriors(model, {**v, "params": params}, x + 0.7), axis=-1))

    def by_loss(params):
        return cons(model.apply, {**v, "params": params}, x, y_un, key=jax.random.key(0), step=0)[0]

    _assert_same_gradients(by_loss, by_hand, v["params"])
    # before the start step the second copy carries no gradient: that of the loss without the term
    late = make_semi_supervised_loss(consistency_weight=1.0, consistency_target="input", consistency_start_step=5,
                                     perturb=_shift(0.7))
    plain = make_semi_supervised_loss()
    _assert_same_gradients(lambda p: late(model.apply, {**v, "params": p}, x, y, key=jax.random.key(0), step=4)[0],
                           lambda p: plain(model.apply, {**v, "params": p}, x, y)[0], v["params"])
    with pytest.raises(ValueError, match="consistency_target must be one of .*got 'both'"):
        make_semi_supervised_loss(consistency_target="both")
    # the config's choices are the loss's (config.py sits below losses.py and cannot import them)
    for choice in fc.losses.CONSISTENCY_TARGETS:
        assert fc.LossConfig(kind="semi_supervised", consistency_target=choice).consistency_target == choice
    with pytest.raises(ValueError, match=r"must be one of \('perturbed', 'input'\)"):
        fc.LossConfig(kind="semi_supervised", consistency_target="both")
    assert fc.losses.CONSISTENCY_TARGETS == ("perturbed", "input")


def test_labelled_weight_scales_the_labelled_joint_likelihood():
    model, v = _model_and_variables()
    x = jax.random.normal(jax.random.key(2), (8, 2))
    y = jnp.array([0, -1, 2, -1, -1, 1, -1, 0])
    log_joint = model.apply(v, x, method="class_log_likelihoods") + model.apply(v, method="log_weights")
    labelled = np.asarray(y >= 0)
    joint = np.asarray(log_joint)[np.arange(8), np.where(labelled, y, 0)]
    marginal = np.asarray(jax.nn.logsumexp(log_joint, -1))
    loss, _ = _jit_loss(make_semi_supervised_loss(labelled_weight=3.0))(model.apply, v, x, y)
    np.testing.assert_allclose(loss, np.mean(np.where(labelled, -3.0 * joint, -marginal)), rtol=1e-5)


def test_consistency_arguments_are_checked():
    with pytest.raises(ValueError, match="consistency_weight > 0 needs perturb"):
        make_semi_supervised_loss(consistency_weight=1.0)
    with pytest.raises(TypeError, match="perturb must be a function"):
        make_semi_supervised_loss(consistency_weight=1.0, perturb=0.1)
    with pytest.raises(ValueError, match="consistency_rampup_steps must be a finite number >= 0; got -5"):
        make_semi_supervised_loss(consistency_rampup_steps=-5)
    with pytest.raises(ValueError, match="labelled_weight must be a finite number >= 0; got nan"):
        make_semi_supervised_loss(labelled_weight=float("nan"))
    with pytest.raises(ValueError, match="consistency_weight must be a finite number >= 0; got inf"):
        make_semi_supervised_loss(consistency_weight=float("inf"), perturb=_shift(1.0))
    with pytest.raises(ValueError, match="consistency_weight > 0 needs perturb"):
        fc.SemiSupervisedLoss(consistency_weight=1.0)
    with pytest.raises(ValueError, match="std must be a finite number > 0; got 0"):
        fc.data.GaussianNoise(0)
    assert not fc.needs_key(make_semi_supervised_loss(perturb=_shift(1.0)))  # weight 0: no term, no key


def test_training_with_consistency_needs_a_key_and_fit_passes_one_per_step():
    model, v = _model_and_variables(2)
    loss = make_semi_supervised_loss(consistency_weight=1.0, consistency_rampup_steps=4,
                                     perturb=fc.data.GaussianNoise(0.3))
    (x, y), _ = moons_splits(0.1)
    x, y = x[:256], np.where(np.arange(256) < 16, y[:256], UNLABELLED).astype(np.int32)
    state = fc.create_train_state(model, jax.random.key(0), x[:1], optax.adam(1e-3), loss)
    batch = (x[:64], y[:64])
    with pytest.raises(ValueError, match="key must be a JAX PRNG key.*got key=None"):
        fc.train_step(state, batch)
    with pytest.raises(TypeError, match="key must be a single JAX PRNG key; got an array of keys"):
        fc.train_step(state, batch, key=jax.random.split(jax.random.key(0), 2))
    metrics = [fc.eval_step(state, batch)]
    for seed in (1, 2):
        fresh = fc.create_train_state(model, jax.random.key(0), x[:1], optax.adam(1e-3), loss)
        _, aux = fc.train_step(fresh, batch, key=jax.random.key(seed))
        metrics.append(aux)
    assert "consistency" not in metrics[0]
    assert metrics[1]["consistency"] != metrics[2]["consistency"]  # the key draws the second copy
    assert metrics[1]["consistency_weight"] == pytest.approx(0.25)
    result = fc.fit(state, (x, y), (x[:64], np.full(64, UNLABELLED, np.int32)), key=jax.random.key(1),
                    config=fc.TrainConfig(epochs=2, batch_size=64, select="marginal_nll"), progress=False)
    history = result.history
    assert history["train_consistency_weight"][0] < history["train_consistency_weight"][1] == pytest.approx(1.0)
    assert np.all(np.isfinite(history["train_consistency"])) and "val_consistency" not in history


def test_unlabelled_rampup_scales_the_marginal_term_in_training_and_fit_ramps_it():
    """λ(t) = λ · min(1, (t + 1) / R_u): in training the loss equals the loss built with the ramped
    λ; evaluation (no key) scores the full λ; fit passes the step, so the history shows the ramp."""
    model, v = _model_and_variables()
    x = jax.random.normal(jax.random.key(2), (8, 2))
    y = jnp.array([0, -1, 2, -1, -1, 1, -1, 0])
    warm = make_semi_supervised_loss(unlabelled_weight=2.0, cross_entropy_weight=0.5, unlabelled_rampup_steps=10)
    assert fc.needs_key(warm) and not fc.needs_key(make_semi_supervised_loss(unlabelled_weight=2.0))
    ramped = jax.jit(warm, static_argnums=0)
    for step, lam in ((0, 0.2), (4, 1.0), (9, 2.0), (500, 2.0)):
        expected, _ = _jit_loss(make_semi_supervised_loss(unlabelled_weight=lam, cross_entropy_weight=0.5))(
            model.apply, v, x, y)
        loss, aux = ramped(model.apply, v, x, y, key=jax.random.key(0), step=step)
        np.testing.assert_allclose(aux["unlabelled_weight"], lam, rtol=1e-6)
        np.testing.assert_allclose(loss, expected, rtol=1e-5)
    full_loss = make_semi_supervised_loss(unlabelled_weight=2.0, cross_entropy_weight=0.5)
    full, _ = _jit_loss(full_loss)(model.apply, v, x, y)
    evaluated, eval_aux = _jit_loss(warm)(model.apply, v, x, y)
    np.testing.assert_allclose(evaluated, full, rtol=1e-6)
    assert "unlabelled_weight" not in eval_aux
    with pytest.raises(ValueError, match="step .* must be given with key"):
        warm(model.apply, v, x, y, key=jax.random.key(0))
    with pytest.raises(ValueError, match="unlabelled_rampup_steps must be an integer"):
        make_semi_supervised_loss(unlabelled_rampup_steps=2.5)
    with pytest.raises(ValueError, match="unlabelled_rampup_steps must be a finite number >= 0; got -1"):
        make_semi_supervised_loss(unlabelled_rampup_steps=-1)
    with pytest.raises(ValueError, match=r"unlabelled_rampup_steps must be an integer >= 0 \(optimiser .*got 2.5"):
        fc.SemiSupervisedLoss(unlabelled_rampup_steps=2.5)  # built directly, past the factory's checks
    with pytest.raises(ValueError, match="consistency_rampup_steps must be an integer >= 0 .*got -3"):
        fc.SemiSupervisedLoss(consistency_rampup_steps=-3)

    model2, _ = _model_and_variables(2)
    (xm, ym), _ = moons_splits(0.1)
    xm, ym = xm[:256], np.where(np.arange(256) < 16, ym[:256], UNLABELLED).astype(np.int32)
    loss = make_semi_supervised_loss(unlabelled_rampup_steps=6)
    state = fc.create_train_state(model2, jax.random.key(0), xm[:1], optax.adam(1e-3), loss)
    result = fc.fit(state, (xm, ym), (xm[:64], np.full(64, UNLABELLED, np.int32)), key=jax.random.key(1),
                    config=fc.TrainConfig(epochs=2, batch_size=64, select="marginal_nll"), progress=False)
    # epoch 1: steps 0-3, λ = 1/6 ... 4/6 (mean 2.5/6); epoch 2: steps 4-7, λ = 5/6, 1, 1, 1
    np.testing.assert_allclose(result.history["train_unlabelled_weight"], [2.5 / 6, (5 / 6 + 3) / 4], rtol=1e-5)
