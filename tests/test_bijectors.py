"""Generic bijector tests, driven by one registry of every bijector in the library.

Each entry builds a module and names an event shape; every test below runs on all of them.
Add new bijectors to ``REGISTRY`` and they get the same checks.
"""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowclass.bijectors import (
    ActNorm,
    AffineCoupling,
    Bijector,
    Chain,
    FactorOut,
    InvertibleConv1x1,
    LogitTransform,
    Reshape,
    Squeeze,
)
from flowclass.nets import MLP, ConvNet

from helpers import cast, perturb

REGISTRY = {
    "coupling_alternating_d2": (lambda: AffineCoupling(MLP((8, 8)), mask_type="alternating"), (2,)),
    "coupling_alternating_d5_parity1": (lambda: AffineCoupling(MLP((8,)), mask_type="alternating", parity=1), (5,)),
    "coupling_checkerboard": (lambda: AffineCoupling(ConvNet((4,)), mask_type="checkerboard"), (4, 4, 2)),
    "coupling_channel": (lambda: AffineCoupling(ConvNet((4,)), mask_type="channel", parity=1), (3, 3, 4)),
    "chain_tabular": (
        lambda: Chain([AffineCoupling(MLP((8,)), parity=i % 2) for i in range(3)]),
        (3,),
    ),
    "chain_image": (
        lambda: Chain([
            AffineCoupling(ConvNet((4,)), mask_type="checkerboard", parity=0),
            AffineCoupling(ConvNet((4,)), mask_type="channel", parity=1),
        ]),
        (2, 2, 2),
    ),
    "squeeze": (lambda: Squeeze(), (4, 2, 3)),
    "reshape": (lambda: Reshape((2, 2, 3), (12,)), (2, 2, 3)),
    "factor_out": (lambda: FactorOut(AffineCoupling(ConvNet((4,)), mask_type="channel")), (2, 2, 4)),
    "actnorm_tabular": (lambda: ActNorm(), (3,)),
    "actnorm_image": (lambda: ActNorm(), (2, 2, 3)),
    "conv1x1_image": (lambda: InvertibleConv1x1(), (2, 2, 3)),
    "conv1x1_tabular": (lambda: InvertibleConv1x1(), (4,)),
    "logit": (lambda: LogitTransform(alpha=0.05), (2, 2, 1)),
    "logit_alpha0": (lambda: LogitTransform(alpha=0.0), (3,)),
    "multiscale_image": (
        lambda: Chain([
            LogitTransform(),
            AffineCoupling(ConvNet((4,)), mask_type="checkerboard"),
            Squeeze(),
            ActNorm(),
            InvertibleConv1x1(),
            FactorOut(Chain([AffineCoupling(ConvNet((4,)), mask_type="channel", parity=p) for p in (0, 1)])),
            Reshape((2, 2, 4), (16,)),
            AffineCoupling(MLP((8,)), mask_type="alternating"),
        ]),
        (4, 4, 1),
    ),
}
UNIT_INTERVAL_INPUTS = {"logit", "logit_alpha0", "multiscale_image"}  # these expect data in (0, 1)
IDENTITY_AT_INIT = {name for name in REGISTRY if name.startswith(("coupling", "chain"))}


def _setup(name, batch=4, dtype=jnp.float32, seed=0):
    build, event_shape = REGISTRY[name]
    layer = build()
    x = np.random.default_rng(seed).standard_normal((batch, *event_shape))  # NumPy: no RNG program to compile
    if name in UNIT_INTERVAL_INPUTS:
        x = 1.0 / (1.0 + np.exp(-x))
    x = jnp.asarray(x, dtype)
    variables = perturb(jax.jit(layer.init)(jax.random.key(seed), x.astype(jnp.float32)), jax.random.key(seed + 1))
    return layer, cast(variables, dtype), x


