import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from flowclass.distributions import ClassConditionalBase, ClassGaussians, as_means

from helpers import perturb


def _base(covariance="identity", trainable_weights=False, **kw):
    base = ClassGaussians(3, (4,), covariance=covariance, trainable_weights=trainable_weights, mean_scale=2.0, **kw)
    z = jax.random.normal(jax.random.key(0), (7, 4)) * 2
    variables = base.init(jax.random.key(1), z)
    if variables:
        variables = perturb(variables, jax.random.key(2), scale=0.5)
    return base, variables, z


@pytest.mark.parametrize("covariance", ["identity", "diagonal", "class_diagonal"])
@pytest.mark.parametrize("trainable_means", [False, True])
def test_log_prob_matches_scipy(covariance, trainable_means):
    base, variables, z = _base(covariance, trainable_weights=True, trainable_means=trainable_means)
    means = np.asarray(base.apply(variables, method=lambda m: m.class_means))
    log_scales = np.broadcast_to(np.asarray(base.apply(variables, method=lambda m: m.log_scales)), (3, 4))
    got = np.asarray(base.apply(variables, z, method="class_log_prob"))
    expected = np.stack(
        [multivariate_normal(means[k], np.diag(np.exp(2 * log_scales[k]))).logpdf(np.asarray(z)) for k in range(3)],
        axis=-1,
    )
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)

    log_w = np.asarray(base.apply(variables, method="log_weights"))
    assert not np.allclose(log_w, np.log(1 / 3)), "perturbed weights should not be uniform"
    np.testing.assert_allclose(np.exp(log_w).sum(), 1.0, rtol=1e-6)
    marginal = np.asarray(base.apply(variables, z, method="marginal_log_prob"))
    np.testing.assert_allclose(marginal, np.log(np.exp(expected + log_w).sum(-1)), rtol=1e-5, atol=1e-4)


def test_given_means_are_used_and_fixed_means_are_not_parameters():
    base = ClassGaussians(2, (2,), means=as_means([[-4, 0], [4, 0]]))
    variables = base.init(jax.random.key(0), jnp.zeros((1, 2)))
    assert "params" not in variables  # nothing for an optimiser to move
    logp = base.apply(variables, jnp.array([[-4.0, 0.0]]))
    np.testing.assert_allclose(logp[0, 0], -np.log(2 * np.pi), rtol=1e-6)


def test_drawn_means_follow_seed_and_scale():
    a = ClassGaussians(2, (50,), means="normal", mean_scale=3.0, mean_seed=1)
    b = ClassGaussians(2, (50,), means="normal", mean_scale=3.0, mean_seed=2)
    u = ClassGaussians(2, (50,), means="uniform", mean_scale=0.5)
    get = lambda m: np.asarray(m.apply({}, method=lambda s: s.class_means))  # noqa: E731
    assert not np.allclose(get(a), get(b))
    assert 2.0 < get(a).std() < 4.0
    assert np.all(np.abs(get(u)) <= 0.5)


def test_onehot_means_are_orthogonal_and_as_far_apart_as_normal_draws():
    get = lambda m: np.asarray(m.apply({}, method=lambda s: s.class_means))  # noqa: E731
    onehot = get(ClassGaussians(10, (7, 7, 16), means="onehot", mean_scale=0.5))
    normal = get(ClassGaussians(10, (7, 7, 16), means="normal", mean_scale=0.5))
    gram = onehot @ onehot.T
    np.testing.assert_allclose(gram, 0.25 * 784 * np.eye(10), atol=1e-3)  # ‖μ_k‖ = 0.5 · √784, orthogonal
    distance = lambda m: np.linalg.norm(m[0] - m[1])  # noqa: E731
    assert abs(distance(onehot) - distance(normal)) < 0.1 * distance(onehot)
    with pytest.raises(ValueError, match="num_classes <= dim"):
        get(ClassGaussians(3, (2,), means="onehot"))


