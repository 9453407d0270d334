"""The optimiser recipe (flowclass.optim.make_optimizer)."""

import dataclasses
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flowclass.averaging import averaged_params, find_ema, params_ema
from flowclass.optim import PACK_MIN_PARAMS, SCHEDULES, PackedLeaves, PackedState, make_optimizer, pack_small_leaves


def mnist_recipe(lr, total_steps, ema):
    """experiments/mnist.py's ``optimizer()`` as it was before it moved into the library."""
    schedule = optax.warmup_cosine_decay_schedule(0.0, lr, min(1000, total_steps // 10), total_steps)
    parts = [optax.clip_by_global_norm(10.0), optax.adam(schedule)]
    if ema > 0:
        parts.append(params_ema(ema))
    return optax.chain(*parts)


def run(tx, grads, params):
    """Applies ``tx`` to the gradient sequence; returns the parameters after each step and the state."""
    state = tx.init(params)
    trajectory = []
    for g in grads:
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
        trajectory.append(params)
    return trajectory, state


def gradients(steps, seed=0):
    rng = np.random.default_rng(seed)
    # norms from about 0.3 to 300: some steps are clipped at 10, some not
    return [{"w": jnp.asarray(rng.normal(size=(3, 4)) * 10.0 ** rng.uniform(-1, 2), jnp.float32),
             "b": jnp.asarray(rng.normal(size=4), jnp.float32)} for _ in range(steps)]


PARAMS = {"w": jnp.zeros((3, 4)), "b": jnp.ones(4)}


@pytest.mark.parametrize(("total_steps", "ema"), [(40, 0.0), (40, 0.9), (1, 0.0), (3, 0.5)])
def test_same_updates_as_the_mnist_recipe(total_steps, ema):  # a small model: not packed
    grads = gradients(total_steps + 3)
    expected, expected_state = run(mnist_recipe(3e-3, total_steps, ema), grads, PARAMS)
    mine = make_optimizer(3e-3, schedule="warmup_cosine", total_steps=total_steps, clip_norm=10.0, ema_decay=ema)
    got, state = run(mine, grads, PARAMS)
    for a, b in zip(got, expected, strict=True):
        jax.tree.map(np.testing.assert_array_equal, a, b)
    # the same state, but with averaging it nests as ((clip, adam), ema) rather than (clip, adam, ema)
    jax.tree.map(np.testing.assert_array_equal, jax.tree.leaves(state), jax.tree.leaves(expected_state))
    if not ema:
        assert jax.tree.structure(state) == jax.tree.structure(expected_state)  # checkpoints are interchangeable
    if ema:
        jax.tree.map(np.testing.assert_array_equal, averaged_params(state), averaged_params(expected_state))


def test_constant_schedule_is_plain_adam():
    grads = gradients(5)
    got, state = run(make_optimizer(1e-2), grads, PARAMS)
    expected, expected_state = run(optax.adam(1e-2), grads, PARAMS)
    jax.tree.map(np.testing.assert_array_equal, got[-1], expected[-1])
    assert jax.tree.structure(state) == jax.tree.structure(expected_state)
    assert find_ema(state) is None


def learning_rates(tx, steps):
    """With a constant gradient Adam's bias-corrected step is ``−η_t · g / (|g| + ε) ≈ −η_t``."""
    params = {"w": jnp.zeros(())}

    def step(state, _):
        updates, state = tx.update({"w": jnp.ones(())}, state, params)
        return state, -updates["w"]

    _, rates = jax.lax.scan(step, tx.init(params), None, length=steps)
    return np.asarray(rates)


def test_warmup_cosine_follows_the_formula():
    lr, warmup, total = 2e-3, 10, 50
    rates = learning_rates(make_optimizer(lr, schedule="warmup_cosine", total_steps=total, warmup_steps=warmup),
                           total + 5)
    t = np.arange(total + 5)
    expected = np.where(t < warmup, lr * t / warmup,
                        lr * 0.5 * (1 + np.cos(np.pi * np.clip(t - warmup, 0, total - warmup) / (total - warmup))))
    np.testing.assert_allclose(rates, expected, rtol=1e-5, atol=1e-10)
    assert rates[0] == 0 and rates[warmup] == pytest.approx(lr, rel=1e-5) and np.all(rates[total:] == 0)


@pytest.mark.parametrize(("total_steps", "warmup"), [(50, 5), (9, 0), (20_000, 1000)])
def test_default_warmup_is_a_tenth_of_the_schedule_at_most_1000_steps(total_steps, warmup):
    default = make_optimizer(1e-3, schedule="warmup_cosine", total_steps=total_steps)
    explicit = make_optimizer(1e-3, schedule="warmup_cosine", total_steps=total_steps, warmup_steps=warmup)
    np.testing.assert_array_equal(learning_rates(default, 8), learning_rates(explicit, 8))
    if warmup:
        other = make_optimizer(1e-3, schedule="warmup_cosine", total_steps=total_steps, warmup_steps=warmup + 1)
        assert not np.array_equal(learning_rates(default, 8), learning_rates(other, 8))


def test_clipping_acts_before_adam():
    # Adam ignores a constant gradient scale, so clipping shows when the norm changes between steps
    grads = [{"w": jnp.full((4,), 100.0)}, {"w": jnp.full((4,), 1.0)}]
    params = {"w": jnp.zeros(4)}
    clipped, _ = run(make_optimizer(1e-2, clip_norm=1.0), grads, params)
    expected, _ = run(optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2)), grads, params)
    unclipped, _ = run(make_optimizer(1e-2), grads, params)
    np.testing.assert_array_equal(clipped[-1]["w"], expected[-1]["w"])
    assert not np.allclose(clipped[-1]["w"], unclipped[-1]["w"])


