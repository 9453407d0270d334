import jax
import jax.numpy as jnp
import numpy as np

import flowclass as fc

from helpers import perturb


def _model():
    model = fc.tabular_realnvp(
        2, 3, num_couplings=3, hidden=(16,), means="normal", mean_scale=2.0, trainable_weights=True
    )
    x = jax.random.normal(jax.random.key(0), (9, 2))
    variables = perturb(model.init(jax.random.key(1), x), jax.random.key(2))
    return model, variables, x


def test_bayes_rule_and_likelihoods_agree():
    model, v, x = _model()
    per_class = model.apply(v, x, method="class_log_likelihoods")
    log_w = model.apply(v, method="log_weights")
    proba = model.apply(v, x, method="predict_proba")
    expected = jax.nn.softmax(per_class + log_w, axis=-1)  # the log-det cancels in Bayes' rule
    np.testing.assert_allclose(proba, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(proba.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(model.apply(v, x, method="predict"), np.argmax(expected, -1))
    np.testing.assert_allclose(model.apply(v, x), model.apply(v, x, method="logits"))
    marginal = model.apply(v, x, method="marginal_log_prob")
    np.testing.assert_allclose(marginal, jax.nn.logsumexp(per_class + log_w, axis=-1), rtol=1e-5)


def test_log_prob_is_change_of_variables():
    model, v, x = _model()
    y = jnp.array([0, 1, 2, 0, 1, 2, 0, 1, 2])
    z, log_det = model.apply(v, x, method="encode")
    base_lp = model.apply(v, z, method=lambda m, z: m.base.class_log_prob(z))
    expected = base_lp[jnp.arange(9), y] + log_det
    np.testing.assert_allclose(model.apply(v, x, y, method="log_prob"), expected, rtol=1e-5)
    bpd = model.apply(v, x, y, method="bits_per_dim")
    np.testing.assert_allclose(bpd, -expected / (2 * np.log(2)), rtol=1e-5)


def test_encode_decode_round_trip_and_sampling():
    model, v, x = _model()
    z, log_det = model.apply(v, x, method="encode")
    x_back, inv_log_det = model.apply(v, z, method="decode")
    np.testing.assert_allclose(x_back, x, atol=1e-5)
    np.testing.assert_allclose(inv_log_det, -log_det, atol=1e-5)
    samples = model.apply(v, jax.random.key(3), 2, 500, method="sample")
    assert samples.shape == (500, 2)
    # samples of class 2 are mostly classified as class 2 for well-separated means
    assert np.mean(model.apply(v, samples, method="predict") == 2) > 0.7