def test_sample_statistics():
    base, variables, _ = _base("class_diagonal")
    samples = np.asarray(base.apply(variables, jax.random.key(5), 1, 20000, method="sample"))
    means = np.asarray(base.apply(variables, method=lambda m: m.class_means))[1]
    scales = np.exp(np.asarray(base.apply(variables, method=lambda m: m.log_scales))[1])
    assert samples.shape == (20000, 4)
    np.testing.assert_allclose(samples.mean(0), means, atol=4 * scales.max() / np.sqrt(20000) * 3)
    np.testing.assert_allclose(samples.std(0), scales, rtol=0.03)
    cold = np.asarray(base.apply(variables, jax.random.key(5), 1, 20000, 0.5, method="sample"))
    np.testing.assert_allclose(cold.std(0), 0.5 * scales, rtol=0.03)


def test_image_event_shape_is_flattened():
    base = ClassGaussians(10, (4, 4, 1))
    z = jnp.zeros((2, 4, 4, 1))
    out = base.apply({}, z)
    assert out.shape == (2, 10)
    assert base.apply({}, jax.random.key(0), 3, 5, method="sample").shape == (5, 4, 4, 1)


def test_bad_configuration_and_inputs():
    with pytest.raises(ValueError, match="num_classes, dim"):
        ClassGaussians(3, (2,), means=((0.0, 0.0),)).apply({}, jnp.zeros((1, 2)))
    with pytest.raises(ValueError, match="unknown covariance"):
        ClassGaussians(2, (2,), covariance="full").init(jax.random.key(0), jnp.zeros((1, 2)))
    with pytest.raises(ValueError, match="class k must be in"):
        ClassGaussians(2, (2,)).apply({}, jax.random.key(0), 2, 3, method="sample")
    with pytest.raises(ValueError, match=r"z must have shape \(batch, 2\)"):
        ClassGaussians(2, (2,)).apply({}, jnp.zeros((4, 3)))


@pytest.mark.parametrize("event_shape", [(4,), (2, 2, 3)])
def test_class_gaussians_implement_the_protocol(event_shape):
    base = ClassGaussians(3, event_shape, covariance="class_diagonal", trainable_weights=True)
    z = jax.random.normal(jax.random.key(0), (5, *event_shape))
    variables = base.init(jax.random.key(1), z)
    bound = base.bind(variables)
    assert isinstance(bound, ClassConditionalBase)
    assert bound.num_classes == 3 and tuple(bound.event_shape) == event_shape
    dim = int(np.prod(event_shape))
    chex.assert_shape([bound.class_log_prob(z), bound.log_joint(z)], (5, 3))
    chex.assert_shape(bound.log_weights(), (3,))
    chex.assert_shape(bound.marginal_log_prob(z), (5,))
    chex.assert_shape(bound.class_means, (3, dim))
    chex.assert_shape(bound.sample(jax.random.key(2), 1, 7, temperature=0.5), (7, *event_shape))
    chex.assert_type([bound.class_log_prob(z.astype(jnp.float16)), bound.marginal_log_prob(z)], jnp.float32)
    chex.assert_trees_all_close(bound.log_joint(z), bound.class_log_prob(z) + bound.log_weights())
    assert not isinstance(object(), ClassConditionalBase)


# --- degenerate models are refused when built, naming the argument ---

