"""Extreme inputs for every bijector in the registry, against float64 references.

Each bijector of ``test_bijectors.REGISTRY`` runs in float32 on batches of extreme values (saturated
pixels, latents far in the tails, tiny and huge magnitudes); the same layer with its variables cast
to float64 and run under ``jax.enable_x64`` is the reference. Where the exact value is finite, the
float32 result must be finite and within a relative error of 1e-5:

* events: per example, ``max |got − ref| ≤ 1e-5 · max |ref|`` (the ∞-norm over the event; the
  elementwise :class:`LogitTransform` is held to it elementwise, see below);
* log-dets: ``|got − ref| ≤ 1e-5 · max(|ref|, 1)`` (a log-det is a log-density term in nats,
  a sum that may cancel to near 0, where 1e-5 nats is the meaningful scale).

Where the reference is ±inf (e.g. the logit of a pixel at exactly 0 with ``α = 0``), or a finite
value beyond float32's range, float32 must give the same infinity. The float64 reference of the
log-det is itself checked against ``slogdet`` of the float64 Jacobian at the same points, and the
logit's against closed forms evaluated with 60-digit ``decimal`` arithmetic, independently of the
layer's code.

Real-line inputs reach ``|x| = 1e30``: far beyond any latent a Gaussian base gives, and below the
float32 overflow of a conditioner network's hidden layers (about 1e36 for the test's small nets).

Cost: compilation dominates here, so each layer is initialised once (shared by both directions),
perturbed with NumPy noise (no per-shape compilation of random draws), and each direction runs as
one compiled float32 call and one compiled float64 call (reference and vmapped Jacobian together);
the image flow is the 'fast' preset at 4 × 4 × 1, compiled once per function for all its tests.
"""

from __future__ import annotations

import functools
import math
from decimal import Decimal, localcontext

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_bijectors import REGISTRY, UNIT_INTERVAL_INPUTS

from flowclass import FlowClassifier, image_realnvp
from flowclass.bijectors import ActNorm, Chain, LogitTransform
from flowclass.distributions import ClassGaussians

TINY = float(np.finfo(np.float32).tiny)
BIG = float(np.finfo(np.float32).max)
RTOL = 1e-5
# XLA's backend (LLVM) optimisations off: half the compile time, for code whose speed does not matter here
# (float64 references, initialisations); the float32 layers under test compile as a user's would. XLA's
# graph simplifications, which can change float results (LogitTransform guards its split of logit(α) with
# an optimization barrier), run either way.
_QUICK = {"xla_backend_optimization_level": 0}

# latents / real-line inputs: zero, tiny, moderate, the logit's saturation points (17 in float32),
# exp's underflow (104), and far tails
_MAGNITUDES = [0.0, 1e-30, 1e-7, 0.3, 1.0, 2.944, 17.0, 25.0, 88.0, 104.0, 1e4, 1e8, 1e15, 1e30]
REAL_LINE = np.array(sorted({s * m for m in _MAGNITUDES for s in (1.0, -1.0)}), np.float32)
# pixels: the ends of [0, 1], the smallest normal float, values next to 1/2 (where logit(x) ≈ 0)
# and next to 1
PIXELS = np.array(
    [0.0, TINY, 1e-30, 1e-7, 0.05, 0.25, float(np.nextafter(np.float32(0.5), 0)), 0.5,
     float(np.nextafter(np.float32(0.5), 1)), 0.500001, 0.75, 0.999, float(np.nextafter(np.float32(1), 0)), 1.0],
    np.float32,
)


def _extreme_batch(values: np.ndarray, event_shape: tuple[int, ...], seed: int) -> np.ndarray:
    """One constant row per value, then rows mixing the values at random."""
    size = math.prod(event_shape)
    constant = np.repeat(values[:, None], size, axis=1)
    rng = np.random.default_rng(seed)
    mixed = rng.choice(values, size=(8, size))
    return np.concatenate([constant, mixed]).reshape(-1, *event_shape).astype(np.float32)


def _perturb(variables, seed: int, scale: float = 0.3):
    """Adds ``scale · N(0, 1)`` NumPy noise to every parameter (as ``helpers.perturb``, the ``params``
    collection only), so zero-initialised layers stop being identities."""
    if "params" not in variables:
        return variables
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda a: a + scale * rng.standard_normal(a.shape).astype(a.dtype), variables["params"])
    return {**variables, "params": params}


