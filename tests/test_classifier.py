import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import laplace

import flowclass as fc
from flowclass.bijectors import AffineCoupling, Chain
from flowclass.distributions import ClassConditionalBase

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


class ClassLaplace(nn.Module):
    """Not a ClassGaussians: one unit-scale Laplace density per class, ``p(z | k) = Π_d ½ exp(−|z_d − μ_kd|)``,
    uniform class weights. It implements ClassConditionalBase without subclassing anything."""

    means: tuple[tuple[float, ...], ...]

    @property
    def num_classes(self) -> int:
        return len(self.means)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (len(self.means[0]),)

    @property
    def class_means(self) -> jnp.ndarray:
        return jnp.asarray(self.means, jnp.float32)

    def class_log_prob(self, z):
        return -jnp.sum(jnp.abs(z[:, None, :] - self.class_means), axis=-1) - z.shape[-1] * math.log(2.0)

    def log_weights(self):
        return jnp.full((self.num_classes,), -math.log(self.num_classes))

    def log_joint(self, z):
        return self.class_log_prob(z) + self.log_weights()

    def marginal_log_prob(self, z):
        return jax.nn.logsumexp(self.log_joint(z), axis=-1)

    def sample(self, key, k, n, temperature=1.0):
        return self.class_means[k] + temperature * jax.random.laplace(key, (n, *self.event_shape))


def test_another_base_implementing_the_protocol_works_in_the_classifier():
    base = ClassLaplace(((-3.0, 0.0), (3.0, 0.0), (0.0, 3.0)))
    assert isinstance(base, ClassConditionalBase)
    flow = Chain([AffineCoupling(fc.MLP((16,)), parity=p % 2) for p in range(3)])
    model = fc.FlowClassifier(flow, base)
    x = jax.random.normal(jax.random.key(0), (9, 2))
    v = perturb(model.init(jax.random.key(1), x), jax.random.key(2))
    z, log_det = model.apply(v, x, method="encode")
    means = np.asarray(base.means)
    expected = np.stack([laplace.logpdf(np.asarray(z), loc=means[k]).sum(-1) for k in range(3)], -1)
    per_class = model.apply(v, x, method="class_log_likelihoods")
    chex.assert_shape(per_class, (9, 3))
    np.testing.assert_allclose(per_class, expected + np.asarray(log_det)[:, None], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.apply(v, x), expected - np.log(3), rtol=1e-5, atol=1e-5)  # logits
    y = jnp.arange(9) % 3
    np.testing.assert_allclose(model.apply(v, x, y, method="log_prob"), per_class[jnp.arange(9), y], rtol=1e-6)
    chex.assert_trees_all_close(model.apply(v, method="class_means"), jnp.asarray(means))
    samples = model.apply(v, jax.random.key(3), 1, 200, method="sample")
    chex.assert_shape(samples, (200, 2))
    assert np.mean(model.apply(v, samples, method="predict") == 1) > 0.7


def test_classifier_refuses_a_flow_or_base_outside_the_contract():
    flow = Chain([AffineCoupling(fc.MLP((4,)))])
    with pytest.raises(TypeError, match="FlowClassifier.flow must be a flowclass.bijectors.Bijector; got Dense"):
        fc.FlowClassifier(nn.Dense(2), fc.ClassGaussians(2, (2,)))
    with pytest.raises(TypeError, match="FlowClassifier.base must implement .*ClassConditionalBase; a Dense has no"):
        fc.FlowClassifier(flow, nn.Dense(2))