BAD_BASES = [
    ("num_classes", dict(num_classes=0)),
    ("num_classes", dict(num_classes=-2)),
    ("num_classes", dict(num_classes=2.0)),
    ("num_classes", dict(num_classes=True)),
    ("event_shape", dict(event_shape=())),
    ("event_shape", dict(event_shape=(0,))),
    ("event_shape", dict(event_shape=(2.5,))),
    ("event_shape", dict(event_shape=5)),
    ("means", dict(means=((0.0, np.nan), (1.0, 0.0)))),
    ("means", dict(means=((0.0, np.inf), (1.0, 0.0)))),
    ("means", dict(means=np.array([[0.0, 1.0], [0.0, 1.0]]))),  # duplicate classes
    ("means", dict(means=((0.0, 1.0), (0.0, 1.0 + 1e-12)))),  # equal once rounded to float32
    ("means", dict(means=((0.0, 0.0),))),  # one row for two classes
    ("means", dict(means=(0.0, 1.0))),
    ("means", dict(means=[["a", "b"], ["c", "d"]])),
    ("means", dict(means="gaussian")),
    ("means", dict(num_classes=3, means="onehot")),  # onehot needs K <= D
    ("mean_scale", dict(mean_scale=0.0)),  # zero-scale means all coincide
    ("mean_scale", dict(mean_scale=-1.0)),
    ("mean_scale", dict(mean_scale=float("nan"))),
    ("mean_scale", dict(mean_scale=float("inf"))),
    ("mean_seed", dict(mean_seed=1.5)),
    ("covariance", dict(covariance="full")),
]


@pytest.mark.parametrize("argument, overrides", BAD_BASES, ids=[f"{a}-{i}" for i, (a, _) in enumerate(BAD_BASES)])
def test_degenerate_bases_are_refused_when_built(argument, overrides):
    kwargs = dict(num_classes=2, event_shape=(2,), means=((-1.0, 0.0), (1.0, 0.0)))
    kwargs.update(overrides)
    with pytest.raises(ValueError) as info:
        ClassGaussians(**kwargs)
    assert argument in str(info.value), info.value


def test_as_means_refuses_what_is_not_a_finite_table():
    with pytest.raises(ValueError, match="means must be finite; rows \\[1\\]"):
        as_means([[0.0, 1.0], [np.nan, 2.0]])
    with pytest.raises(ValueError, match=r"class means must have shape \(num_classes, dim\).*got \(0, 2\)"):
        as_means(np.zeros((0, 2)))
    assert ClassGaussians(2, [2], means=[[-1, 0], [1, 0]]).means == ((-1.0, 0.0), (1.0, 0.0))  # stored hashable


def test_one_class_is_a_valid_model():
    base = ClassGaussians(1, (2,), means=((0.5, -0.5),))
    np.testing.assert_allclose(base.apply({}, jnp.array([[0.5, -0.5]]))[0, 0], -np.log(2 * np.pi), rtol=1e-6)


# --- dtypes follow jax_enable_x64 ---


@pytest.mark.parametrize("trainable_means", [False, True])
def test_explicit_means_follow_x64(trainable_means):
    """Issue 20: explicit means stayed float32 under x64 (log p off by 4e-7 against float64)."""
    means = ((-4.1, 0.3), (4.2, -0.7))
    z = np.array([[0.123456789, -1.7], [3.3, 2.9], [-40.0, 17.0]])
    expected = np.stack([-0.5 * ((z - np.array(m)) ** 2).sum(-1) - np.log(2 * np.pi) for m in means], -1)
    with jax.enable_x64(True):
        base = ClassGaussians(2, (2,), means=means, trainable_means=trainable_means, covariance="diagonal",
                              trainable_weights=True)
        variables = base.init(jax.random.key(0), jnp.zeros((1, 2), jnp.float64))
        assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float64)}
        bound = base.bind(variables)
        assert bound.class_means.dtype == jnp.float64
        got = bound.class_log_prob(jnp.asarray(z))
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-14, atol=1e-12)
        assert bound.sample(jax.random.key(1), 0, 3).dtype == jnp.float64
        for means_init in ("normal", "uniform", "onehot"):
            drawn = ClassGaussians(2, (2,), means=means_init).apply({}, method=lambda m: m.class_means)
            assert drawn.dtype == jnp.float64
    # and float32 without x64
    base = ClassGaussians(2, (2,), means=means)
    assert base.apply({}, method=lambda m: m.class_means).dtype == jnp.float32
    got32 = base.apply({}, jnp.asarray(z, jnp.float32))
    assert got32.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got32), expected, rtol=1e-6)