def _jitted(layer):
    """``layer.apply`` compiled once per shape and direction (run op by op, a multi-scale flow
    dispatches hundreds of separately compiled primitives; ``test_jit_equals_no_jit`` tests that
    path against this one)."""

    def apply(variables, x, inverse=False, method=None):
        return layer.apply(variables, x, method=method) if method else layer.apply(variables, x, inverse=inverse)

    return jax.jit(apply, static_argnames=("inverse", "method"))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_inverse_round_trip(name):
    layer, variables, x = _setup(name)
    apply = _jitted(layer)
    y, log_det = apply(variables, x)
    x_back, inv_log_det = apply(variables, y, inverse=True)
    if y.shape == x.shape:
        assert not np.allclose(y, x, atol=1e-3), "perturbed layer should not be the identity"
    np.testing.assert_allclose(x_back, x, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(inv_log_det, -log_det, atol=1e-5, rtol=1e-5)
    assert log_det.shape == (x.shape[0],)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_log_det_matches_jacobian_float64(name):
    with jax.enable_x64(True):
        layer, variables, x = _setup(name, batch=2, dtype=jnp.float64)
        apply = _jitted(layer)
        event_shape = x.shape[1:]
        out_shape = jax.eval_shape(apply, variables, x)[0].shape[1:]

        def forward(v):
            return layer.apply(variables, v.reshape(1, *event_shape))[0].reshape(-1)

        def inverse(v):
            return layer.apply(variables, v.reshape(1, *out_shape), inverse=True)[0].reshape(-1)

        jac_forward, jac_inverse = jax.jit(jax.jacfwd(forward)), jax.jit(jax.jacfwd(inverse))
        for i in range(x.shape[0]):
            sign, expected = jnp.linalg.slogdet(jac_forward(x[i].reshape(-1)))
            y_i, log_det = apply(variables, x[i : i + 1])
            assert log_det.dtype == jnp.float64
            assert sign != 0
            np.testing.assert_allclose(log_det[0], expected, rtol=1e-10, atol=1e-10)
            _, expected_inv = jnp.linalg.slogdet(jac_inverse(y_i.reshape(-1)))
            _, inv_log_det = apply(variables, y_i, inverse=True)
            np.testing.assert_allclose(inv_log_det[0], expected_inv, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_jit_equals_no_jit(name):
    layer, variables, x = _setup(name)
    y = layer.apply(variables, x)[0]
    for inverse, inputs in ((False, x), (True, y)):
        eager = layer.apply(variables, inputs, inverse=inverse)
        jitted = jax.jit(lambda v, a, inverse=inverse: layer.apply(v, a, inverse=inverse))(variables, inputs)
        for a, b in zip(eager, jitted, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_batch_independence(name):
    layer, variables, x = _setup(name, batch=5)
    apply = _jitted(layer)
    y, log_det = apply(variables, x)
    for i in range(x.shape[0]):
        y_i, log_det_i = apply(variables, x[i : i + 1])
        np.testing.assert_allclose(y_i[0], y[i], atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(log_det_i[0], log_det[i], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(IDENTITY_AT_INIT))
def test_starts_as_identity(name):
    build, event_shape = REGISTRY[name]
    layer = build()
    x = jax.random.normal(jax.random.key(1), (3, *event_shape))
    y, log_det = layer.apply(layer.init(jax.random.key(0), x), x)
    np.testing.assert_allclose(y, x, atol=1e-6)
    np.testing.assert_allclose(log_det, 0.0, atol=1e-6)


def test_chain_applies_layers_in_written_order():
    first = AffineCoupling(MLP((4,)), parity=0)
    second = AffineCoupling(MLP((4,)), parity=1)
    chain = Chain([first, second])
    x = jax.random.normal(jax.random.key(2), (4, 2))
    variables = perturb(chain.init(jax.random.key(0), x), jax.random.key(1))
    p = variables["params"]
    h, ld1 = first.apply({"params": p["layers_0"]}, x)
    z, ld2 = second.apply({"params": p["layers_1"]}, h)
    z_chain, ld_chain = chain.apply(variables, x)
    np.testing.assert_allclose(z_chain, z, rtol=1e-6)
    np.testing.assert_allclose(ld_chain, ld1 + ld2, rtol=1e-5, atol=1e-6)
    # The other order gives a different map, so the check above is not vacuous.
    z_swapped, _ = first.apply({"params": p["layers_0"]}, second.apply({"params": p["layers_1"]}, x)[0])
    assert not np.allclose(z_swapped, z, atol=1e-3)


def test_coupling_only_changes_unmasked_entries():
    layer = AffineCoupling(MLP((8,)), mask_type="alternating", parity=0)
    x = jax.random.normal(jax.random.key(3), (6, 4))
    variables = perturb(layer.init(jax.random.key(0), x), jax.random.key(1))
    y, _ = layer.apply(variables, x)
    np.testing.assert_array_equal(y[:, ::2], x[:, ::2])  # mask [1, 0, 1, 0]: even entries pass
    assert not np.allclose(y[:, 1::2], x[:, 1::2])


def test_log_scale_is_bounded_by_the_learnable_bound():
    layer = AffineCoupling(MLP((8,)), mask_type="alternating")
    x = jax.random.normal(jax.random.key(4), (16, 2))
    variables = perturb(layer.init(jax.random.key(0), x), jax.random.key(1), scale=50.0)
    bound = np.abs(np.asarray(variables["params"]["log_scale_bound"]))
    _, log_det = layer.apply(variables, x)
    assert np.all(np.abs(log_det) <= bound.sum() + 1e-5)


# --- the contract: the Bijector base class and Chain's checks ---


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registered_bijector_is_a_bijector(name):
    layer = REGISTRY[name][0]()
    assert isinstance(layer, Bijector)
    assert type(layer) is not Bijector


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_named_directions_equal_call_and_event_shapes_are_known(name):
    layer, variables, x = _setup(name)
    apply = _jitted(layer)
    batch, in_shape = x.shape[0], x.shape[1:]
    y, log_det = apply(variables, x)
    x_back, inv_log_det = apply(variables, y, inverse=True)
    chex.assert_trees_all_equal(apply(variables, x, method="forward_and_log_det"), (y, log_det))
    chex.assert_trees_all_equal(apply(variables, y, method="inverse_and_log_det"), (x_back, inv_log_det))
    chex.assert_shape([log_det, inv_log_det], (batch,))
    chex.assert_type([y, x_back, log_det, inv_log_det], jnp.float32)
    # every registered bijector knows its event-shape map, and it agrees with what it computes
    assert layer.forward_event_shape(in_shape) == y.shape[1:]
    assert layer.inverse_event_shape(y.shape[1:]) == in_shape


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_log_dets_are_never_below_float32(name):
    """bfloat16 events in: bfloat16 events and float32 log-dets out (traced by eval_shape, never run)."""
    build, event_shape = REGISTRY[name]
    layer = build()
    x = jax.ShapeDtypeStruct((4, *event_shape), jnp.bfloat16)
    variables = jax.eval_shape(layer.init, jax.random.key(0), jax.ShapeDtypeStruct(x.shape, jnp.float32))
    y, log_det = jax.eval_shape(layer.apply, variables, x)
    x_back, inv_log_det = jax.eval_shape(lambda v, a: layer.apply(v, a, inverse=True), variables, y)
    assert (y.dtype, x_back.dtype, log_det.dtype, inv_log_det.dtype) == (jnp.bfloat16,) * 2 + (jnp.float32,) * 2
    assert log_det.shape == inv_log_det.shape == (4,)


def test_chain_refuses_what_is_not_a_bijector():
    coupling = AffineCoupling(MLP((4,)))
    with pytest.raises(TypeError, match=r"Chain\.layers\[1\] must be a flowclass\.bijectors\.Bijector; got a Dense"):
        Chain([coupling, nn.Dense(2)])
    with pytest.raises(TypeError, match=r"Chain\.layers\[0\] .* got a function object"):
        Chain([lambda x: (x, 0.0)])
    with pytest.raises(TypeError, match="Chain.layers must be a sequence of Bijectors; got AffineCoupling"):
        Chain(coupling)
    with pytest.raises(TypeError, match="FactorOut.inner must be a flowclass.bijectors.Bijector; got Dense"):
        FactorOut(nn.Dense(2))


def test_chain_checks_neighbouring_event_shapes_when_built():
    # both shapes known without data: Reshape's output, carried through ActNorm, against Reshape's input
    with pytest.raises(
        ValueError,
        match=r"layers\[1\] \(ActNorm\) and layers\[2\] \(Reshape\) do not fit: .* shape \(12,\).*\(3, 4\)",
    ):
        Chain([Reshape((2, 2, 3), (12,)), ActNorm(), Reshape((3, 4), (12,))])
    # backwards: the Reshape takes (4, 4, 1), which a squeeze (4C channels) cannot give
    with pytest.raises(ValueError, match=r"layers\[1\] \(Reshape\) takes events of shape \(4, 4, 1\), which "
                                         r"layers\[0\] \(Squeeze\) cannot give: .*divisible by 4"):
        Chain([Squeeze(), Reshape((4, 4, 1), (16,))])
    # a vector after a Reshape, but an image mask
    with pytest.raises(ValueError, match=r"layers\[0\] \(Reshape\) and layers\[1\] \(AffineCoupling\).*"
                                         r"'checkerboard' masks are for images"):
        Chain([Reshape((4, 4, 1), (16,)), AffineCoupling(ConvNet((4,)), mask_type="checkerboard")])
    # nested: FactorOut's inner flow is checked too
    with pytest.raises(ValueError, match="cannot reshape"):
        Chain([FactorOut(Chain([Reshape((2, 2, 1), (3,))]))])


def test_chain_checks_neighbouring_event_shapes_when_called():
    flow = Chain([Squeeze(), AffineCoupling(MLP((4,)), mask_type="alternating")])  # unknown until x comes
    assert flow.forward_event_shape(None) is None
    with pytest.raises(ValueError, match=r"layers\[0\] \(Squeeze\) gives events of shape \(2, 2, 4\), which "
                                         r"layers\[1\] \(AffineCoupling\) cannot take"):
        flow.init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)))
    with pytest.raises(ValueError, match=r"Chain layers\[0\] \(Squeeze\): squeeze needs even height"):
        flow.init(jax.random.key(0), jnp.zeros((1, 3, 4, 1)))


def test_event_shape_maps_of_the_shape_changing_layers():
    assert Squeeze().forward_event_shape((4, 6, 1)) == (2, 3, 4)
    assert Squeeze().inverse_event_shape((2, 3, 4)) == (4, 6, 1)
    assert Reshape((2, 2, 3), (12,)).forward_event_shape(None) == (12,)
    assert Reshape((2, 2, 3), (12,)).inverse_event_shape(None) == (2, 2, 3)
    assert FactorOut(ActNorm()).forward_event_shape((2, 2, 4)) == (2, 2, 4)
    with pytest.raises(ValueError, match="even number of channels"):
        FactorOut(ActNorm()).forward_event_shape((2, 2, 3))
    with pytest.raises(ValueError, match="must preserve event shape"):
        FactorOut(Reshape((2, 2, 2), (8,))).forward_event_shape((2, 2, 4))
    with pytest.raises(ValueError, match="needs image events"):
        Squeeze().forward_event_shape((16,))


def test_a_new_bijector_only_needs_call():
    class Shift(Bijector):  # no event-shape information: Chain skips its checks
        @nn.compact
        def __call__(self, x, inverse=False):
            b = self.param("b", nn.initializers.ones, x.shape[-1:])
            zero = jnp.zeros((x.shape[0],))
            return (x - b, zero) if inverse else (x + b, zero)

    flow = Chain([Shift(), Reshape((2, 2), (4,))])
    x = jnp.zeros((3, 2, 2))
    variables = flow.init(jax.random.key(0), x)
    y, log_det = flow.apply(variables, x, method="forward_and_log_det")
    chex.assert_trees_all_close(y, jnp.ones((3, 4)))
    chex.assert_shape(log_det, (3,))
    assert Shift().forward_event_shape((2, 2)) is None
    with pytest.raises(NotImplementedError, match="Bijector must define __call__"):
        Bijector().init(jax.random.key(0), x)