@functools.cache
def _layer_and_variables(name):
    build, event_shape = REGISTRY[name]
    layer = build()
    sample = np.random.default_rng(1).normal(size=(4, *event_shape)).astype(np.float32)
    if name in UNIT_INTERVAL_INPUTS:
        sample = 1 / (1 + np.exp(-sample))
    # rbg keys: random initialisers compile far faster than with threefry keys
    init = jax.jit(layer.init, compiler_options=_QUICK)
    variables = _perturb(init(jax.random.key(0, impl="unsafe_rbg"), jnp.asarray(sample)), seed=2)
    return layer, variables, event_shape


def _float64_reference(layer, variables, inputs, inverse, rows):
    """The layer in float64 on ``inputs``, and ``slogdet`` of its float64 Jacobian at ``inputs[rows]``
    (an independent check of the reference log-det), in one compiled call."""
    shape = inputs.shape[1:]

    def reference(variables, inputs, points):
        out, log_det = layer.apply(variables, inputs, inverse=inverse)

        def f(v):
            return layer.apply(variables, v.reshape(1, *shape), inverse=inverse)[0].reshape(-1)

        return out, log_det, jax.vmap(lambda v: jnp.linalg.slogdet(jax.jacfwd(f)(v))[1])(points)

    with jax.enable_x64(True):
        wide = jax.tree.map(lambda a: jnp.asarray(np.asarray(a, np.float64)), variables)
        points = jnp.asarray(inputs[rows].reshape(len(rows), -1), jnp.float64)
        out, log_det, jacobian = jax.jit(reference, compiler_options=_QUICK)(wide, jnp.asarray(inputs, jnp.float64),
                                                                             points)
        return np.asarray(out, np.float64), np.asarray(log_det, np.float64), np.asarray(jacobian, np.float64)