def test_parameter_averaging_is_kept_after_adam():
    grads = gradients(6)
    trajectory, state = run(make_optimizer(1e-2, ema_decay=0.5), grads, PARAMS)
    assert find_ema(state) is not None
    # the average of the parameters Adam produced: Σ_t d^(T−t) (1 − d) θ_t / (1 − d^T)
    d, steps = 0.5, len(trajectory)
    weights = np.array([d ** (steps - 1 - i) * (1 - d) for i in range(steps)]) / (1 - d**steps)
    expected = jax.tree.map(lambda *ps: sum(w * p for w, p in zip(weights, ps, strict=True)), *trajectory)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 averaged_params(state), expected)


def test_trains_a_model_with_fit_pieces():
    import flowclass as fc

    model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
    tx = make_optimizer(1e-3, schedule="warmup_cosine", total_steps=10, clip_norm=10.0, ema_decay=0.9)
    state = fc.create_train_state(model, jax.random.key(0), jnp.zeros((1, 2)), tx, fc.flow_nll)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(16, 2)), jnp.float32)
    y = jnp.zeros(16, jnp.int32)
    for _ in range(3):
        state, aux = fc.train_step(state, (x, y))
    assert int(state.step) == 3 and math.isfinite(float(aux["loss"]))


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((0.0,), {}, "learning_rate"),
        ((-1e-3,), {}, "learning_rate"),
        ((float("nan"),), {}, "learning_rate"),
        (("1e-3",), {}, "learning_rate"),
        ((1e-3,), {"schedule": "cosine"}, "schedule must be one of " + re.escape(str(SCHEDULES))),
        ((1e-3,), {"schedule": "warmup_cosine"}, "total_steps"),
        ((1e-3,), {"schedule": "warmup_cosine", "total_steps": 0}, "total_steps"),
        ((1e-3,), {"schedule": "warmup_cosine", "total_steps": 10.5}, "total_steps"),
        ((1e-3,), {"total_steps": -1}, "total_steps"),
        ((1e-3,), {"schedule": "warmup_cosine", "total_steps": 10, "warmup_steps": 10}, "warmup_steps"),
        ((1e-3,), {"schedule": "warmup_cosine", "total_steps": 10, "warmup_steps": -1}, "warmup_steps"),
        ((1e-3,), {"warmup_steps": 5}, "warmup_steps"),
        ((1e-3,), {"clip_norm": 0.0}, "clip_norm"),
        ((1e-3,), {"clip_norm": float("inf")}, "clip_norm"),
        ((1e-3,), {"ema_decay": 1.0}, "ema_decay"),
        ((1e-3,), {"ema_decay": -0.1}, "ema_decay"),
    ],
)
def test_bad_arguments_are_refused_naming_the_argument(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_optimizer(*args, **kwargs)


MIXED = {"kernel": jnp.zeros((70, 70)), "bias": jnp.zeros(5), "scale": jnp.ones(()), "small_kernel": jnp.zeros((3, 4))}


def mixed_gradients(steps, seed=1):
    rng = np.random.default_rng(seed)
    return [jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape) * 10.0 ** rng.uniform(-1, 2), p.dtype), MIXED)
            for _ in range(steps)]


