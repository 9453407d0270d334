"""Attacks: objectives go up, stopped paths stay put, PGD stays feasible, batched = one at a time."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowclass as fc
from flowclass import attacks, manifold, robustness
from flowclass.data import moons_splits, train_val_split


def _train(model, loss_fn, train, *, steps=200, batch_size=64):
    """A small trained model: ``steps`` Adam steps over shuffled batches (cheaper to compile than ``fit``)."""
    state = fc.create_train_state(model, jax.random.key(0), train[0][:1], optax.adam(3e-3), loss_fn)
    order = np.random.default_rng(0).permutation(steps * batch_size) % len(train[0])
    x, y = jnp.asarray(train[0]), jnp.asarray(train[1])
    for batch in order.reshape(steps, batch_size):
        state, _ = fc.train_step(state, (x[batch], y[batch]))
    return state.variables


@pytest.fixture(scope="module")
def moons():
    (x, y), (x_test, y_test) = moons_splits(0.1, n_samples=2000, n_train=1600)
    return train_val_split(x, y, val_fraction=0.2, seed=0), (x_test[:64], y_test[:64])


@pytest.fixture(scope="module")
def fnn(moons):
    (train, _), _ = moons
    net = fc.FNN(2, hidden=(32, 32))
    return net, _train(net, fc.cross_entropy, train)


@pytest.fixture(scope="module")
def flow(moons):
    (train, _), _ = moons
    model = fc.tabular_realnvp(2, 2, num_couplings=4, hidden=(32, 32), means=((-4, 0), (4, 0)))
    return model, _train(model, fc.flow_nll, train)


@pytest.fixture(scope="module")
def unconditional_flow(moons):
    (train, _), _ = moons
    model = fc.tabular_realnvp(2, 1, num_couplings=4, hidden=(32, 32), means=((0.0, 0.0),))
    return model, _train(model, fc.flow_nll, (train[0], np.zeros_like(train[1])))


def _attack_starts(moons):
    _, (x_test, y_test) = moons
    return jnp.asarray(x_test), jnp.asarray(1 - y_test)  # every point towards the other class


def _moved(result):
    return np.asarray(result.num_steps) > 0


# --- each attack increases its objective -------------------------------------------------


@pytest.mark.parametrize("optimizer", [attacks.DEFAULT_OPTIMIZER, optax.sign_sgd(0.05)], ids=["adam", "signed"])
def test_confidence_attack_reaches_the_target(moons, fnn, optimizer):
    net, variables = fnn
    x0, target = _attack_starts(moons)
    result = attacks.confidence_attack(functools.partial(net.apply, variables), x0, target,
                                       optimizer=optimizer, max_steps=200)
    assert result.inputs.shape == (201, 64, 2) and result.probs.shape == (201, 64, 2)
    moved = _moved(result)
    assert moved.mean() > 0.9  # the trained net puts most test points in their own class
    last = np.asarray(result.objective)[np.asarray(result.num_steps), np.arange(64)]
    assert np.all(last[moved] > np.asarray(result.objective)[0, moved])
    assert np.mean(result.succeeded) > 0.95
    np.testing.assert_allclose(result.objective, np.log(result.target_prob), rtol=1e-5, atol=1e-6)
    expected = jax.nn.softmax(net.apply(variables, result.final), axis=-1)
    np.testing.assert_allclose(result.probs[-1], expected, atol=1e-6)


def test_likelihood_attack_ascends_the_class_likelihood(moons, flow):
    model, variables = flow
    x0, target = _attack_starts(moons)
    result = attacks.likelihood_attack(
        functools.partial(model.apply, variables, method="class_log_likelihoods"), x0, target, steps=20)
    assert result.inputs.shape == (21, 64, 2)
    objective = np.asarray(result.objective)
    assert np.all(objective[-1] > objective[0] + 1.0)
    assert np.all(np.asarray(result.num_steps) == 20)  # no early stopping
    # the recorded objective and posterior are the model's log p(x_s | t) and p(t | x_s)
    for s in (0, 7, 20):
        np.testing.assert_allclose(
            objective[s], model.apply(variables, result.inputs[s], target, method="log_prob"), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(
            result.probs[s], model.apply(variables, result.inputs[s], method="predict_proba"), atol=1e-5)
    assert np.mean(result.succeeded) > 0.9


def test_latent_attack_moves_through_the_flow(moons, fnn, unconditional_flow):
    net, net_vars = fnn
    uflow, flow_vars = unconditional_flow
    encode = functools.partial(uflow.apply, flow_vars, method="encode")
    decode = functools.partial(uflow.apply, flow_vars, method="decode")
    x0, target = _attack_starts(moons)
    result = attacks.latent_attack(functools.partial(net.apply, net_vars), encode, decode, x0, target, max_steps=300)
    assert result.latents.shape == result.inputs.shape == (301, 64, 2)
    np.testing.assert_allclose(result.latents[0], encode(x0)[0], atol=1e-5)
    np.testing.assert_allclose(result.inputs[0], x0, atol=1e-4)  # f⁻¹(f(x0)) = x0
    for s in (0, 5, 300):
        np.testing.assert_allclose(result.inputs[s], decode(result.latents[s])[0], atol=1e-5)
    moved = _moved(result)
    last = np.asarray(result.objective)[np.asarray(result.num_steps), np.arange(64)]
    assert moved.mean() > 0.9 and np.all(last[moved] > np.asarray(result.objective)[0, moved])
    assert np.mean(result.succeeded) > 0.5  # Adam(0.1) can stall at a local maximum of p(t | f⁻¹(z))


# --- early stopping -------------------------------------------------------------------


def test_stopped_trajectories_stay_put(moons, fnn):
    net, variables = fnn
    x0, target = _attack_starts(moons)
    threshold = 0.999
    result = jax.device_get(attacks.confidence_attack(
        functools.partial(net.apply, variables), x0, target, max_steps=12, threshold=threshold))
    success, num_steps = result.success_step, result.num_steps
    assert 0 < np.mean(success >= 0) < 1  # some finish within 12 steps, some do not
    for i in range(64):
        if success[i] >= 0:
            s = success[i]
            assert num_steps[i] == s
            assert result.target_prob[s, i] > threshold and np.all(result.target_prob[:s, i] <= threshold)
            np.testing.assert_array_equal(result.inputs[s:, i], np.broadcast_to(result.inputs[s, i], (13 - s, 2)))
            np.testing.assert_array_equal(result.probs[s:, i], np.broadcast_to(result.probs[s, i], (13 - s, 2)))
        else:
            assert num_steps[i] == 12 and np.all(result.target_prob[:, i] <= threshold)
            assert np.all(np.any(result.inputs[1:, i] != result.inputs[:-1, i], axis=-1))  # moves every step


def test_skipping_after_all_trajectories_stop_changes_nothing(fnn):
    net, variables = fnn
    fn = functools.partial(net.apply, variables)
    x0 = jnp.array([[1.0, -0.5], [0.0, 1.0]])
    short = attacks.confidence_attack(fn, x0, jnp.array([0, 1]), max_steps=40)
    long = attacks.confidence_attack(fn, x0, jnp.array([0, 1]), max_steps=400)
    assert np.all(long.num_steps < 40)
    np.testing.assert_array_equal(long.inputs[:41], short.inputs)
    np.testing.assert_array_equal(long.inputs[41:], np.broadcast_to(short.inputs[-1], (360, 2, 2)))


# --- PGD and FGSM ---------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_stays_in_its_ball_and_box(moons, fnn, norm, targeted):
    net, variables = fnn
    _, (x_test, y_test) = moons
    x0 = np.clip(x_test, -0.5, 1.0)
    label = 1 - y_test if targeted else y_test
    eps, bounds = 0.3, (-0.5, 1.0)
    result = attacks.pgd_trajectories(functools.partial(net.apply, variables), x0, label, eps=eps, step_size=0.05,
                                      steps=25, norm=norm, targeted=targeted, key=jax.random.key(3), bounds=bounds)
    delta = np.asarray(result.inputs) - x0[None]
    size = np.abs(delta).max(-1) if norm == "linf" else np.linalg.norm(delta, axis=-1)
    assert size.max() <= eps + 1e-5
    assert size[0].max() > 0  # a random start
    assert np.all(result.inputs >= bounds[0]) and np.all(result.inputs <= bounds[1])
    hits = np.argmax(result.probs[-1], -1) == label
    fooled = hits if targeted else ~hits
    start_hits = np.argmax(jax.nn.softmax(net.apply(variables, x0)), -1) == label
    assert fooled.mean() > (start_hits if targeted else ~start_hits).mean() + 0.2
    np.testing.assert_array_equal(result.succeeded, np.any(
        (np.argmax(result.probs, -1) == label) == targeted, axis=0))


def test_fgsm_is_one_signed_step_of_size_eps(moons, fnn):
    net, variables = fnn
    _, (x_test, y_test) = moons
    fn = functools.partial(net.apply, variables)
    result = attacks.fgsm_trajectories(fn, x_test, y_test, eps=0.2)
    assert result.inputs.shape == (2, 64, 2)
    grad = jax.grad(lambda x: -jnp.sum(jax.nn.log_softmax(fn(x))[jnp.arange(64), y_test]))(jnp.asarray(x_test))
    np.testing.assert_allclose(result.final, x_test + 0.2 * np.sign(grad), atol=1e-6)
    l2 = attacks.fgsm_trajectories(fn, x_test, y_test, eps=0.2, norm="l2")
    np.testing.assert_allclose(np.linalg.norm(l2.final - x_test, axis=-1), 0.2, rtol=1e-5)


# --- one engine: the step shared with flowclass.robustness ------------------------------


def test_pgd_step_is_the_projected_signed_or_normalised_step():
    rng = np.random.default_rng(0)
    x0 = rng.uniform(0.2, 0.8, size=(5, 3, 2)).astype(np.float32)
    x = np.clip(x0 + rng.uniform(-0.1, 0.1, size=x0.shape), 0, 1).astype(np.float32)
    grad = rng.normal(size=x0.shape).astype(np.float32)
    grad[0] = 0.0  # a zero gradient does not move the point
    eps, alpha = 0.15, 0.1
    linf = attacks.pgd_step(jnp.asarray(x), jnp.asarray(grad), jnp.asarray(x0), eps=eps, step_size=alpha,
                            bounds=(0.0, 1.0))
    np.testing.assert_allclose(linf, np.clip(np.clip(x + alpha * np.sign(grad), x0 - eps, x0 + eps), 0, 1),
                               atol=1e-7)
    l2 = np.asarray(attacks.pgd_step(jnp.asarray(x), jnp.asarray(grad), jnp.asarray(x0), eps=eps, step_size=alpha,
                                     norm="l2"))
    norms = np.linalg.norm(grad.reshape(5, -1), axis=1).reshape(5, 1, 1)
    moved = x + alpha * grad / np.maximum(norms, 1e-12)
    delta = moved - x0
    scale = np.minimum(1.0, eps / np.linalg.norm(delta.reshape(5, -1), axis=1)).reshape(5, 1, 1)
    np.testing.assert_allclose(l2, x0 + delta * scale, atol=1e-6)
    np.testing.assert_array_equal(l2[0], x[0])
    assert np.linalg.norm((l2 - x0).reshape(5, -1), axis=1).max() <= eps + 1e-6
    with pytest.raises(ValueError, match="norm must be 'linf' or 'l2'"):
        attacks.pgd_step(jnp.asarray(x), jnp.asarray(grad), jnp.asarray(x0), eps=eps, step_size=alpha, norm="l1")


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_random_start_is_in_the_ball_and_the_box(norm):
    x0 = jnp.full((400, 4), 0.95)
    start = np.asarray(attacks.pgd_random_start(jax.random.key(0), x0, eps=0.1, norm=norm, bounds=(0.0, 1.0)))
    delta = start - 0.95
    size = np.abs(delta).max(-1) if norm == "linf" else np.linalg.norm(delta, axis=-1)
    assert size.max() <= 0.1 + 1e-6 and start.max() <= 1.0
    assert size.mean() > 0.05  # spread over the ball, not stuck at the centre
    again = attacks.pgd_random_start(jax.random.key(0), x0, eps=0.1, norm=norm, bounds=(0.0, 1.0))
    np.testing.assert_array_equal(start, again)  # same key, same numbers


def test_robust_accuracy_and_trajectories_take_the_same_steps(moons, fnn):
    """Without a random start, PGD's robust-accuracy point is the strongest iterate of its recorded path."""
    net, variables = fnn
    _, (x_test, y_test) = moons
    fn = functools.partial(net.apply, variables)
    bounds = (-3.0, 3.0)
    paths = attacks.pgd_trajectories(fn, x_test, y_test, eps=0.3, step_size=0.05, steps=8, bounds=bounds)
    robust = robustness.pgd_robust_accuracy(fn, x_test, y_test, eps=0.3, step_size=0.05, steps=8,
                                            loss="cross_entropy", random_start=False, bounds=bounds)
    logits = np.asarray(jax.vmap(fn)(paths.inputs))  # (T + 1, n, K)
    true = np.take_along_axis(logits, np.broadcast_to(y_test[None, :, None], logits.shape[:2] + (1,)), -1)[..., 0]
    others = np.where(np.eye(2, dtype=bool)[y_test][None], -np.inf, logits).max(-1)
    strongest = np.argmax(others - true, axis=0)  # the first iterate of largest margin
    np.testing.assert_allclose(robust.adversarial, paths.inputs[strongest, np.arange(len(y_test))], atol=1e-5)
    for norm in ("linf", "l2"):
        one = attacks.fgsm_trajectories(fn, x_test, y_test, eps=0.2, norm=norm, bounds=bounds)
        fgsm = robustness.fgsm_robust_accuracy(fn, x_test, y_test, eps=0.2, loss="cross_entropy", norm=norm,
                                               bounds=bounds)
        stepped = np.any(fgsm.adversarial != x_test, axis=-1)  # kept x_1: its margin beats x_0's
        assert stepped.mean() > 0.5
        np.testing.assert_allclose(fgsm.adversarial[stepped], np.asarray(one.final)[stepped], atol=1e-6)