def _assert_matches(got, ref, what, *, elementwise=False, log_det=False):
    """The module doc's criterion; returns the worst relative error over the finite references."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert not np.isnan(ref).any(), f"{what}: the float64 reference is NaN (a broken test input)"
    beyond = ~np.isfinite(ref) | (np.abs(ref) > BIG)
    np.testing.assert_array_equal(got[beyond], np.sign(ref[beyond]) * np.inf, err_msg=f"{what}: infinities")
    assert np.isfinite(got[~beyond]).all(), f"{what}: non-finite where the exact value is finite: " \
        f"{got[~beyond][~np.isfinite(got[~beyond])][:5]} (references {ref[~beyond][~np.isfinite(got[~beyond])][:5]})"
    error = np.where(beyond, 0.0, np.abs(np.where(beyond, 0.0, got) - np.where(beyond, 0.0, ref)))
    reference = np.where(beyond, 0.0, np.abs(ref))
    if log_det:
        scale = np.maximum(reference, 1.0)
    elif elementwise:
        # an exact value below float32's normal range comes out as a float within TINY of it
        scale = np.maximum(reference, 2 * TINY / RTOL)
    else:  # per example, the ∞-norm over the event
        flat = reference.reshape(reference.shape[0], -1)
        scale = np.broadcast_to(flat.max(axis=1).reshape((-1,) + (1,) * (reference.ndim - 1)), reference.shape)
        scale = np.maximum(scale, TINY / RTOL)
    relative = error / scale
    worst = np.unravel_index(np.argmax(relative), relative.shape)
    assert relative.max() <= RTOL, (
        f"{what}: relative error {relative.max():.3g} at {worst}: got {got[worst]!r}, float64 {ref[worst]!r}"
    )
    return float(relative.max())


@pytest.mark.parametrize("name, inverse", [
    pytest.param(name, inverse, id=f"{name}-{'inverse' if inverse else 'forward'}")
    for name in sorted(REGISTRY) for inverse in (False, True)])
def test_extreme_inputs_match_float64(name, inverse):
    layer, variables, event_shape = _layer_and_variables(name)
    zeros = jax.ShapeDtypeStruct((1, *event_shape), jnp.float32)
    in_shape = jax.eval_shape(layer.apply, variables, zeros)[0].shape[1:] if inverse else event_shape
    pixels_in = name in UNIT_INTERVAL_INPUTS and not inverse
    inputs = _extreme_batch(PIXELS if pixels_in else REAL_LINE, in_shape, seed=len(name) + inverse)
    out, log_det = jax.jit(functools.partial(layer.apply, inverse=inverse))(variables, jnp.asarray(inputs))
    assert out.dtype == log_det.dtype == jnp.float32
    rows = list(range(0, len(inputs), 3))
    ref_out, ref_log_det, jacobian = _float64_reference(layer, variables, inputs, inverse, rows)
    elementwise = name.startswith("logit")
    _assert_matches(out, ref_out, f"{name} {'inverse' if inverse else 'forward'} output", elementwise=elementwise)
    _assert_matches(log_det, ref_log_det, f"{name} log-det", log_det=True)
    # the float64 reference against its own Jacobian, where autodiff's is finite: the derivative of a
    # float64 sigmoid, σ(y)(1 − σ(y)), loses digits as σ(y) nears 1 and is 0 from y ≈ 37 on, hence
    # the looser tolerance (the logit itself is checked against decimal closed forms below)
    usable = np.isfinite(jacobian)
    assert usable.sum() >= 2, f"{name}: the float64 Jacobian is finite in only {usable.sum()} of {len(rows)} rows"
    np.testing.assert_allclose(jacobian[usable], ref_log_det[rows][usable], rtol=1e-6, atol=1e-9)


# --- LogitTransform against closed forms in 60-digit decimal arithmetic ---


def _decimal_inverse(y: float, alpha: float) -> tuple[float, float]:
    """``x = (σ(y) − α)/s`` and ``log σ(y) + log σ(−y) − log s`` for the float ``y``, exactly rounded."""
    with localcontext() as ctx:
        ctx.prec = 60
        a, s, y = Decimal(alpha), 1 - 2 * Decimal(alpha), Decimal(float(y))
        if abs(y) > 1000:  # σ is 0 or 1 to far more than 60 digits
            sigma = Decimal(1 if y > 0 else 0)
            return float((sigma - a) / s), float(-abs(y) - s.ln())
        sigma = 1 / (1 + (-y).exp())
        return float((sigma - a) / s), float(sigma.ln() + (1 - sigma).ln() - s.ln())


def _decimal_forward(x: float, alpha: float) -> tuple[float, float]:
    with localcontext() as ctx:
        ctx.prec = 60
        a, s, x = Decimal(alpha), 1 - 2 * Decimal(alpha), Decimal(float(x))
        p, q = a + s * x, 1 - (a + s * x)
        if p == 0 or q == 0:
            sign = -1 if p == 0 else 1
            return sign * math.inf, math.inf
        return float(p.ln() - q.ln()), float(s.ln() - p.ln() - q.ln())


def test_logit_inverse_log_det_at_the_issue_points():
    """Issue 20: −inf for y ≥ 17 (exact −16.895) and at y = −104 (exact −103.895), from log(1 − p)
    after p rounded to 1."""
    y = jnp.array([[17.0], [25.0], [-104.0], [104.0]])
    _, log_det = LogitTransform(alpha=0.05).apply({}, y, inverse=True)
    expected = [_decimal_inverse(v, 0.05)[1] for v in (17.0, 25.0, -104.0, 104.0)]
    np.testing.assert_allclose(log_det, expected, rtol=1e-6)
    np.testing.assert_allclose(expected[0], -16.895, atol=5e-4)
    np.testing.assert_allclose(expected[2], -103.895, atol=5e-4)


@pytest.mark.parametrize("alpha", [0.05, 0.0, 1e-6, 0.3])
def test_logit_matches_decimal_closed_forms(alpha):
    logit_alpha = math.log(alpha) - math.log1p(-alpha) if alpha else 0.0
    near = np.float32(logit_alpha) + np.array([-1.5, -0.9, -1e-3, -1e-6, 0, 1e-6, 1e-3, 0.9, 1.5], np.float32)
    grid = np.linspace(-110, 110, 221, dtype=np.float32)
    ys = np.concatenate([grid, near, REAL_LINE, [3e38, -3e38]]).astype(np.float32)
    x, log_det = LogitTransform(alpha=alpha).apply({}, jnp.asarray(ys)[:, None], inverse=True)
    reference = np.array([_decimal_inverse(v, alpha) for v in ys])
    _assert_matches(x[:, 0], reference[:, 0], f"inverse x, alpha={alpha}", elementwise=True)
    _assert_matches(log_det, reference[:, 1], f"inverse log-det, alpha={alpha}", log_det=True)
    # the log-det of one coordinate never cancels: relative accuracy also below 1 nat
    finite = np.abs(reference[:, 1]) <= BIG
    np.testing.assert_allclose(np.asarray(log_det)[finite], reference[finite, 1], rtol=1e-6)

    xs = np.concatenate([PIXELS, np.linspace(0, 1, 201, dtype=np.float32)]).astype(np.float32)
    y, log_det = LogitTransform(alpha=alpha).apply({}, jnp.asarray(xs)[:, None])
    reference = np.array([_decimal_forward(v, alpha) for v in xs])
    _assert_matches(y[:, 0], reference[:, 0], f"forward y, alpha={alpha}", elementwise=True)
    np.testing.assert_allclose(np.asarray(log_det), reference[:, 1], rtol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("alpha", [0.0, 0.05])
def test_logit_inverse_stays_inside_its_open_interval(alpha, dtype):
    """Where σ(y) rounds to 0 or 1 the output is the nearest float inside; for α = 0, (0, 1)."""
    y = jnp.asarray(np.concatenate([REAL_LINE, [3e38, -3e38, 60.0, -60.0, 1e3, -1e3]]), dtype)
    y = y[jnp.isfinite(y)][:, None]
    x, log_det = LogitTransform(alpha=alpha).apply({}, y, inverse=True)
    assert x.dtype == dtype and log_det.dtype == jnp.float32
    scale = 1 - 2 * alpha
    x = np.asarray(x, np.float64)
    assert np.all(x > -alpha / scale) and np.all(x < (1 - alpha) / scale), x.ravel()
    assert np.isfinite(np.asarray(log_det)[np.abs(np.asarray(y, np.float64)[:, 0]) < 1e37]).all()
    if alpha == 0:
        assert np.all((x > 0) & (x < 1))
        # and the forward map takes every such pixel back to a finite latent
        back, back_log_det = LogitTransform(alpha=0.0).apply({}, jnp.asarray(x, jnp.float32))
        assert np.isfinite(np.asarray(back)).all() and np.isfinite(np.asarray(back_log_det)).all()


def test_logit_alpha_is_checked():
    for alpha in (-0.1, 0.5, 0.7, float("nan"), float("inf"), "0.1", None, True):
        with pytest.raises(ValueError, match="alpha must be a number in"):
            LogitTransform(alpha=alpha)


# --- decode: through an image flow's LogitTransform ---


def test_decode_of_a_latent_coordinate_of_25_is_finite_and_exact():
    """Issue 20: ``decode`` of a latent with a coordinate of 25 returned −inf (exact −27.457):
    a 3-pixel flow whose only layer is the logit, decoding z = (25, 0, 0)."""
    model = FlowClassifier(Chain([LogitTransform()]), ClassGaussians(2, (3,), means=((-1.0, 0, 0), (1.0, 0, 0))))
    z = jnp.array([[25.0, 0.0, 0.0]])
    x, log_det = model.apply({}, z, method="decode")
    exact = sum(_decimal_inverse(v, 0.05)[1] for v in (25.0, 0.0, 0.0))
    assert round(exact, 3) == -27.457
    np.testing.assert_allclose(float(log_det[0]), exact, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(x[0]), [_decimal_inverse(v, 0.05)[0] for v in (25.0, 0.0, 0.0)], rtol=1e-6)


@pytest.fixture(scope="module")
def fast_flow():
    """The 'fast' preset at 4 × 4 × 1 (its layers as at 28 × 28: logit, squeezes, ActNorm, 1×1
    convolutions, channel and dense couplings; small enough to compile in seconds) and its variables
    initialised on a batch of one black image: every ActNorm channel is constant there, so ActNorm takes
    its bounded fallback (scale 1, bias 0)."""
    model = image_realnvp("fast", input_shape=(4, 4, 1), num_classes=3)
    init = jax.jit(model.init, compiler_options=_QUICK)
    return model, init(jax.random.key(0, impl="unsafe_rbg"), jnp.zeros((1, 4, 4, 1)))


def test_image_flow_decodes_tail_latents_like_float64(fast_flow):
    """The 'fast' preset on latents with coordinates of 25 and −30 (the registry's multiscale chain
    covers factor-out): a standard-normal latent with one coordinate set to 25, and one alternating
    25 and −30."""
    model, variables = fast_flow
    rng = np.random.default_rng(0)
    variables = _perturb(variables, seed=2, scale=0.05)  # ActNorm's neutral start, and every other layer's
    dim = math.prod(model.latent_shape)
    z = np.stack([rng.standard_normal(dim), np.where(np.arange(dim) % 2 == 0, 25.0, -30.0)]).astype(np.float32)
    z[0, 0] = 25.0
    z = z.reshape(2, *model.latent_shape)

    def decode(v, z):
        return model.apply(v, z, method="decode")

    x, log_det = jax.jit(decode)(variables, jnp.asarray(z))
    with jax.enable_x64(True):
        wide = jax.tree.map(lambda a: jnp.asarray(np.asarray(a, np.float64)), variables)
        x64, log_det64 = jax.jit(decode, compiler_options=_QUICK)(wide, jnp.asarray(z, jnp.float64))
    assert log_det64.dtype == jnp.float64
    assert np.isfinite(np.asarray(log_det)).all()
    np.testing.assert_allclose(np.asarray(log_det), np.asarray(log_det64), rtol=RTOL)
    _assert_matches(x, np.asarray(x64), "fast decode")


# --- ActNorm's data-dependent initialisation on degenerate batches ---


def _actnorm_params(x):
    init = jax.jit(ActNorm().init, compiler_options=_QUICK)  # one compiled call, not one per primitive
    return jax.tree.map(np.asarray, init(jax.random.key(0), jnp.asarray(x, jnp.float32))["params"])


def test_actnorm_init_on_one_example_or_a_constant_channel_keeps_scale_one():
    """Issue 20: a batch of one or a constant channel set log-scale 13.8 (a scale of a million)."""
    one = _actnorm_params([[0.2, -3.0, 7.0]])
    np.testing.assert_array_equal(one["log_scale"], 0.0)
    np.testing.assert_allclose(one["bias"], [-0.2, 3.0, -7.0], rtol=1e-7)
    rng = np.random.default_rng(0)
    x = np.stack([np.full(64, 2.5), rng.normal(1.0, 3.0, 64), np.full(64, -1e-4)], axis=1)
    params = _actnorm_params(x)
    np.testing.assert_array_equal(params["log_scale"][[0, 2]], 0.0)
    np.testing.assert_allclose(params["log_scale"][1], -np.log(x[:, 1].std() + 1e-6), rtol=1e-5)
    np.testing.assert_allclose(params["bias"], -x.mean(0), rtol=1e-6)


def test_actnorm_init_ignores_non_finite_entries():
    """Issue 20: one NaN in the sample batch made the variables NaN."""
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 0.5, (32, 3)).astype(np.float32)
    polluted = x.copy()
    polluted[0, 0], polluted[5, 1] = np.nan, np.inf
    polluted[:, 2] = np.nan
    params = _actnorm_params(polluted)
    assert all(np.isfinite(v).all() for v in params.values())
    np.testing.assert_allclose(params["bias"][:2], [-x[1:, 0].mean(), -np.delete(x[:, 1], 5).mean()], rtol=1e-6)
    np.testing.assert_allclose(params["log_scale"][0], -np.log(x[1:, 0].std() + 1e-6), rtol=1e-5)
    np.testing.assert_array_equal([params["bias"][2], params["log_scale"][2]], 0.0)  # no finite entry
    huge = _actnorm_params([[1e30, 0.0], [-1e30, 1.0], [3e38, 2.0]])  # std beyond float32: no overflow
    np.testing.assert_allclose(huge["log_scale"][0], -np.log(np.std([1e30, -1e30, 3e38])), rtol=1e-6)


def test_actnorm_degenerate_init_batch_keeps_the_image_flow_finite(fast_flow):
    """Issue 20: after ActNorm's init on a constant batch, the image flow gave log p = −inf."""
    model, variables = fast_flow  # initialised on a batch of one black image: every channel constant
    pixels = jnp.asarray(np.random.default_rng(3).uniform(size=(6, 4, 4, 1)), jnp.float32)
    paths = jax.tree_util.tree_flatten_with_path(variables["params"])[0]
    log_scales = [np.asarray(leaf) for path, leaf in paths if getattr(path[-1], "key", None) == "log_scale"]
    assert log_scales and max(float(s.max()) for s in log_scales) <= -math.log(1e-3)
    log_p = jax.jit(lambda v, x: model.apply(v, x, method="marginal_log_prob"))(variables, pixels)
    assert np.isfinite(np.asarray(log_p)).all(), log_p