def test_pack_small_leaves_packs_only_the_small_arrays_and_updates_as_the_tree():
    inner = optax.chain(optax.clip_by_global_norm(10.0), optax.adam(1e-2))
    grads = mixed_gradients(6)
    got, state = run(pack_small_leaves(inner, min_params=0), grads, MIXED)
    expected, _ = run(inner, grads, MIXED)
    for a, b in zip(got, expected, strict=True):  # the global norm sums the packed arrays in another order
        jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7), a, b)
    assert isinstance(state, PackedState)
    assert state.shapes == ((5,), (), (3, 4)) and [int(i) for i in state.indices] == [0]  # bias, scale, small_kernel
    adam = state.inner[1][0]
    assert isinstance(adam.mu, PackedLeaves)
    assert adam.mu.small.shape == (5 + 1 + 12,) and [a.shape for a in adam.mu.large] == [(70, 70)]
    assert jax.tree.structure(got[-1]) == jax.tree.structure(MIXED)
    assert len(jax.tree.leaves(state)) < len(jax.tree.leaves(inner.init(MIXED)))


def test_pack_small_leaves_keeps_every_arrays_shape_and_dtype_under_jit():
    params = {"a": jnp.zeros((2, 3), jnp.bfloat16), "b": jnp.zeros(4, jnp.float32), "c": jnp.zeros((80, 80))}
    tx = pack_small_leaves(optax.adam(1e-1), min_params=0)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    for name, leaf in params.items():
        assert updates[name].shape == leaf.shape and updates[name].dtype == leaf.dtype, name
        np.testing.assert_allclose(np.asarray(updates[name], np.float32), -0.1, rtol=1e-2)


def test_pack_small_leaves_with_nothing_small_or_nothing_large():
    for params in ({"k": jnp.zeros((80, 80))}, {"b": jnp.zeros(3)}, {}):
        tx = pack_small_leaves(optax.adam(1e-1), min_params=0)
        updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
        assert jax.tree.structure(updates) == jax.tree.structure(params)


def test_small_models_are_not_packed_and_large_ones_are():
    inner = optax.adam(1e-2)
    grads = mixed_gradients(3)
    got, state = run(pack_small_leaves(inner), grads, MIXED)  # 4,918 numbers: below PACK_MIN_PARAMS
    expected, expected_state = run(inner, grads, MIXED)
    jax.tree.map(np.testing.assert_array_equal, got[-1], expected[-1])
    assert jax.tree.structure(state) == jax.tree.structure(expected_state)  # its checkpoints are plain Adam's
    large = {"kernel": jnp.zeros((PACK_MIN_PARAMS,)), "bias": jnp.zeros(3)}
    state = make_optimizer(1e-3).init(large)
    assert isinstance(state.inner[0].mu, PackedLeaves) and state.inner[0].mu.small.shape == (3,)
    assert isinstance(make_optimizer(1e-3).init(PARAMS)[0].mu, dict)


def test_a_packed_model_keeps_its_parameter_average_as_a_tree_of_the_parameters():
    large = {"kernel": jnp.zeros((PACK_MIN_PARAMS,)), "bias": jnp.zeros(3)}
    tx = make_optimizer(1e-2, clip_norm=1.0, ema_decay=0.5)
    state = tx.init(large)
    grads = {"kernel": jnp.ones((PACK_MIN_PARAMS,)), "bias": jnp.ones(3)}
    updates, state = jax.jit(tx.update)(grads, state, large)
    assert find_ema(state) is not None
    average = averaged_params(state)
    assert jax.tree.structure(average) == jax.tree.structure(large)
    assert average["bias"].shape == (3,) and average["kernel"].shape == (PACK_MIN_PARAMS,)
    assert jax.tree.structure(updates) == jax.tree.structure(large)


def test_pack_small_leaves_refuses_updates_that_do_not_fit():
    tx = pack_small_leaves(optax.adam(1e-2), min_params=10)
    big = {"k": jnp.zeros(8), "b": jnp.zeros(3)}
    state = tx.init(big)
    with pytest.raises(ValueError, match="the state was made for a packed tree"):
        tx.update({"b": jnp.ones(3)}, state)
    with pytest.raises(ValueError, match="updates and params must hold arrays of the same shapes"):
        tx.update({"k": jnp.ones(8), "b": jnp.ones(4)}, state, {"k": jnp.zeros(8), "b": jnp.zeros(3)})


