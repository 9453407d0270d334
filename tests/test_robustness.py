"""Robustness evaluation on a small digits CNN: attacks stay feasible, batching is exact, and the
gradient-masking checks pass on an honest model and fail on a model whose gradients are masked."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.datasets import load_digits

import flowclass as fc
from flowclass import robustness


class TinyCNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(16, (3, 3))(x))
        return nn.Dense(10)(x.reshape(x.shape[0], -1))


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[..., None]  # (1797, 8, 8, 1) in [0, 1]
    y = data.target.astype(np.int32)
    net = TinyCNN()
    state = fc.create_train_state(net, jax.random.key(0), x[:1], optax.adam(3e-3), fc.cross_entropy)
    order = np.random.default_rng(0).permutation(400 * 64) % 1500
    for batch in order.reshape(400, 64):
        state, _ = fc.train_step(state, (jnp.asarray(x[batch]), jnp.asarray(y[batch])))
    logits_fn = functools.partial(net.apply, state.variables)
    return logits_fn, x[1500:1700], y[1500:1700]


def test_attacks_stay_in_the_ball_and_the_box(digits):
    fn, x, y = digits
    eps = 0.1
    for result in (
        robustness.pgd_robust_accuracy(fn, x, y, eps=eps, steps=10, key=jax.random.key(0)),
        robustness.fgsm_robust_accuracy(fn, x, y, eps=eps),
        robustness.random_search_robust_accuracy(fn, x, y, eps=eps, queries=50, key=jax.random.key(0)),
    ):
        assert result.adversarial.shape == x.shape
        assert np.all(np.abs(result.adversarial - x) <= eps + 1e-6)
        assert result.adversarial.min() >= 0.0 and result.adversarial.max() <= 1.0


def test_l2_attacks_stay_in_the_l2_ball_and_the_box(digits):
    fn, x, y = digits
    eps = 0.5
    for result in (
        robustness.pgd_robust_accuracy(fn, x, y, eps=eps, steps=10, norm="l2", key=jax.random.key(0)),
        robustness.fgsm_robust_accuracy(fn, x, y, eps=eps, norm="l2"),
    ):
        assert np.linalg.norm((result.adversarial - x).reshape(len(x), -1), axis=1).max() <= eps + 1e-5
        assert result.adversarial.min() >= 0.0 and result.adversarial.max() <= 1.0
        assert result.robust_accuracy < robustness.clean_accuracy(fn, x, y)


def test_result_is_the_models_verdict_at_the_returned_point(digits):
    fn, x, y = digits
    result = robustness.pgd_robust_accuracy(fn, x, y, eps=0.1, steps=10, key=jax.random.key(0))
    logits = np.asarray(fn(jnp.asarray(result.adversarial)))
    np.testing.assert_array_equal(result.correct, logits.argmax(1) == y)
    others = np.where(np.eye(10, dtype=bool)[y], -np.inf, logits).max(1)
    np.testing.assert_allclose(result.margin, others - logits[np.arange(len(y)), y], rtol=1e-5, atol=1e-5)
    assert np.all(result.correct == (result.margin < 0))


def test_attack_lowers_accuracy_and_larger_eps_lowers_it_more(digits):
    fn, x, y = digits
    clean = robustness.clean_accuracy(fn, x, y)
    small = robustness.pgd_robust_accuracy(fn, x, y, eps=0.05, steps=20, key=jax.random.key(0)).robust_accuracy
    large = robustness.pgd_robust_accuracy(fn, x, y, eps=0.2, steps=20, key=jax.random.key(0)).robust_accuracy
    assert clean > 0.85
    assert large < small < clean


def test_batching_does_not_change_a_deterministic_attack(digits):
    fn, x, y = digits
    x, y = x[:37], y[:37]
    run = functools.partial(robustness.pgd_robust_accuracy, fn, x, y, eps=0.1, steps=5, random_start=False)
    whole, padded = run(batch_size=64), run(batch_size=10)  # 37 = 3 full batches of 10 and one padded
    np.testing.assert_allclose(whole.adversarial, padded.adversarial, atol=1e-6)
    np.testing.assert_array_equal(whole.correct, padded.correct)


def test_sanity_checks_pass_on_an_honest_model(digits):
    fn, x, y = digits
    report = robustness.sanity_checks(fn, x, y, eps=0.1, key=jax.random.key(0), steps=10, queries=300)
    assert report.accuracy["pgd"] < report.accuracy["clean"]
    assert report.passed, report


def test_sanity_checks_catch_masked_gradients(digits):
    """Quantising the input (zero gradient almost everywhere) hides the model from PGD, not from search."""
    fn, x, y = digits

    def masked(v):
        return fn(jnp.round(v * 4) / 4)

    report = robustness.sanity_checks(masked, x, y, eps=0.1, key=jax.random.key(0), steps=10, queries=300)
    assert not report.checks["eps_1_breaks_all"]
    assert not report.checks["gradient_free_no_better"]
    assert not report.passed


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(eps=0.0, key=jax.random.key(0)), "eps must be"),
        (dict(eps=0.1), "needs a key"),
        (dict(eps=0.1, key=jax.random.key(0), loss="hinge"), "'margin' or 'cross_entropy'"),
        (dict(eps=0.1, key=jax.random.key(0), steps=0), "steps must be"),
        (dict(eps=0.1, key=jax.random.key(0), bounds=(0.0, 0.5)), "inside bounds"),
        (dict(eps=0.1, key=jax.random.key(0), norm="l1"), "norm must be 'linf' or 'l2'"),
        (dict(eps=0.1, key=jax.random.key(0), restarts=0), "restarts must be a positive integer"),
        (dict(eps=0.1, key=jax.random.key(0), batch_size=0), "batch_size must be a positive integer"),
    ],
)
def test_bad_arguments_are_refused(digits, kwargs, message):
    fn, x, y = digits
    with pytest.raises(ValueError, match=message):
        robustness.pgd_robust_accuracy(fn, x[:4], y[:4], **kwargs)


def test_a_penalty_steers_the_attack_away_from_what_it_penalises(digits):
    """Adaptive PGD: penalising a large top logit (a stand-in detector) lowers it at the points found."""
    fn, x, y = digits

    def top_logit(logits):
        return jnp.max(logits, -1)

    def penalty(logits):
        return 10.0 * jax.nn.relu(top_logit(logits) - 5.0)

    plain = robustness.pgd_robust_accuracy(fn, x, y, eps=0.2, steps=20, key=jax.random.key(0))
    adaptive = robustness.pgd_robust_accuracy(fn, x, y, eps=0.2, steps=20, key=jax.random.key(0), penalty=penalty)
    score = lambda r: float(np.mean(np.asarray(penalty(fn(jnp.asarray(r.adversarial))))))  # noqa: E731
    assert score(adaptive) < 0.5 * score(plain)
    assert adaptive.robust_accuracy < robustness.clean_accuracy(fn, x, y)  # it still attacks