# --- batched and jitted = one point at a time -------------------------------------------


def test_batched_attack_equals_one_point_at_a_time(moons, fnn, flow, unconditional_flow):
    net, net_vars = fnn
    model, flow_vars = flow
    uflow, uflow_vars = unconditional_flow
    x0, target = _attack_starts(moons)
    x0, target = x0[:6], target[:6]
    logits = functools.partial(net.apply, net_vars)
    runs = {
        "confidence": lambda x, t: attacks.confidence_attack(logits, x, t, max_steps=25),
        "likelihood": lambda x, t: attacks.likelihood_attack(
            functools.partial(model.apply, flow_vars, method="class_log_likelihoods"), x, t, steps=10),
        "latent": lambda x, t: attacks.latent_attack(
            logits, functools.partial(uflow.apply, uflow_vars, method="encode"),
            functools.partial(uflow.apply, uflow_vars, method="decode"), x, t, max_steps=25),
        "pgd": lambda x, t: attacks.pgd_trajectories(logits, x, t, eps=0.3, step_size=0.05, steps=10, norm="l2"),
    }
    for name, run in runs.items():
        batched = run(x0, target)
        for i in range(len(x0)):
            single = run(x0[i : i + 1], target[i : i + 1])
            for field in ("inputs", "probs", "objective"):
                np.testing.assert_allclose(getattr(single, field)[:, 0], getattr(batched, field)[:, i],
                                           rtol=1e-4, atol=1e-5, err_msg=f"{name}.{field}[{i}]")
            assert int(single.success_step[0]) == int(batched.success_step[i]), name