def test_actnorm_attributes_are_checked():
    for name, value in (("eps", -1.0), ("min_std", float("nan")), ("min_std", "1e-3"), ("eps", float("inf"))):
        with pytest.raises(ValueError, match=f"ActNorm {name} must be a finite number >= 0"):
            ActNorm(**{name: value})


def test_actnorm_parameters_follow_x64():
    x = np.random.default_rng(2).normal(size=(16, 3))
    with jax.enable_x64(True):
        layer = ActNorm()
        variables = jax.jit(layer.init, compiler_options=_QUICK)(jax.random.key(0), jnp.asarray(x, jnp.float64))
        assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float64)}
        y, log_det = jax.jit(layer.apply)(variables, jnp.asarray(x, jnp.float64))
        np.testing.assert_allclose(np.asarray(y), (x - x.mean(0)) / (x.std(0) + 1e-6), rtol=1e-12)
        np.testing.assert_allclose(np.asarray(log_det), -np.log(x.std(0) + 1e-6).sum(), rtol=1e-12)
    float32 = jax.eval_shape(layer.init, jax.random.key(0), jnp.asarray(x, jnp.float32))
    assert {leaf.dtype for leaf in jax.tree.leaves(float32)} == {jnp.dtype(jnp.float32)}


# --- pixel bins: half-open intervals stay half-open in float32 ---


