"""Bad public inputs raise ValueError naming what was expected and what came."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowclass as fc
from flowclass._validation import (
    check_bounds,
    check_classifier_inputs,
    check_norm,
    check_positive,
    check_positive_int,
    check_probability,
    check_scores,
)


@pytest.fixture(scope="module")
def model_and_variables():
    model = fc.tabular_realnvp(2, 2, num_couplings=2, hidden=(8,), means=((-4, 0), (4, 0)))
    return model, model.init(jax.random.key(0), jnp.zeros((1, 2)))


@pytest.mark.parametrize(
    "x, message",
    [
        (np.zeros((2, 3), np.float32), r"x must have shape \(batch, 2\); got \(2, 3\)"),
        (np.zeros((2,), np.float32), r"rank 2\); got shape \(2,\) \(rank 1\)"),
        (np.zeros((2, 2, 1), np.float32), r"rank 2\); got shape \(2, 2, 1\) \(rank 3\)"),
        (np.array([[0.0, np.nan], [1.0, np.inf]], np.float32), "must be finite; got 2 NaN/inf"),
        (np.zeros((0, 2), np.float32), "empty batch"),
        (np.zeros((2, 2), np.int32), "floating-point"),
    ],
)
@pytest.mark.parametrize("method", ["logits", "predict", "encode", "class_log_likelihoods"])
def test_bad_inputs(model_and_variables, x, message, method):
    model, variables = model_and_variables
    with pytest.raises(ValueError, match=message):
        model.apply(variables, x, method=method)


def test_shape_errors_are_raised_under_jit_too(model_and_variables):
    model, variables = model_and_variables
    with pytest.raises(ValueError, match="feature shape"):
        jax.jit(lambda v, x: model.apply(v, x))(variables, jnp.zeros((4, 5)))


@pytest.mark.parametrize(
    "y, message",
    [
        (np.array([0, 2], np.int32), r"labels in \[0, 2\); got values in \[0, 2\]"),
        (np.array([-1, 0], np.int32), r"got values in \[-1, 0\]"),
        (np.array([0, 1, 1], np.int32), "3 labels but the inputs have 2"),
        (np.array([[0, 1]], np.int32), "1-D array"),
        (np.array([0.0, 1.0]), "integer class labels"),
    ],
)
def test_bad_labels(model_and_variables, y, message):
    model, variables = model_and_variables
    with pytest.raises(ValueError, match=message):
        model.apply(variables, np.zeros((2, 2), np.float32), y, method="log_prob")


def test_fit_rejects_bad_data():
    model = fc.FNN(2)
    x = np.random.default_rng(0).normal(size=(32, 2)).astype(np.float32)
    y = np.zeros(32, np.int32)

    def state():
        return fc.create_train_state(model, jax.random.key(0), x[:1], optax.adam(1e-3), fc.cross_entropy)

    one_epoch = dict(key=jax.random.key(1), config=fc.TrainConfig(epochs=1, batch_size=16), progress=False)
    with pytest.raises(ValueError, match=r"train y must hold labels in \[0, 2\); got values in \[0, 5\]"):
        fc.fit(state(), (x, np.where(np.arange(32) == 3, 5, y)), (x, y), **one_epoch)
    with pytest.raises(ValueError, match=r"validation x has examples of shape \(1,\); train x has \(2,\)"):
        fc.fit(state(), (x, y), (x[:, :1], y), **one_epoch)
    with pytest.raises(ValueError, match="train x must be finite"):
        bad = x.copy()
        bad[0, 0] = np.nan
        fc.fit(state(), (bad, y), (x, y), **one_epoch)
    with pytest.raises(ValueError, match="train x is an empty batch"):
        fc.fit(state(), (x[:0], y[:0]), (x, y), **one_epoch)
    with pytest.raises(ValueError, match=r"batch_size.* must be in \[1, 32\]"):
        fc.fit(state(), (x, y), (x, y), **{**one_epoch, "config": fc.TrainConfig(epochs=1, batch_size=64)})


# --- the shared checks of flowclass._validation, used by attacks, robustness, metrics, calibration ---


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: check_positive_int(0, "steps"), "steps must be a positive integer; got 0"),
        (lambda: check_positive_int(True, "steps"), "steps must be a positive integer; got True"),
        (lambda: check_positive_int(3.0, "queries"), "queries must be a positive integer; got 3.0"),
        (lambda: check_positive(-1.0, "eps"), "eps must be a finite number > 0; got -1.0"),
        (lambda: check_positive(np.inf, "step_size"), "step_size must be a finite number > 0; got inf"),
        (lambda: check_positive("0.1", "eps"), "eps must be a finite number > 0"),
        (lambda: check_probability(0.0, "threshold"), r"threshold must be a probability in \(0, 1\); got 0.0"),
        (lambda: check_norm("l1"), "norm must be 'linf' or 'l2'; got 'l1'"),
        (lambda: check_bounds((0.0,), None), r"bounds must be a pair \(lo, hi\)"),
        (lambda: check_bounds((1.0, 1.0), None), "lo < hi; got \\(1.0, 1.0\\)"),
        (lambda: check_bounds((0.0, 1.0), np.array([[-0.5, 0.5]]), name="x0"),
         r"x0 must lie inside bounds \[0.0, 1.0\]; its values span \[-0.5, 0.5\]"),
        (lambda: check_scores(np.zeros(3), np.zeros(3, int)), r"shape \(n, num_classes\)"),
        (lambda: check_scores(np.zeros((3, 2)), np.zeros(3)), "3 integers"),
        (lambda: check_scores(np.full((1, 2), np.nan), np.zeros(1, int)), "NaN or inf"),
        (lambda: check_classifier_inputs(lambda v: v, np.zeros(3, np.float32), 0), "batch of start points"),
        (lambda: check_classifier_inputs(lambda v: v[:, 0], np.zeros((3, 2), np.float32), 0), r"\(b, K\) scores"),
        (lambda: check_classifier_inputs(lambda v: v, np.zeros((3, 2), np.float32), 2, name="label"),
         r"label must be an integer class in \[0, 2\)"),
        (lambda: check_classifier_inputs(lambda v: v, np.zeros((3, 2), np.float32), 0.5), "integer class"),
    ],
)
def test_shared_checks_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_unlabelled_is_the_data_modules_constant():
    from flowclass import _validation

    assert _validation.UNLABELLED == fc.data.UNLABELLED == -1


def test_shared_checks_return_what_the_callers_use():
    assert check_bounds(None, np.ones((2, 2))) is None
    box = check_bounds((0, 1), np.zeros((2, 2)))
    assert box.dtype == jnp.float32 and box.tolist() == [0.0, 1.0]
    assert jax.jit(lambda v: check_bounds((0, 1), v + 5.0))(jnp.zeros(2)).shape == (2,)  # traced: no range check
    logits, labels = check_scores([[0.0, 1.0]], np.array([1], np.int64))
    assert labels.dtype == jnp.int32 and logits.shape == (1, 2)
    x, y, num_classes = check_classifier_inputs(lambda v: v @ jnp.ones((2, 3)), np.zeros((4, 2), np.float32),
                                                np.array([0, 1, 2, 0]))
    assert x.shape == (4, 2) and y.dtype == jnp.int32 and num_classes == 3
    check_positive_int(np.int32(2), "steps")
    check_positive(np.float32(1e-3), "eps")
    check_probability(0.5, "threshold")