def test_new_weights_reuse_the_compilation(fnn):
    net, variables = fnn
    x0 = jnp.zeros((3, 2))
    attacks.confidence_attack(functools.partial(net.apply, variables), x0, 0, max_steps=5)
    size = attacks._confidence._cache_size()
    other = jax.tree.map(lambda a: a * 0.5, variables)
    first = attacks.confidence_attack(functools.partial(net.apply, variables), x0 + 0.1, 1, max_steps=5)
    second = attacks.confidence_attack(functools.partial(net.apply, other), x0 + 0.1, 1, max_steps=5)
    assert attacks._confidence._cache_size() == size  # weights are inputs of the graph, not constants
    assert not np.allclose(first.probs, second.probs)


# --- input checks ---------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors(fnn):
    net, variables = fnn
    fn = functools.partial(net.apply, variables)
    x0 = np.zeros((3, 2), np.float32)
    cases = [
        (lambda: attacks.confidence_attack(fn, np.zeros(2, np.float32), 0), r"batch of start points"),
        (lambda: attacks.confidence_attack(fn, np.full((3, 2), np.nan, np.float32), 0), "finite"),
        (lambda: attacks.confidence_attack(fn, x0, 2), r"target must be an integer class in \[0, 2\)"),
        (lambda: attacks.confidence_attack(fn, x0, np.array([0, 1])), "2 labels but the inputs have 3"),
        (lambda: attacks.confidence_attack(fn, x0, 0.5), "integer class"),
        (lambda: attacks.confidence_attack(fn, x0, 0, max_steps=0), "max_steps must be a positive integer"),
        (lambda: attacks.confidence_attack(fn, x0, 0, threshold=1.0), r"threshold must be a probability"),
        (lambda: attacks.confidence_attack(fn, x0, 0, bounds=(1.0, 0.0)), "lo < hi"),
        (lambda: attacks.confidence_attack(fn, x0 + 2.0, 0, bounds=(0.0, 1.0)), "inside bounds"),
        (lambda: attacks.pgd_trajectories(fn, x0, 0, eps=0.0, step_size=0.1), "eps must be a finite number > 0"),
        (lambda: attacks.pgd_trajectories(fn, x0, 0, eps=0.1, step_size=-1.0), "step_size"),
        (lambda: attacks.pgd_trajectories(fn, x0, 0, eps=0.1, step_size=0.1, norm="l1"), "norm must be"),
        (lambda: attacks.likelihood_attack(fn, x0, 0, log_prior=jnp.zeros(3)), r"log_prior must have shape \(2,\)"),
        (lambda: attacks.confidence_attack(lambda x: x[:, 0], x0, 0), r"to \(b, K\) scores"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


# --- on-manifold measures -------------------------------------------------------------


def test_manifold_measures_on_a_hand_made_path():
    inputs = np.array([[[0.0, 0.0], [5.0, 5.0], [0.0, 0.0]],
                       [[1.0, 0.0], [5.0, 5.0], [0.0, 1.0]],
                       [[4.0, 0.0], [5.0, 5.0], [0.0, 2.0]]], np.float32)  # (T + 1 = 3, n = 3, 2)
    result = attacks.AttackResult(
        inputs=inputs, probs=np.full((3, 3, 2), 0.5), objective=np.zeros((3, 3)), target=np.array([0, 1, 0]),
        success_step=np.array([2, 0, -1]), num_steps=np.array([2, 0, 2]))
    calls = []

    def log_density(x):  # on the manifold where the first coordinate is < 1.5
        calls.append(len(x))
        return np.where(x[:, 0] < 1.5, 0.0, -10.0)

    paths = manifold.path_log_density(result.inputs, result.num_steps, log_density)
    assert calls == [3 * 3]
    np.testing.assert_array_equal(paths, [[0, -10, 0], [0, -10, 0], [-10, -10, 0]])
    np.testing.assert_array_equal(manifold.on_manifold_fraction(paths, result.num_steps, -1.0), [0.5, np.nan, 1.0])
    np.testing.assert_array_equal(  # moves of length 1 (on) and 3 (off)
        manifold.on_manifold_fraction(paths, result.num_steps, -1.0, inputs=inputs), [0.25, np.nan, 1.0])
    summary = manifold.summarize_paths(result, paths, threshold=-1.0, reference=np.array([[4.0, 0.5], [0, 2.5]]))
    assert summary["n"] == 3 and summary["success_rate"] == pytest.approx(2 / 3)
    assert summary["median_steps_to_success"] == 1.0 and summary["starts_on_manifold"] == pytest.approx(2 / 3)
    ok = summary["successful"]  # path 0 only: path 1 did not move, path 2 failed
    assert ok["n_moved"] == 1 and ok["on_manifold_step_fraction"] == 0.5
    assert ok["on_manifold_length_fraction"] == 0.25 and ok["stays_on_manifold"] == 0.0
    assert ok["ends_on_manifold"] == 0.0 and ok["median_final_log_density"] == -10.0
    assert ok["median_final_nearest_distance"] == pytest.approx(0.5)
    both = summary["all"]  # paths 0 and 2
    assert both["n_moved"] == 2 and both["on_manifold_step_fraction"] == 0.75 and both["stays_on_manifold"] == 0.5
    assert both["median_final_nearest_distance"] == pytest.approx(0.5)
    only_failed = manifold.summarize_paths(result, paths, threshold=-1.0, reference=np.zeros((1, 2)),
                                           select=[False, False, True])
    assert only_failed["n"] == 1 and only_failed["success_rate"] == 0.0
    assert only_failed["successful"]["n_moved"] == 0 and np.isnan(only_failed["successful"]["ends_on_manifold"])
    assert only_failed["all"]["median_final_nearest_distance"] == pytest.approx(2.0)


def test_threshold_and_nearest_distance():
    values = np.arange(101, dtype=float)
    assert manifold.manifold_threshold(values) == pytest.approx(1.0)
    assert manifold.manifold_threshold(values, 50) == pytest.approx(50.0)
    rng = np.random.default_rng(0)
    points, reference = rng.normal(size=(300, 2)), rng.normal(size=(500, 2))
    brute = np.sqrt(((points[:, None] - reference[None]) ** 2).sum(-1)).min(-1)
    np.testing.assert_allclose(manifold.nearest_distance(points, reference, chunk=128), brute, atol=1e-4)
    with pytest.raises(ValueError, match="finite 1-D"):
        manifold.manifold_threshold(np.array([0.0, np.nan]))
