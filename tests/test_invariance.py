"""The shift-marginal decision rule (flowclass.invariance)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowclass as fc
from flowclass.data.pixels import translate
from flowclass.invariance import ONE_PIXEL_CROSS, marginalise_shifts, shift_logits, shift_marginal_logits


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