def test_pack_small_leaves_refuses_a_state_made_for_other_small_arrays():
    tx = pack_small_leaves(optax.sgd(1.0), max_size=4, min_params=0)
    params = {"a": jnp.zeros(3), "b": jnp.zeros(2), "k": jnp.zeros(8)}
    grads = jax.tree.map(jnp.ones_like, params)
    other = {"a": jnp.zeros(3), "k": jnp.zeros(10)}  # one small array, not two
    with pytest.raises(ValueError, match=r"these updates pack 2 small arrays of shapes \(\(3,\), \(2,\)\) "
                                         r"\(max_size=4\), but the state was made for 1 small arrays of "
                                         r"shapes \(\(3,\)\)"):
        tx.update(grads, tx.init(other), params)
    swapped = {"a": jnp.zeros(2), "b": jnp.zeros(3), "k": jnp.zeros(8)}  # as many numbers, in other arrays
    for update in (tx.update, jax.jit(tx.update)):  # the shapes are static: checked under jit too
        with pytest.raises(ValueError, match=r"shapes \(\(3,\), \(2,\)\) .* made for 2 small arrays of shapes "
                                             r"\(\(2,\), \(3,\)\)"):
            update(grads, tx.init(swapped), params)
    unpacked = pack_small_leaves(optax.sgd(1.0), max_size=4, min_params=100).init(params)
    with pytest.raises(ValueError, match="but the state was made for an unpacked tree"):
        tx.update(grads, unpacked, params)
    adam = pack_small_leaves(optax.adam(1e-2), max_size=4, min_params=0)
    earlier = adam.init(params).inner  # what pack_small_leaves returned before PackedState
    with pytest.raises(ValueError, match=r"made for an earlier flowclass \(before PackedState"):
        adam.update(grads, earlier, params)


def test_the_compiled_update_reads_each_small_array_at_an_index_from_the_state():
    # The indices are runtime values (one kernel per shape, not per array): a compiled update
    # given swapped indices unpacks each array of a shape from the other's place, without retracing.
    tx = pack_small_leaves(optax.sgd(1.0), max_size=4, min_params=0)
    params = {"a": jnp.zeros(3), "b": jnp.zeros(2), "c": jnp.zeros(3), "k": jnp.zeros(8)}
    grads = {"a": jnp.full(3, 1.0), "b": jnp.full(2, 5.0), "c": jnp.full(3, 2.0), "k": jnp.ones(8)}
    update = jax.jit(tx.update)
    state = tx.init(params)
    assert [int(i) for i in state.indices] == [0, 1]
    updates, _ = update(grads, state, params)
    for name in params:
        np.testing.assert_array_equal(updates[name], -grads[name])
    swapped, _ = update(grads, dataclasses.replace(state, indices=state.indices[::-1]), params)
    np.testing.assert_array_equal(swapped["a"], -2.0)
    np.testing.assert_array_equal(swapped["c"], -1.0)
    np.testing.assert_array_equal(swapped["b"], -5.0)  # alone in its shape: its block has one row to read
    assert update._cache_size() == 1
    with pytest.raises(ValueError, match=r"the state's indices must be 0, 1, ..., 1; got \[1, 0\]"):
        tx.update(grads, dataclasses.replace(state, indices=state.indices[::-1]), params)  # checked outside jit
    with pytest.raises(ValueError, match="the state holds 1 indices, but these updates' largest group of small arrays "
                                         "of one shape has 2"):
        update(grads, dataclasses.replace(state, indices=state.indices[:1]), params)
    compiled = update.lower(grads, state, params).compile().as_text()
    assert compiled.count("dynamic-slice(") >= 2  # "a" and "c", indexed by parameters of the program ("b" is its group)


def test_packed_small_arrays_keep_their_values_and_dtypes_whatever_the_order_of_shapes():
    params = {"a": jnp.arange(3.0), "b": jnp.arange(4.0).reshape(2, 2).astype(jnp.bfloat16), "c": jnp.arange(3.0) + 10,
              "d": jnp.arange(4.0).reshape(2, 2) + 20, "e": jnp.arange(3.0, dtype=jnp.float16) + 30, "k": jnp.zeros(64),
              "empty": jnp.zeros((0,)), "scalar": jnp.asarray(7.0), "f": jnp.zeros((0,))}
    tx = pack_small_leaves(optax.sgd(-1.0), max_size=8, min_params=0)  # update = +grads
    updates, _ = jax.jit(tx.update)(params, tx.init(params), params)
    for name, leaf in params.items():
        assert updates[name].dtype == leaf.dtype and updates[name].shape == leaf.shape, name
        np.testing.assert_array_equal(np.asarray(updates[name], np.float32), np.asarray(leaf, np.float32))


@pytest.mark.parametrize(("inner", "kwargs", "error", "match"), [
    (optax.adam(1e-3), {"max_size": 0}, ValueError, "max_size must be a positive integer"),
    (optax.adam(1e-3), {"max_size": 2.5}, ValueError, "max_size must be a positive integer"),
    (optax.adam(1e-3), {"max_size": True}, ValueError, "max_size must be a positive integer"),
    (optax.adam(1e-3), {"min_params": -1}, ValueError, "min_params must be an integer >= 0"),
    (optax.adam(1e-3), {"min_params": 1e6}, ValueError, "min_params must be an integer >= 0"),
    ("adam", {}, TypeError, "inner must be an optax.GradientTransformation"),
])
def test_pack_small_leaves_refuses_bad_arguments(inner, kwargs, error, match):
    with pytest.raises(error, match=match):
        pack_small_leaves(inner, **kwargs)