# bfloat16 has 8 bits: at most 256 bins are distinguishable, so it runs up to 256 bins only
@pytest.mark.parametrize("num_bins, dtype", [(n, jnp.float32) for n in (2, 3, 10, 255, 256, 1000)]
                         + [(n, jnp.bfloat16) for n in (2, 3, 10, 255, 256)])
def test_dequantized_pixels_stay_in_their_bin_when_u_rounds_up(monkeypatch, num_bins, dtype):
    """``(b + u)/n`` with ``u`` the largest float below 1 rounds to ``(b + 1)/n`` (1.0 for the top bin)."""
    from flowclass.data import pixels

    # every bin's lower edge (1,000 entries whatever num_bins: one shape, so the eager ops compile once)
    x = (jnp.arange(1000, dtype=jnp.float32) % num_bins / num_bins).astype(dtype)
    x = jnp.concatenate([x, jnp.ones((1,), dtype)])  # and 1.0, which pixel_bins puts in the top bin
    bins = np.asarray(pixels.pixel_bins(x, num_bins))
    for u in (0.0, float(jnp.finfo(dtype).eps) / 4, 0.5, float(np.nextafter(np.float32(1), 0))):
        top = jnp.asarray(u, jnp.float32).astype(dtype)
        top = jnp.where(top >= 1, jnp.nextafter(jnp.ones((), dtype), jnp.zeros((), dtype)), top)
        monkeypatch.setattr(jax.random, "uniform", lambda key, shape, dtype_=None, top=top: jnp.full(shape, top))
        for out in (pixels.dequantize(jax.random.key(0), x, num_bins), pixels.bin_centres(x, num_bins)):
            assert out.dtype == dtype
            values = np.asarray(out, np.float64)
            assert np.all((values >= 0) & (values < 1)), values.max()
            np.testing.assert_array_equal(np.asarray(pixels.pixel_bins(out, num_bins)), bins)
        monkeypatch.undo()


def test_dequantized_white_pixels_stay_below_one():
    """A million white pixels: about 8 draws of u round 255 + u up to 256, i.e. the pixel to 1.0."""
    from flowclass.data.pixels import dequantize

    out = np.asarray(dequantize(jax.random.key(0), jnp.ones((1000, 1000))))
    assert out.min() >= 255 / 256 and out.max() < 1.0, out.max()
