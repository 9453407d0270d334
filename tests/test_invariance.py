"""The shift-marginal decision rule (flowclass.invariance)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowclass as fc
from flowclass import invariance
from flowclass.data.pixels import translate
from flowclass.invariance import (
    DECISION_RULES,
    ONE_PIXEL_CROSS,
    decision_rule_metrics,
    marginalise_shifts,
    rule_logits,
    selected_rule,
    shift_logits,
    shift_marginal_logits,
)


@pytest.fixture(scope="module")
def flow():
    x = np.zeros((6, 8, 8, 1), np.float32)  # digits with empty borders: a translation only moves pixels
    x[:, 2:6, 2:6] = np.random.default_rng(0).uniform(0.2, 1.0, (6, 4, 4, 1))
    model = fc.image_realnvp("fast", input_shape=(8, 8, 1), num_classes=3)
    variables = model.init(jax.random.key(0), jnp.asarray(x))  # ActNorm initialises on the data
    assert np.all(np.isfinite(fc.predict_logits(model.apply, variables, x)))
    return model, variables, x


def test_identity_shift_is_the_plain_rule(flow):
    model, variables, x = flow
    plain = fc.predict_logits(model.apply, variables, x)
    np.testing.assert_allclose(shift_marginal_logits(model.apply, variables, x, [(0, 0)]), plain, atol=1e-4)


def test_shifts_are_down_and_right_and_undo_a_translation(flow):
    model, variables, x = flow
    moved = np.asarray(translate(x, np.tile([1, -1], (len(x), 1))))  # one pixel down and one left
    back = shift_logits(model.apply, variables, moved, [(-1, 1), (0, 0)])
    np.testing.assert_allclose(back[0], fc.predict_logits(model.apply, variables, x), atol=1e-4)
    assert not np.allclose(back[1], back[0], atol=1e-2)


def test_marginal_is_the_log_mean_likelihood_over_shifts(flow):
    model, variables, x = flow
    per_shift = shift_logits(model.apply, variables, x, ONE_PIXEL_CROSS)
    assert per_shift.shape == (5, 6, 3)
    marginal = shift_marginal_logits(model.apply, variables, x)
    expected = np.log(np.mean(np.exp(per_shift.astype(np.float64) - per_shift.max()), axis=0)) + per_shift.max()
    np.testing.assert_allclose(marginal, expected, rtol=1e-5)
    assert np.all((marginal >= per_shift.min(0) - 1e-4) & (marginal <= per_shift.max(0) + 1e-4))
    np.testing.assert_allclose(marginalise_shifts(per_shift[::-1]), marginalise_shifts(per_shift), rtol=1e-6)


def test_bad_input_is_refused(flow):
    model, variables, x = flow
    with pytest.raises(ValueError, match="NHWC"):
        shift_logits(model.apply, variables, x[..., 0], ONE_PIXEL_CROSS)
    with pytest.raises(ValueError, match="at least one"):
        shift_logits(model.apply, variables, x, [])



# --- decision-rule selection ----------------------------------------------------------------


@pytest.fixture
def shift_calls(monkeypatch):
    """Records the shift sets of every shift_logits call (one entry per set of forward passes)."""
    calls = []
    real = invariance.shift_logits

    def recording(apply_fn, variables, x, shifts, **kwargs):
        calls.append(tuple(shifts))
        return real(apply_fn, variables, x, shifts, **kwargs)

    monkeypatch.setattr(invariance, "shift_logits", recording)
    return calls


def test_rule_logits_gives_both_rules_from_one_set_of_passes(flow, shift_calls):
    model, variables, x = flow
    logits = rule_logits(model.apply, variables, x)
    assert list(logits) == list(DECISION_RULES) == ["plain", "shift_marginal"]
    assert shift_calls == [ONE_PIXEL_CROSS]  # 5 passes, not 1 + 5
    np.testing.assert_allclose(logits["plain"], fc.predict_logits(model.apply, variables, x), atol=1e-5)
    np.testing.assert_allclose(logits["shift_marginal"], shift_marginal_logits(model.apply, variables, x), rtol=1e-6)
    assert all(v.shape == (6, 3) for v in logits.values())


def test_rule_logits_of_the_plain_rule_alone_costs_one_pass(flow, shift_calls):
    model, variables, x = flow
    logits = rule_logits(model.apply, variables, x, rules=("plain",), batch_size=4)
    assert list(logits) == ["plain"] and shift_calls == [((0, 0),)]
    np.testing.assert_allclose(logits["plain"], fc.predict_logits(model.apply, variables, x), atol=1e-5)
    only_marginal = rule_logits(model.apply, variables, x, rules=["shift_marginal"])
    assert list(only_marginal) == ["shift_marginal"]


@pytest.mark.parametrize("rules", [(), ("plain", "plain"), ("majority",), "plain"])
def test_rule_logits_refuses_unknown_rules(flow, rules):
    model, variables, x = flow
    with pytest.raises(ValueError, match="rules must name"):
        rule_logits(model.apply, variables, x, rules=rules)


@pytest.fixture(scope="module")
def state(flow):
    model, variables, x = flow
    state = fc.create_train_state(model, jax.random.key(0), x, optax.adam(1e-3), fc.flow_nll)
    return state.replace(params=variables["params"], collections={k: v for k, v in variables.items() if k != "params"})


def test_decision_rule_metrics_scores_both_rules_on_validation(flow, state, shift_calls):
    _, _, x = flow
    logits = rule_logits(state.apply_fn, state.variables, x)
    y = np.asarray(logits["shift_marginal"].argmax(-1), np.int32)  # the marginal rule is right everywhere
    shift_calls.clear()
    metrics = decision_rule_metrics(x, y, batch_size=4)(state)
    assert shift_calls == [ONE_PIXEL_CROSS]
    plain = float(np.mean(logits["plain"].argmax(-1) == y))
    assert metrics == pytest.approx({"plain_rule_accuracy": plain, "shift_marginal_accuracy": 1.0,
                                     "best_rule_accuracy": 1.0})


def test_decision_rule_metrics_skip_the_marginal_rule_before_from_step(flow, state, shift_calls):
    _, _, x = flow
    y = np.zeros(len(x), np.int32)
    metrics_fn = decision_rule_metrics(x, y, from_step=5)
    early = metrics_fn(state.replace(step=jnp.asarray(4, jnp.int32)))
    assert shift_calls == [((0, 0),)]  # one pass only
    assert math.isnan(early["shift_marginal_accuracy"])
    assert early["best_rule_accuracy"] == early["plain_rule_accuracy"]
    late = metrics_fn(state.replace(step=jnp.asarray(5, jnp.int32)))
    assert shift_calls[-1] == ONE_PIXEL_CROSS and not math.isnan(late["shift_marginal_accuracy"])
    assert late["best_rule_accuracy"] == max(late["plain_rule_accuracy"], late["shift_marginal_accuracy"])
    assert selected_rule(early) == "plain"


@pytest.mark.parametrize(
    ("x_shape", "y", "kwargs", "match"),
    [
        ((6, 8, 8), np.zeros(6, np.int32), {}, "x_val"),
        ((0, 8, 8, 1), np.zeros(0, np.int32), {}, "x_val"),
        ((6, 8, 8, 1), np.zeros(5, np.int32), {}, "y_val"),
        ((6, 8, 8, 1), np.zeros(6, np.float32), {}, "y_val"),
        ((6, 8, 8, 1), np.zeros(6, np.int32), {"from_step": -1}, "from_step"),
    ],
)
def test_decision_rule_metrics_bad_inputs(x_shape, y, kwargs, match):
    with pytest.raises(ValueError, match=match):
        decision_rule_metrics(np.zeros(x_shape, np.float32), y, **kwargs)


@pytest.mark.parametrize(
    ("metrics", "rule"),
    [
        ({"plain_rule_accuracy": 0.98, "shift_marginal_accuracy": 0.99}, "shift_marginal"),
        ({"plain_rule_accuracy": 0.99, "shift_marginal_accuracy": 0.99}, "plain"),  # a tie keeps the cheap rule
        ({"plain_rule_accuracy": 0.99, "shift_marginal_accuracy": 0.98}, "plain"),
        ({"plain_rule_accuracy": 0.99, "shift_marginal_accuracy": float("nan")}, "plain"),  # not scored yet
        ({"plain_rule_accuracy": 0.99}, "plain"),
        ({"val_plain_rule_accuracy": np.float64(0.5), "val_shift_marginal_accuracy": np.float64(0.6),
          "val_loss": 1.0}, "shift_marginal"),  # fit's history names, NumPy scalars
        ({"val_plain_rule_accuracy": 0.7, "val_shift_marginal_accuracy": 0.6, "plain_rule_accuracy": 0.1},
         "plain"),  # the history's names win
    ],
)
def test_selected_rule_needs_a_strictly_better_marginal_rule(metrics, rule):
    assert selected_rule(metrics) == rule


def test_selected_rule_refuses_metrics_without_the_plain_rule():
    with pytest.raises(ValueError, match="plain_rule_accuracy"):
        selected_rule({"val_accuracy": 0.99, "shift_marginal_accuracy": 0.99})
