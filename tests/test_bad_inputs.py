"""Every public entry point against every kind of bad input: a ``ValueError`` or ``TypeError`` naming the argument.

One table (:data:`CASES`) of ``entry point × argument × bad value``: wrong shape or rank, wrong
dtype (strings, object, complex, bool, integers where floats are needed), NaN/inf, empty batches,
values outside the domain (pixels outside [0, 1] for image flows, labels outside ``[0, K)`` with
``K`` from the model, ``-1`` where unlabelled examples are not allowed), sizes and counts that
are not positive integers (``0``, ``-1``, ``2.0``, ``True``, ``None``), class indices that are
not integers, an ``int`` where a PRNG key belongs. Every case must raise ``ValueError`` or
``TypeError`` (``TypeError`` for keys) whose message names the argument. :data:`CONTROLS` are
valid calls, including what NumPy accepts as an array (lists, ``np.int64`` scalars, 0-d arrays,
``jnp`` arrays, ``bfloat16``/``float16``/``float64`` inputs): they must succeed.

The census of outcomes (clear / obscure / misleading / silent, per group)::

    python tests/test_bad_inputs.py            # add --show to print every case that is not clear

* clear: ``ValueError``/``TypeError`` whose message names the argument;
* misleading: ``ValueError``/``TypeError`` whose message names another argument of the entry point;
* obscure: any other exception, or a message that names no argument;
* silent: returned without an error (garbage out).

Models are tiny and built once; no training. The command-line cases run ``flowclass.cli.parse``
(what ``python -m experiments.moons.main`` runs first) and count a usage error (exit status 2)
whose message names the field as clear.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowclass as fc
from flowclass import (
    attacks,
    averaging,
    calibration,
    cli,
    generation,
    invariance,
    manifold,
    metrics,
    robustness,
    sharding,
)
from flowclass.bijectors import LogitTransform
from flowclass.data import labels as data_labels
from flowclass.data import moons as data_moons
from flowclass.data import pixels as data_pixels
from flowclass.data import split as data_split

K = 3  # classes of every model here
N = 4  # examples per batch
NAN, INF = float("nan"), float("inf")

# Cases whose checks live in files other engineers are changing (strict=False: they pass as soon as the fix
# lands), as {group: (reason, {case id, ...})}. Empty: every case must pass.
PENDING: dict[str, tuple[str, set[str]]] = {}


# --------------------------------------------------------------------------------------------
# The models, built once.
# --------------------------------------------------------------------------------------------


class World:
    """Tiny models and valid inputs, built once per process on first use."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(N, 2)).astype(np.float32)
        self.y = (np.arange(N) % K).astype(np.int32)
        self.images = rng.uniform(0.05, 0.95, size=(N, 8, 8, 1)).astype(np.float32)
        self.tab = fc.tabular_realnvp(2, K, num_couplings=2, hidden=(8,), means=((-4, 0), (4, 0), (0, 4)))
        self.tv = self.tab.init(jax.random.key(0), jnp.zeros((1, 2)))
        # A small image flow: logit preprocessing then checkerboard couplings, as the image presets start
        # (image_realnvp's presets take minutes to compile here; their input box is tested below).
        flow = fc.Chain([LogitTransform(), *(fc.AffineCoupling(fc.ConvNet((4,)), mask_type="checkerboard", parity=p)
                                            for p in (0, 1))])
        self.img = fc.FlowClassifier(flow, fc.ClassGaussians(K, (8, 8, 1)), input_shape=(8, 8, 1))
        self.iv = jax.jit(self.img.init)(jax.random.key(0), self.images)
        self.fnn = fc.FNN(K, hidden=(8,))
        self.fv = self.fnn.init(jax.random.key(0), jnp.zeros((1, 2)))
        self.logits_fn = functools.partial(self.fnn.apply, self.fv)
        self.cll_fn = functools.partial(self.tab.apply, self.tv, method="class_log_likelihoods")
        self.encode_fn = functools.partial(self.tab.apply, self.tv, method="encode")
        self.decode_fn = functools.partial(self.tab.apply, self.tv, method="decode")
        self.unit_x = rng.uniform(0.1, 0.9, size=(N, 2)).astype(np.float32)  # inside the attacks' (0, 1) box
        self.state = fc.create_train_state(self.tab, jax.random.key(0), self.x[:1], optax.adam(1e-3), fc.flow_nll)
        self.workdir = Path(tempfile.mkdtemp(prefix="flowclass-bad-inputs-"))
        steps = 2  # an attack's result of 2 steps on N paths, made up (no attack is compiled for it)
        self.attack_result = attacks.AttackResult(
            inputs=np.cumsum(rng.normal(size=(steps + 1, N, 2)), 0), probs=np.full((steps + 1, N, K), 1.0 / K),
            objective=rng.normal(size=(steps + 1, N)), target=np.ones(N, np.int32),
            success_step=np.array([1, -1, 2, -1], np.int32), num_steps=np.array([1, 2, 2, 0], np.int32))
        self.log_p_path = -np.abs(self.attack_result.inputs).sum(-1)

    def fresh_state(self):
        """A copy of the train state (train_step donates the state it is given)."""
        return jax.tree.map(lambda a: jnp.array(a, copy=True) if isinstance(a, jax.Array) else a, self.state)


@functools.cache
def world() -> World:
    return World()


# --------------------------------------------------------------------------------------------
# Bad values by kind.
# --------------------------------------------------------------------------------------------


def _with(a, index, value):
    a = np.array(a, copy=True)
    a.flat[index] = value
    return a


def bad_batches(good: np.ndarray, *, integers: bool = True) -> list[tuple[str, Any]]:
    """Bad versions of a float batch ``good`` of shape ``(n, *event_shape)``."""
    cases = [
        ("rank_low", good[0]),
        ("rank_high", good[..., None]),
        ("features", np.concatenate([good, good], -1)),
        ("empty", good[:0]),
        ("strings", good.astype(str)),
        ("object", good.astype(object)),
        ("complex", good.astype(np.complex64)),
        ("bool", good > 0.5),
        ("nan", _with(good, 0, NAN)),
        ("inf", _with(good, -1, INF)),
        ("none", None),
        ("scalar", 0.5),
    ]
    if integers:
        cases.append(("integers", np.round(good * 10).astype(np.int32)))
    return cases


def ok_batches(good: np.ndarray) -> list[tuple[str, Any]]:
    """What NumPy accepts as a float batch: lists, other float dtypes, JAX arrays."""
    return [
        ("list", good.tolist()),
        ("bfloat16", jnp.asarray(good, jnp.bfloat16)),
        ("float16", good.astype(np.float16)),
        ("float64", good.astype(np.float64)),
        ("jax", jnp.asarray(good)),
    ]


def bad_pixels(good: np.ndarray) -> list[tuple[str, Any]]:
    """Images outside [0, 1]: raw 0–255 values (float and uint8), negative, above one."""
    return [
        ("raw_0_255", np.round(good * 255).astype(np.float32)),
        ("uint8", np.round(good * 255).astype(np.uint8)),
        ("negative", _with(good, 0, -0.1)),
        ("above_one", _with(good, -1, 1.5)),
    ]


def bad_labels(n: int = N, k: int = K, *, unlabelled_ok: bool = False) -> list[tuple[str, Any]]:
    good = (np.arange(n) % k).astype(np.int32)
    cases = [
        ("label_K", _with(good, 0, k)),
        ("float", good.astype(np.float32)),
        ("bool", good > 0),
        ("strings", good.astype(str)),
        ("rank2", good[None]),
        ("length", good[:-1]),
        ("nan", np.full(n, NAN)),
        ("none", None),
        ("object", good.astype(object)),
    ]
    if not unlabelled_ok:
        cases.append(("minus_one", _with(good, 0, -1)))
    return cases


def ok_labels(n: int = N, k: int = K) -> list[tuple[str, Any]]:
    good = (np.arange(n) % k).astype(np.int32)
    return [("list", good.tolist()), ("int64", good.astype(np.int64)), ("jax", jnp.asarray(good)),
            ("uint8", good.astype(np.uint8))]


BAD_COUNTS = [("zero", 0), ("negative", -1), ("float", 2.0), ("bool", True), ("none", None), ("string", "3")]
OK_COUNTS = [("int64", np.int64(2)), ("int32", np.int32(2))]
BAD_POSITIVE = [("zero", 0.0), ("negative", -1.0), ("nan", NAN), ("inf", INF), ("string", "0.1"), ("none", None)]
BAD_PROBABILITY = [("zero", 0.0), ("one", 1.0), ("nan", NAN), ("string", "0.9"), ("none", None)]
BAD_KEYS = [("int", 1), ("string", "key"), ("float_array", np.zeros(2, np.float32))]
OK_KEYS = [("typed", jax.random.key(3)), ("legacy", jax.random.PRNGKey(3))]
BAD_BOUNDS = [("reversed", (1.0, 0.0)), ("short", (0.0,)), ("nan", (NAN, 1.0)), ("string", "01")]
BAD_CLASS = [("class_K", K), ("negative", -1), ("float", 1.5), ("bool", True), ("string", "0"),
             ("vector", np.array([0, 1])), ("none", None)]
OK_CLASS = [("int64", np.int64(1)), ("array0d", np.array(1)), ("jax", jnp.array(1)), ("int", 2)]


# --------------------------------------------------------------------------------------------
# The table.
# --------------------------------------------------------------------------------------------


class Case(NamedTuple):
    group: str
    entry: str
    arg: str  # the argument the message must name
    kind: str
    call: Callable[[], Any]
    params: tuple[str, ...]  # every argument of the entry point (a message naming another one misleads)
    error: tuple[type[BaseException], ...] = (ValueError, TypeError)

    @property
    def id(self) -> str:
        return f"{self.entry}-{self.arg}-{self.kind}"


CASES: list[Case] = []
CONTROLS: list[Case] = []


def entry(group: str, name: str, fn: Callable[..., Any], base: Callable[[World], dict], *,
          bad: dict[str, list[tuple[str, Any]]], ok: dict[str, list[tuple[str, Any]]] | None = None,
          names: dict[str, str] | None = None, errors: dict[str, tuple] | None = None) -> None:
    """Adds ``fn(**base(w))`` with each argument of ``bad`` replaced by each of its bad values.

    ``names`` maps an argument to the name its message must carry, when that differs (e.g. a
    config field path); ``errors`` the exception types an argument's cases must raise.
    """
    names, errors = names or {}, errors or {}

    def call(arg=None, value=None):
        w = world()
        kwargs = base(w)
        if arg is not None:
            kwargs[arg] = value(w) if callable(value) and not isinstance(value, jax.Array) else value
        return fn(w, **kwargs)

    params = tuple(sorted(set(bad) | set(ok or {}) | set(names.values())))
    CONTROLS.append(Case(group, name, "-", "valid", call, params))
    for arg, values in (ok or {}).items():
        for kind, value in values:
            CONTROLS.append(Case(group, name, arg, kind, functools.partial(call, arg, value), params))
    for arg, values in bad.items():
        for kind, value in values:
            CASES.append(Case(group, name, names.get(arg, arg), kind, functools.partial(call, arg, value), params,
                              errors.get(arg, (ValueError, TypeError))))


KEY_ERRORS = (TypeError,)
ADAM = optax.adam(0.1)  # one optimiser object: the attacks' compilations are cached on it

# --- classifier methods: model.apply(variables, ..., method=...) ---------------------------------

_X_METHODS = ("logits", "predict", "predict_proba", "encode", "class_log_likelihoods", "marginal_log_prob")


def _method(method: str, model: str = "tab"):
    def fn(w, x):
        m, v = (w.tab, w.tv) if model == "tab" else (w.img, w.iv)
        return m.apply(v, x, method=method) if method != "__call__" else m.apply(v, x)
    return fn


_TAB_X = np.random.default_rng(1).normal(size=(N, 2)).astype(np.float32)
_IMAGES = np.random.default_rng(2).uniform(0.05, 0.95, size=(N, 8, 8, 1)).astype(np.float32)
_LABELS = (np.arange(N) % K).astype(np.int32)

for _m in (*_X_METHODS, "__call__"):
    entry("classifier", f"FlowClassifier.{_m}", _method(_m), lambda w: {"x": _TAB_X},
          bad={"x": bad_batches(_TAB_X)}, ok={"x": ok_batches(_TAB_X)})
    if _m != "__call__":  # image flows: pixels in [0, 1] (the image controls run eagerly: a few only)
        entry("classifier", f"FlowClassifier.{_m}[image]", _method(_m, "img"), lambda w: {"x": _IMAGES},
              bad={"x": bad_pixels(_IMAGES) + [("rank3", _IMAGES[..., 0]), ("size", _IMAGES[:, :4, :4])]},
              ok={"x": [("bfloat16", jnp.asarray(_IMAGES, jnp.bfloat16)), ("bounds", np.stack(
                  [np.zeros((8, 8, 1)), np.ones((8, 8, 1)), *_IMAGES[:2]]).astype(np.float32))]}
              if _m == "predict" else None)

entry("classifier", "FlowClassifier.decode", lambda w, z: w.tab.apply(w.tv, z, method="decode"),
      lambda w: {"z": _TAB_X}, bad={"z": bad_batches(_TAB_X)}, ok={"z": ok_batches(_TAB_X)})

for _m in ("log_prob", "bits_per_dim"):
    entry("classifier", f"FlowClassifier.{_m}", lambda w, x, y, _m=_m: w.tab.apply(w.tv, x, y, method=_m),
          lambda w: {"x": _TAB_X, "y": _LABELS},
          bad={"x": bad_batches(_TAB_X), "y": bad_labels()}, ok={"x": ok_batches(_TAB_X), "y": ok_labels()})
    entry("classifier", f"FlowClassifier.{_m}[image]", lambda w, x, y, _m=_m: w.img.apply(w.iv, x, y, method=_m),
          lambda w: {"x": _IMAGES, "y": _LABELS}, bad={"x": bad_pixels(_IMAGES), "y": bad_labels()[:2]})

entry("classifier", "FlowClassifier.bits_per_dim(num_bins)",
      lambda w, num_bins: w.tab.apply(w.tv, _TAB_X, _LABELS, num_bins, method="bits_per_dim"),
      lambda w: {"num_bins": 256}, bad={"num_bins": [kv for kv in BAD_COUNTS if kv[0] != "none"]},
      ok={"num_bins": [("none", None), ("int64", np.int64(256))]})

entry("classifier", "FlowClassifier.sample",
      lambda w, key, k, n, temperature: w.tab.apply(w.tv, key, k, n, temperature, method="sample"),
      lambda w: {"key": jax.random.key(0), "k": 1, "n": 3, "temperature": 1.0},
      bad={"key": BAD_KEYS, "k": BAD_CLASS, "n": BAD_COUNTS,
           "temperature": [("negative", -1.0), ("nan", NAN), ("inf", INF), ("string", "1")]},
      ok={"key": OK_KEYS, "k": OK_CLASS, "n": OK_COUNTS, "temperature": [("zero", 0.0), ("int", 1)]},
      errors={"key": KEY_ERRORS})

# --- model builders and networks ------------------------------------------------------------


def _build_tabular(w, **kwargs):
    model = fc.tabular_realnvp(**kwargs)
    return model.init(jax.random.key(0), jnp.zeros((1, 2)))


entry("builders", "tabular_realnvp", _build_tabular,
      lambda w: {"num_features": 2, "num_classes": 2, "num_couplings": 2, "hidden": (8,), "means": "normal",
                 "mean_scale": 1.0, "covariance": "identity"},
      bad={"num_features": BAD_COUNTS, "num_classes": BAD_COUNTS, "num_couplings": BAD_COUNTS,
           "hidden": [("zero", (0,)), ("negative", (-1,)), ("string", "ab"), ("float", (2.0,))],
           "means": [("shape", ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))), ("nan", ((NAN, 0.0), (1.0, 0.0))),
                     ("duplicate", ((1.0, 0.0), (1.0, 0.0))), ("unknown", "gaussian")],
           "mean_scale": [("zero", 0.0), ("nan", NAN), ("negative", -1.0)],
           "covariance": [("unknown", "full")]},
      ok={"means": [("list", [[-4, 0], [4, 0]]), ("array", np.array([[-4.0, 0.0], [4.0, 0.0]]))],
          "num_features": [("int64", np.int64(2))]})


def _build_image(w, **kwargs):
    model = fc.image_realnvp(**kwargs)
    shape = kwargs.get("input_shape", (8, 8, 1))
    return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((2, *shape)))


entry("builders", "image_realnvp", _build_image,
      lambda w: {"preset": "fast", "input_shape": (8, 8, 1), "num_classes": 3},
      bad={"preset": [("unknown", "glow"), ("none", None)],
           "input_shape": [("rank2", (8, 8)), ("not_divisible", (10, 8, 1)), ("zero", (0, 8, 1)),
                           ("float", (8.0, 8, 1)), ("string", "8x8")],
           "num_classes": BAD_COUNTS})


def _build_net(cls, x_shape):
    def fn(w, x=None, **kwargs):
        net = cls(**kwargs)
        x = jnp.zeros(x_shape) if x is None else x
        return jax.eval_shape(net.init, jax.random.key(0), x)
    return fn


entry("nets", "FNN", _build_net(fc.FNN, (1, 2)), lambda w: {"num_classes": 3, "hidden": (8,)},
      bad={"num_classes": BAD_COUNTS, "hidden": [("zero", (0,)), ("negative", (-4,)), ("float", (8.0,)),
                                                 ("string", "8")]})
entry("nets", "MLP", _build_net(fc.MLP, (1, 2)), lambda w: {"hidden": (8,)},
      bad={"hidden": [("zero", (0,)), ("negative", (-4,)), ("float", (8.0,)), ("string", "8"), ("int", 8)]},
      ok={"hidden": [("list", [8, 4]), ("empty", ())]})
entry("nets", "ConvNet", _build_net(fc.ConvNet, (1, 8, 8, 1)), lambda w: {"features": (4,), "kernel_size": 3},
      bad={"features": [("zero", (0,)), ("float", (4.0,)), ("int", 4)], "kernel_size": BAD_COUNTS[:4],
           "x": [("rank3", jnp.zeros((1, 8, 8)))]})
entry("nets", "GatedConvNet", _build_net(fc.GatedConvNet, (1, 8, 8, 1)), lambda w: {"features": 4, "num_blocks": 1},
      bad={"features": BAD_COUNTS[:4], "num_blocks": [("negative", -1), ("float", 1.0), ("none", None)],
           "x": [("rank2", jnp.zeros((1, 8)))]},
      ok={"num_blocks": [("zero", 0)]})
entry("nets", "Conv", _build_net(fc.Conv, (1, 8, 8, 1)), lambda w: {"features": 4, "kernel_size": (3, 3)},
      bad={"features": BAD_COUNTS[:4], "kernel_size": [("zero", (0, 0)), ("even_same", (2, 2)), ("int", 3),
                                                       ("float", (3.0, 3.0))],
           "x": [("rank3", jnp.zeros((1, 8, 8)))]})
entry("nets", "CNN", _build_net(fc.CNN, (1, 28, 28, 1)), lambda w: {"num_classes": 10},
      bad={"num_classes": BAD_COUNTS[:4], "x": [("rank3", jnp.zeros((1, 28, 28))), ("small", jnp.zeros((1, 8, 8, 1)))]})

# --- training (engineer C's boundary; cases here, fixes in training.py) -------------------------

entry("training", "create_train_state",
      lambda w, model, key, sample_x, tx, loss_fn: fc.create_train_state(model, key, sample_x, tx, loss_fn),
      lambda w: {"model": w.tab, "key": jax.random.key(0), "sample_x": _TAB_X[:1], "tx": optax.adam(1e-3),
                 "loss_fn": fc.flow_nll},
      bad={"model": [("string", "realnvp"), ("none", None)], "key": BAD_KEYS,
           "sample_x": [kv for kv in bad_batches(_TAB_X) if kv[0] in ("strings", "nan", "empty", "features", "none")],
           "tx": [("string", "adam"), ("none", None)], "loss_fn": [("string", "nll"), ("none", None)]},
      errors={"key": KEY_ERRORS})
entry("training", "train_step", lambda w, x, y: fc.train_step(w.fresh_state(), (x, y)),
      lambda w: {"x": _TAB_X, "y": _LABELS},
      bad={"x": [kv for kv in bad_batches(_TAB_X) if kv[0] in ("strings", "nan", "features", "empty")],
           "y": [kv for kv in bad_labels() if kv[0] in ("label_K", "minus_one", "length", "float")]})
entry("training", "evaluate", lambda w, x, y, batch_size: fc.evaluate(w.state, x, y, batch_size=batch_size),
      lambda w: {"x": _TAB_X, "y": _LABELS, "batch_size": 2},
      bad={"x": bad_batches(_TAB_X), "y": bad_labels(), "batch_size": BAD_COUNTS},
      ok={"x": [("list", _TAB_X.tolist()), ("bfloat16", jnp.asarray(_TAB_X, jnp.bfloat16))],
          "y": [("list", _LABELS.tolist())]})
entry("training", "predict_logits",
      lambda w, x, batch_size: fc.predict_logits(w.tab.apply, w.tv, x, batch_size=batch_size),
      lambda w: {"x": _TAB_X, "batch_size": 2}, bad={"x": bad_batches(_TAB_X), "batch_size": BAD_COUNTS},
      ok={"x": [("list", _TAB_X.tolist())]})
entry("training", "fit",
      lambda w, train, val, key, batch_size: fc.fit(
          w.fresh_state(), train, val, key=key, config=fc.TrainConfig(epochs=1, batch_size=batch_size),
          progress=False),
      lambda w: {"train": (np.tile(_TAB_X, (4, 1)), np.tile(_LABELS, 4)), "val": (_TAB_X, _LABELS),
                 "key": jax.random.key(0), "batch_size": 8},
      bad={"train": [("label_K", (np.tile(_TAB_X, (4, 1)), np.full(16, K))),
                     ("minus_one", (np.tile(_TAB_X, (4, 1)), np.full(16, -1))),
                     ("length", (np.tile(_TAB_X, (4, 1)), np.zeros(14, np.int32))),
                     ("nan", (_with(np.tile(_TAB_X, (4, 1)), 0, NAN), np.tile(_LABELS, 4))),
                     ("single", _TAB_X)],
           "val": [("label_K", (_TAB_X, np.full(N, K))), ("length", (_TAB_X, _LABELS[:2])),
                   ("features", (np.zeros((N, 3), np.float32), _LABELS))],
           "key": BAD_KEYS},
      names={"val": "validation"}, errors={"key": KEY_ERRORS})  # fit's messages name the split "validation"

# --- metrics and calibration ------------------------------------------------------------------

_LOGITS = np.random.default_rng(3).normal(size=(N, K)).astype(np.float32)
_BAD_LOGITS = [kv for kv in bad_batches(_LOGITS, integers=False) if kv[0] != "features"]

for _name in ("accuracy", "negative_log_likelihood", "reliability", "expected_calibration_error"):
    entry("metrics", f"metrics.{_name}",
          lambda w, logits, labels, _n=_name: getattr(metrics, _n)(logits, labels),
          lambda w: {"logits": _LOGITS, "labels": _LABELS},
          bad={"logits": _BAD_LOGITS, "labels": bad_labels()},
          ok={"logits": [("list", _LOGITS.tolist()), ("bfloat16", jnp.asarray(_LOGITS, jnp.bfloat16)),
                         ("float64", _LOGITS.astype(np.float64))], "labels": ok_labels()})

entry("metrics", "metrics.reliability(options)",
      lambda w, num_bins, binning: metrics.reliability(_LOGITS, _LABELS, num_bins=num_bins, binning=binning),
      lambda w: {"num_bins": 5, "binning": "width"},
      bad={"num_bins": BAD_COUNTS, "binning": [("unknown", "quantile"), ("none", None)]},
      ok={"num_bins": OK_COUNTS})

_SCORES = np.array([0.1, 0.4, 0.35, 0.8], np.float32)
_POSITIVE = np.array([False, False, True, True])
for _name in ("auroc", "tpr_at_fpr"):
    entry("metrics", f"metrics.{_name}", lambda w, scores, is_positive, _n=_name: getattr(metrics, _n)(
        scores, is_positive), lambda w: {"scores": _SCORES, "is_positive": _POSITIVE},
          bad={"scores": [("rank2", _SCORES[None]), ("empty", _SCORES[:0]), ("strings", _SCORES.astype(str)),
                          ("nan", _with(_SCORES, 0, NAN)), ("inf", _with(_SCORES, 1, INF)),
                          ("complex", _SCORES.astype(np.complex64)), ("none", None),
                          ("object", _SCORES.astype(object))],
               "is_positive": [("length", _POSITIVE[:3]), ("strings", _POSITIVE.astype(str)),
                               ("one_class", np.ones(4, bool)), ("none", None), ("floats", _POSITIVE * 0.5)]},
          ok={"scores": [("list", _SCORES.tolist())],
              "is_positive": [("list", _POSITIVE.tolist()), ("ints01", _POSITIVE.astype(np.int64))]})
entry("metrics", "metrics.tpr_at_fpr(fpr)", lambda w, fpr: metrics.tpr_at_fpr(_SCORES, _POSITIVE, fpr),
      lambda w: {"fpr": 0.1},
      bad={"fpr": [("nan", NAN), ("negative", -0.1), ("above_one", 1.5), ("string", "0.1"), ("none", None)]},
      ok={"fpr": [("zero", 0), ("numpy", np.float32(0.5))]})

entry("metrics", "calibration.fit_temperature",
      lambda w, logits, labels, bounds, iterations: calibration.fit_temperature(
          logits, labels, bounds=bounds, iterations=iterations),
      lambda w: {"logits": _LOGITS, "labels": _LABELS, "bounds": (1e-3, 1e6), "iterations": 10},
      bad={"logits": _BAD_LOGITS, "labels": bad_labels(),
           "bounds": [("reversed", (2.0, 1.0)), ("zero", (0.0, 1.0)), ("short", (1.0,)), ("nan", (NAN, 1.0)),
                      ("string", "ab")],
           "iterations": BAD_COUNTS},
      ok={"logits": [("list", _LOGITS.tolist())], "labels": [("list", _LABELS.tolist())], "iterations": OK_COUNTS})

# --- attacks ----------------------------------------------------------------------------------

_UNIT = np.random.default_rng(4).uniform(0.1, 0.9, size=(N, 2)).astype(np.float32)
_TARGETS = [kv for kv in BAD_CLASS if kv[0] != "vector"] + [("length", np.array([0, 1])),
                                                              ("rank2", np.zeros((1, N), np.int32)),
                                                              ("float_array", np.zeros(N, np.float32))]
_OK_TARGETS = OK_CLASS + [("array", _LABELS), ("list", _LABELS.tolist())]

entry("attacks", "confidence_attack",
      lambda w, logits_fn, x0, target, optimizer, max_steps, threshold, bounds: attacks.confidence_attack(
          logits_fn, x0, target, optimizer=optimizer, max_steps=max_steps, threshold=threshold, bounds=bounds),
      lambda w: {"logits_fn": w.logits_fn, "x0": _UNIT, "target": 1, "optimizer": ADAM, "max_steps": 2,
                 "threshold": 0.99, "bounds": (0.0, 1.0)},
      bad={"logits_fn": [("none", None), ("string", "fnn")], "x0": bad_batches(_UNIT) + [("outside", _UNIT + 1.0)],
           "target": _TARGETS, "optimizer": [("string", "adam"), ("none", None)], "max_steps": BAD_COUNTS,
           "threshold": BAD_PROBABILITY, "bounds": BAD_BOUNDS},
      ok={"x0": [("list", _UNIT.tolist()), ("float64", _UNIT.astype(np.float64))], "target": _OK_TARGETS,
          "max_steps": OK_COUNTS, "bounds": [("list", [0, 1])]})
entry("attacks", "likelihood_attack",
      lambda w, fn, x0, target, log_prior, steps, threshold: attacks.likelihood_attack(
          fn, x0, target, log_prior=log_prior, steps=steps, threshold=threshold),
      lambda w: {"fn": w.cll_fn, "x0": _TAB_X, "target": 1, "log_prior": None, "steps": 2, "threshold": 0.99},
      bad={"x0": [kv for kv in bad_batches(_TAB_X) if kv[0] in ("nan", "strings", "empty", "features")],
           "target": _TARGETS[:3], "steps": BAD_COUNTS,
           "log_prior": [("shape", np.zeros(K + 1)), ("nan", np.full(K, NAN)), ("strings", np.zeros(K).astype(str))],
           "threshold": BAD_PROBABILITY[:3]},
      names={"fn": "class_log_likelihoods_fn"},
      ok={"log_prior": [("list", [-1.0986] * K)]})
entry("attacks", "latent_attack",
      lambda w, encode_fn, decode_fn, x0, target, max_steps: attacks.latent_attack(
          w.logits_fn, encode_fn, decode_fn, x0, target, max_steps=max_steps),
      lambda w: {"encode_fn": w.encode_fn, "decode_fn": w.decode_fn, "x0": _TAB_X, "target": 1, "max_steps": 2},
      bad={"encode_fn": [("none", None)], "decode_fn": [("none", None)],
           "x0": [kv for kv in bad_batches(_TAB_X) if kv[0] in ("nan", "strings")], "target": _TARGETS[:2],
           "max_steps": BAD_COUNTS[:3]})
entry("attacks", "pgd_trajectories",
      lambda w, x0, label, eps, step_size, steps, norm, key, bounds: attacks.pgd_trajectories(
          w.logits_fn, x0, label, eps=eps, step_size=step_size, steps=steps, norm=norm, key=key, bounds=bounds),
      lambda w: {"x0": _UNIT, "label": _LABELS, "eps": 0.1, "step_size": 0.05, "steps": 2, "norm": "linf",
                 "key": jax.random.key(0), "bounds": (0.0, 1.0)},
      bad={"x0": [kv for kv in bad_batches(_UNIT) if kv[0] in ("nan", "strings", "empty", "rank_low", "complex")]
           + [("outside", _UNIT - 1.0)],
           "label": _TARGETS[:4], "eps": BAD_POSITIVE, "step_size": BAD_POSITIVE, "steps": BAD_COUNTS,
           "norm": [("unknown", "l1"), ("none", None)], "key": BAD_KEYS, "bounds": BAD_BOUNDS[:2]},
      ok={"key": OK_KEYS[1:], "label": _OK_TARGETS[:3]}, errors={"key": KEY_ERRORS})
entry("attacks", "fgsm_trajectories",
      lambda w, x0, label, eps, norm: attacks.fgsm_trajectories(w.logits_fn, x0, label, eps=eps, norm=norm),
      lambda w: {"x0": _UNIT, "label": 0, "eps": 0.1, "norm": "linf"},
      bad={"eps": BAD_POSITIVE, "x0": [("nan", _with(_UNIT, 0, NAN))], "label": _TARGETS[:2],
           "norm": [("unknown", "linfinity")]})
entry("attacks", "pgd_step",
      lambda w, x, grad, origin, eps, step_size, norm: attacks.pgd_step(
          x, grad, origin, eps=eps, step_size=step_size, norm=norm),
      lambda w: {"x": jnp.asarray(_UNIT), "grad": jnp.ones((N, 2)), "origin": jnp.asarray(_UNIT), "eps": 0.1,
                 "step_size": 0.05, "norm": "linf"},
      bad={"grad": [("shape", jnp.ones((N, 3))), ("strings", np.ones((N, 2)).astype(str))],
           "origin": [("shape", jnp.ones((N + 1, 2)))], "x": [("strings", _UNIT.astype(str))],
           "norm": [("unknown", "l1")], "eps": [("string", "0.1")], "step_size": [("string", "0.1")]})
entry("attacks", "pgd_random_start",
      lambda w, key, x0, eps, norm: attacks.pgd_random_start(key, x0, eps=eps, norm=norm),
      lambda w: {"key": jax.random.key(0), "x0": jnp.asarray(_UNIT), "eps": 0.1, "norm": "linf"},
      bad={"key": BAD_KEYS, "x0": [("strings", _UNIT.astype(str)), ("rank_low", _UNIT[0]), ("none", None)],
           "norm": [("unknown", "l1")], "eps": [("string", "0.1")]},
      ok={"key": OK_KEYS, "x0": [("list", _UNIT.tolist())]},
      errors={"key": KEY_ERRORS})

# --- robustness ---------------------------------------------------------------------------------

_ROBUST_X = [kv for kv in bad_batches(_UNIT) if kv[0] in ("nan", "strings", "empty", "rank_low", "bool", "none")]
entry("robustness", "pgd_robust_accuracy",
      lambda w, x, labels, eps, steps, step_size, restarts, loss, norm, key, bounds, batch_size:
      robustness.pgd_robust_accuracy(w.logits_fn, x, labels, eps=eps, steps=steps, step_size=step_size,
                                     restarts=restarts, loss=loss, norm=norm, key=key, bounds=bounds,
                                     batch_size=batch_size),
      lambda w: {"x": _UNIT, "labels": _LABELS, "eps": 0.1, "steps": 2, "step_size": None, "restarts": 1,
                 "loss": "margin", "norm": "linf", "key": jax.random.key(0), "bounds": (0.0, 1.0), "batch_size": 2},
      bad={"x": _ROBUST_X + [("raw_0_255", _UNIT * 255)], "labels": _TARGETS[:4] + [("length", _LABELS[:2])],
           "eps": BAD_POSITIVE, "steps": BAD_COUNTS, "step_size": BAD_POSITIVE[:5], "restarts": BAD_COUNTS,
           "loss": [("unknown", "hinge")], "norm": [("unknown", "l1")], "key": BAD_KEYS + [("missing", None)],
           "bounds": BAD_BOUNDS, "batch_size": BAD_COUNTS},
      ok={"labels": _OK_TARGETS[:3], "batch_size": OK_COUNTS, "key": OK_KEYS[1:]},
      errors={"key": (TypeError, ValueError)})
entry("robustness", "fgsm_robust_accuracy",
      lambda w, x, labels, eps, batch_size: robustness.fgsm_robust_accuracy(w.logits_fn, x, labels, eps=eps,
                                                                            batch_size=batch_size),
      lambda w: {"x": _UNIT, "labels": _LABELS, "eps": 0.1, "batch_size": 4},
      bad={"eps": BAD_POSITIVE, "batch_size": BAD_COUNTS[:3], "x": _ROBUST_X[:2], "labels": _TARGETS[:2]})
entry("robustness", "random_search_robust_accuracy",
      lambda w, x, labels, eps, queries, key, p_init: robustness.random_search_robust_accuracy(
          w.logits_fn, x, labels, eps=eps, queries=queries, key=key, p_init=p_init),
      lambda w: {"x": _UNIT, "labels": _LABELS, "eps": 0.1, "queries": 3, "key": jax.random.key(0), "p_init": 0.05},
      bad={"queries": BAD_COUNTS, "p_init": [("zero", 0.0), ("above_one", 1.5), ("nan", NAN), ("string", "0.1")],
           "key": BAD_KEYS + [("none", None)], "eps": BAD_POSITIVE[:3], "x": _ROBUST_X[:2]},
      errors={"key": (TypeError,)})
entry("robustness", "clean_accuracy",
      lambda w, x, labels, batch_size: robustness.clean_accuracy(w.logits_fn, x, labels, batch_size=batch_size),
      lambda w: {"x": _UNIT, "labels": _LABELS, "batch_size": 2},
      bad={"x": _ROBUST_X, "labels": _TARGETS[:4], "batch_size": BAD_COUNTS},
      ok={"x": [("list", _UNIT.tolist())], "labels": [("list", _LABELS.tolist())]})
entry("robustness", "sanity_checks",
      lambda w, key, tolerance, steps: robustness.sanity_checks(
          w.logits_fn, _UNIT, _LABELS, eps=0.1, key=key, steps=steps, queries=2, tolerance=tolerance),
      lambda w: {"key": jax.random.key(0), "tolerance": 0.02, "steps": 1},
      bad={"key": BAD_KEYS + [("none", None)], "tolerance": [("nan", NAN), ("negative", -0.1), ("string", "0.1")],
           "steps": BAD_COUNTS[:3]},
      errors={"key": (TypeError,)})

# --- generation, manifold, invariance, averaging, sharding ---------------------------------------

entry("generation", "class_samples",
      lambda w, key, n, temperature: generation.class_samples(w.tab, w.tv, key, n, temperature=temperature),
      lambda w: {"key": jax.random.key(0), "n": 2, "temperature": 1.0},
      bad={"key": BAD_KEYS, "n": BAD_COUNTS, "temperature": [("negative", -1.0), ("nan", NAN), ("inf", INF),
                                                             ("string", "1"), ("none", None)]},
      ok={"key": OK_KEYS, "n": OK_COUNTS}, errors={"key": KEY_ERRORS})
entry("generation", "interpolate",
      lambda w, x_a, x_b, n: generation.interpolate(w.tab, w.tv, x_a, x_b, n),
      lambda w: {"x_a": _TAB_X[0], "x_b": _TAB_X[1], "n": 3},
      bad={"n": BAD_COUNTS + [("one", 1)], "x_a": [("features", np.zeros(3, np.float32)), ("nan", np.full(2, NAN)),
                                                   ("strings", _TAB_X[0].astype(str)), ("none", None)],
           "x_b": [("shape", _TAB_X[:2]), ("inf", np.full(2, INF))]},
      ok={"x_a": [("list", _TAB_X[0].tolist())], "n": OK_COUNTS})
entry("generation", "prototypes", lambda w, variables: generation.prototypes(w.tab, variables),
      lambda w: {"variables": w.tv}, bad={"variables": [("none", None), ("string", "v")]})
entry("generation", "image_grid", lambda w, images: generation.image_grid(images),
      lambda w: {"images": np.zeros((2, 3, 4, 4, 1), np.float32)},
      bad={"images": [("rank3", np.zeros((2, 4, 4))), ("strings", np.zeros((2, 3, 4, 4)).astype(str)),
                      ("none", None), ("empty", np.zeros((0, 3, 4, 4)))]},
      ok={"images": [("list", np.zeros((1, 1, 2, 2)).tolist())]})

def _abs_log_density(x):
    return -np.abs(x[:, 0])


_PATH = np.array([[0.0, 0.0], [-1.0, -2.0], [-2.0, -2.0]])  # (T + 1, n)
entry("manifold", "manifold_threshold",
      lambda w, reference_log_density, percentile: manifold.manifold_threshold(reference_log_density, percentile),
      lambda w: {"reference_log_density": np.arange(10.0), "percentile": 1.0},
      bad={"reference_log_density": [("nan", _with(np.arange(10.0), 0, NAN)), ("empty", np.zeros(0)),
                                     ("strings", np.arange(3).astype(str)), ("rank2", np.zeros((2, 2))),
                                     ("none", None)],
           "percentile": [("above", 101.0), ("nan", NAN), ("string", "1"), ("none", None)]},
      ok={"reference_log_density": [("list", [1.0, 2.0, 3.0])]})
entry("manifold", "path_log_density",
      lambda w, inputs, num_steps, log_density_fn: manifold.path_log_density(inputs, num_steps, log_density_fn),
      lambda w: {"inputs": np.zeros((3, 2, 1)), "num_steps": np.array([1, 2]),
                 "log_density_fn": _abs_log_density},
      bad={"inputs": [("rank1", np.zeros(3)), ("strings", np.zeros((3, 2, 1)).astype(str)), ("none", None)],
           "num_steps": [("negative", np.array([-1, 2])), ("above_T", np.array([1, 3])),
                         ("float", np.array([1.0, 2.0])), ("length", np.array([1])), ("none", None)],
           "log_density_fn": [("none", None)]})
entry("manifold", "on_manifold_fraction",
      lambda w, log_density_path, num_steps, threshold: manifold.on_manifold_fraction(
          log_density_path, num_steps, threshold),
      lambda w: {"log_density_path": _PATH, "num_steps": np.array([2, 1]), "threshold": -1.5},
      bad={"log_density_path": [("strings", _PATH.astype(str)), ("rank1", _PATH[0]), ("none", None)],
           "num_steps": [("length", np.array([2])), ("negative", np.array([-1, 1])), ("float", np.array([2.0, 1.0]))],
           "threshold": [("nan", NAN), ("string", "-1.5"), ("none", None)]})
entry("manifold", "nearest_distance",
      lambda w, points, reference, chunk: manifold.nearest_distance(points, reference, chunk=chunk),
      lambda w: {"points": np.zeros((3, 2)), "reference": np.ones((5, 2)), "chunk": 2},
      bad={"points": [("features", np.zeros((3, 3))), ("strings", np.zeros((3, 2)).astype(str)),
                      ("nan", np.full((3, 2), NAN)), ("none", None)],
           "reference": [("empty", np.zeros((0, 2))), ("nan", np.full((5, 2), NAN))], "chunk": BAD_COUNTS},
      ok={"points": [("list", [[0.0, 0.0]])]})
entry("manifold", "summarize_paths",
      lambda w, threshold, select, reference: manifold.summarize_paths(
          w.attack_result, w.log_p_path, threshold=threshold, reference=reference, select=select),
      lambda w: {"threshold": -1.0, "select": None, "reference": np.zeros((2, 2))},
      bad={"threshold": [("nan", NAN), ("string", "a")], "select": [("length", np.ones(2, bool)),
                                                                  ("empty_selection", np.zeros(N, bool))],
           "reference": [("features", np.zeros((2, 3))), ("none", None)]})

entry("invariance", "shift_logits",
      lambda w, x, shifts, batch_size: invariance.shift_logits(w.img.apply, w.iv, x, shifts, batch_size=batch_size),
      lambda w: {"x": _IMAGES, "shifts": [(0, 0)], "batch_size": 4},
      bad={"x": [("rank3", _IMAGES[..., 0]), ("nan", _with(_IMAGES, 0, NAN)), ("strings", _IMAGES.astype(str)),
                 ("empty", _IMAGES[:0]), ("none", None)] + bad_pixels(_IMAGES),
           "shifts": [("empty", []), ("scalar_pairs", [1]), ("string", "ab"), ("float", [(1.5, 0)]), ("none", None)],
           "batch_size": BAD_COUNTS},
      ok={"x": [("list", _IMAGES.tolist())]})
entry("invariance", "marginalise_shifts", lambda w, per_shift_logits: invariance.marginalise_shifts(per_shift_logits),
      lambda w: {"per_shift_logits": np.zeros((2, N, K))},
      bad={"per_shift_logits": [("empty", np.zeros((0, N, K))), ("strings", np.zeros((2, N, K)).astype(str)),
                                ("rank2", np.zeros((2, K))), ("nan", np.full((2, N, K), NAN)), ("none", None)]})
entry("invariance", "rule_logits",
      lambda w, rules: invariance.rule_logits(w.img.apply, w.iv, _IMAGES, rules=rules, batch_size=4),
      lambda w: {"rules": ("plain",)},
      bad={"rules": [("unknown", ("best",)), ("empty", ()), ("repeated", ("plain", "plain")), ("none", None),
                     ("string", "plain")]},
      ok={"rules": [("list", ["plain"])]})
entry("invariance", "decision_rule_metrics",
      lambda w, x_val, y_val, from_step, batch_size: invariance.decision_rule_metrics(
          x_val, y_val, from_step=from_step, batch_size=batch_size),
      lambda w: {"x_val": _IMAGES, "y_val": _LABELS, "from_step": 0, "batch_size": 4},
      bad={"x_val": [("rank3", _IMAGES[..., 0]), ("nan", _with(_IMAGES, 0, NAN)), ("raw_0_255", _IMAGES * 255),
                     ("strings", _IMAGES.astype(str))],
           "y_val": [("float", _LABELS.astype(np.float32)), ("length", _LABELS[:2]), ("minus_one", -np.ones(N, int))],
           "from_step": [("negative", -1), ("float", 2.0), ("none", None)], "batch_size": BAD_COUNTS},
      ok={"y_val": [("list", _LABELS.tolist())], "x_val": [("list", _IMAGES.tolist())]})
entry("invariance", "selected_rule", lambda w, metrics_at_best: invariance.selected_rule(metrics_at_best),
      lambda w: {"metrics_at_best": {"plain_rule_accuracy": 0.9}},
      bad={"metrics_at_best": [("missing", {}), ("none", None), ("string", "plain"),
                               ("not_number", {"plain_rule_accuracy": "high"})]})

entry("averaging", "params_ema", lambda w, decay: averaging.params_ema(decay), lambda w: {"decay": 0.9},
      bad={"decay": [("one", 1.0), ("negative", -0.1), ("nan", NAN), ("string", "0.9"), ("none", None)]},
      ok={"decay": [("zero", 0), ("numpy", np.float32(0.5))]})
entry("averaging", "averaged_params", lambda w, opt_state: averaging.averaged_params(opt_state),
      lambda w: {"opt_state": optax.chain(optax.sgd(0.1), averaging.params_ema(0.9)).init({"w": jnp.ones(2)})},
      bad={"opt_state": [("no_ema", optax.sgd(0.1).init({"w": jnp.ones(2)}))]})

entry("sharding", "data_mesh", lambda w, devices: sharding.data_mesh(devices), lambda w: {"devices": None},
      bad={"devices": [("empty", []), ("string", "cpu"), ("ints", [0, 1])]},
      ok={"devices": [("list", jax.devices()), ("tuple", tuple(jax.devices()))]})
entry("sharding", "check_divisible", lambda w, batch_size, mesh: sharding.check_divisible(batch_size, mesh),
      lambda w: {"batch_size": 8, "mesh": sharding.data_mesh()},
      bad={"batch_size": BAD_COUNTS, "mesh": [("string", "mesh"), ("none", None)]},
      ok={"batch_size": OK_COUNTS})

# --- data helpers -------------------------------------------------------------------------------

_DX = np.random.default_rng(5).normal(size=(10, 2)).astype(np.float32)
_DY = (np.arange(10) % 2).astype(np.int32)
entry("data", "train_val_split",
      lambda w, x, y, val_fraction, seed: data_split.train_val_split(x, y, val_fraction=val_fraction, seed=seed),
      lambda w: {"x": _DX, "y": _DY, "val_fraction": 0.2, "seed": 0},
      bad={"x": [("none", None), ("scalar", 1.0), ("empty", _DX[:0])], "y": [("length", _DY[:5]), ("none", None)],
           "val_fraction": [("zero", 0.0), ("one", 1.0), ("nan", NAN), ("string", "0.2"), ("none", None),
                            ("tiny", 1e-6)],
           "seed": [("string", "a"), ("float", 1.5)]},
      ok={"x": [("list", _DX.tolist())], "y": [("list", _DY.tolist())], "seed": [("int64", np.int64(1))]})
entry("data", "balanced_label_subset",
      lambda w, y, n_labels, num_classes: data_labels.balanced_label_subset(y, n_labels, num_classes=num_classes),
      lambda w: {"y": _DY, "n_labels": 4, "num_classes": None},
      bad={"y": [("float", _DY.astype(np.float32)), ("rank2", _DY[None]), ("minus_one", _with(_DY, 0, -1)),
                 ("empty", _DY[:0]), ("strings", _DY.astype(str))],
           "n_labels": BAD_COUNTS + [("not_multiple", 3)],
           "num_classes": [("zero", 0), ("negative", -1), ("float", 2.5), ("too_few", 1), ("string", "2")]},
      ok={"y": [("list", _DY.tolist())], "n_labels": [("int64", np.int64(4))], "num_classes": [("int64", np.int64(2))]})
entry("data", "hide_labels", lambda w, y, keep: data_labels.hide_labels(y, keep), lambda w: {"y": _DY, "keep": [0, 2]},
      bad={"y": [("rank2", _DY[None]), ("float", _DY.astype(np.float32)), ("none", None)],
           "keep": [("out_of_range", [0, 10]), ("float", [0.5]), ("strings", ["a"]), ("negative", [-11])]},
      ok={"keep": [("array", np.array([1])), ("empty", [])], "y": [("list", _DY.tolist())]})
entry("data", "make_moons",
      lambda w, n_samples, noise, random_state: data_moons.make_moons(n_samples, noise, random_state),
      lambda w: {"n_samples": 10, "noise": 0.1, "random_state": 0},
      bad={"n_samples": BAD_COUNTS, "noise": [("negative", -1.0), ("nan", NAN), ("inf", INF), ("string", "0.1"),
                                              ("none", None)],
           "random_state": [("string", "a"), ("float", 1.5)]},
      ok={"n_samples": OK_COUNTS, "noise": [("zero", 0.0)]})
entry("data", "moons_splits",
      lambda w, noise, n_samples, n_train: data_moons.moons_splits(noise, n_samples=n_samples, n_train=n_train),
      lambda w: {"noise": 0.1, "n_samples": 20, "n_train": 10},
      bad={"noise": [("nan", NAN), ("negative", -0.1)], "n_samples": [("zero", 0), ("float", 20.0)],
           "n_train": [("zero", 0), ("all", 20), ("above", 30), ("float", 10.0), ("negative", -5)]})
for _name in ("moons_class_log_density", "moons_log_density", "bayes_predict"):
    entry("data", _name,
          lambda w, x, noise, num_nodes, _n=_name: getattr(data_moons, _n)(x, noise, num_nodes=num_nodes),
          lambda w: {"x": _DX, "noise": 0.1, "num_nodes": 16},
          bad={"x": [kv for kv in bad_batches(_DX) if kv[0] != "integers"], "noise": [("zero", 0.0), ("nan", NAN),
                                                                                      ("string", "0.1")],
               "num_nodes": BAD_COUNTS[:4]},
          ok={"x": [("list", _DX.tolist()), ("ints", np.zeros((2, 2), np.int64))], "num_nodes": OK_COUNTS})
entry("data", "bayes_labels", lambda w, x, noise, num_nodes: data_moons.bayes_labels(x, noise, num_nodes=num_nodes),
      lambda w: {"x": _DX, "noise": 0.1, "num_nodes": 16},
      bad={"x": [kv for kv in bad_batches(_DX) if kv[0] in ("nan", "strings", "empty", "features", "none")],
           "noise": [("nan", NAN), ("string", "0.1")], "num_nodes": [("zero", 0), ("float", 2.5), ("none", None)]})
entry("pixels", "image_pipeline",
      lambda w, shift, degrees, scale, num_bins: data_pixels.image_pipeline(
          dequantise=True, shift=shift, degrees=degrees, scale=scale, num_bins=num_bins),
      lambda w: {"shift": 1, "degrees": 0.0, "scale": 0.0, "num_bins": 256},
      bad={"shift": [("negative", -1), ("float", 1.5)], "degrees": [("nan", NAN), ("negative", -1.0)],
           "scale": [("one", 1.0)], "num_bins": [("one", 1), ("float", 2.5)]})

# --- experiment command line: python -m experiments.moons.main --config ... section.field=value ----


def _cli(w, overrides, config="default"):
    """``cli.parse`` as ``python -m experiments.moons.main`` runs it; a usage error becomes a ValueError
    carrying what the user sees on stderr (the outcome on the command line: exit status 2 and that message)."""
    err = io.StringIO()
    argv = ["--config", config, "--workdir", str(w.workdir / "run"), *overrides]
    try:
        with contextlib.redirect_stderr(err):
            return cli.parse(argv, description=None, configs="experiments.moons.configs")
    except SystemExit as exit_:
        if exit_.code == 2:
            raise ValueError(err.getvalue()) from None
        raise


_CLI_BAD = {
    "flow.train.epochs": [("zero", "0"), ("negative", "-1"), ("float", "2.0"), ("bool", "True"), ("none", "None"),
                          ("string", "many")],
    "flow.train.batch_size": [("zero", "0"), ("float", "64.0")],
    "flow.train.eval_batch_size": [("zero", "0")],
    "flow.train.max_steps_per_call": [("zero", "0")],
    "flow.optim.learning_rate": [("zero", "0"), ("negative", "-1e-3"), ("nan", "nan"), ("string", "fast")],
    "flow.model.num_couplings": [("zero", "0"), ("float", "2.5")],
    "flow.data.noise": [("negative", "-0.5"), ("string", "high")],
    "flow.seed": [("string", "a"), ("float", "1.5")],
    "seeds": [("empty", "()"), ("string", "abc")],
    "flow.train.nonexistent": [("unknown_field", "1")],
    "flow.nosuchsection.x": [("unknown_section", "1")],
}
for _field, _values in _CLI_BAD.items():
    for _kind, _text in _values:
        CASES.append(Case("cli", "experiments.moons.main", _field, _kind,
                          functools.partial(lambda a: _cli(world(), [a]), f"{_field}={_text}"), (_field,)))
CASES.append(Case("cli", "experiments.moons.main", "flow.train.epochs", "no_value",
                  functools.partial(lambda: _cli(world(), ["flow.train.epochs"])), ("flow.train.epochs",)))
CASES.append(Case("cli", "experiments.moons.main", "--config", "unknown_config",
                  functools.partial(lambda: _cli(world(), [], config="nosuchconfig")), ("--config",)))
CONTROLS.append(Case("cli", "experiments.moons.main", "-", "valid",
                     functools.partial(lambda: _cli(world(), ["flow.train.epochs=2", "seeds=(0, 1)"])), ()))


# --------------------------------------------------------------------------------------------
# Outcomes.
# --------------------------------------------------------------------------------------------


def names(message: str, arg: str) -> bool:
    """Whether ``message`` names ``arg`` as a word: ``x`` but not ``x0``; ``train.epochs`` in ``flow.train.epochs``."""
    return re.search(rf"(?<![\w]){re.escape(arg)}(?![\w])", message) is not None


def outcome(case: Case) -> tuple[str, str]:
    """``(clear | misleading | obscure | silent, message)`` of running ``case``."""
    try:
        case.call()
    except (ValueError, TypeError) as error:
        message = str(error)
        if isinstance(error, case.error) and names(message, case.arg):
            return "clear", message
        if any(names(message, p) for p in case.params if p != case.arg):
            return "misleading", f"{type(error).__name__}: {message}"
        return "obscure", f"{type(error).__name__}: {message}"
    except Exception as error:  # noqa: BLE001 - the census counts every other failure as obscure
        return "obscure", f"{type(error).__name__}: {error}"
    return "silent", ""


def _marks(case: Case):
    reason, ids = PENDING.get(case.group, ("", set()))
    return [pytest.mark.xfail(strict=False, reason=reason)] if case.id in ids else []


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=_marks(c)) for c in CASES])
def test_bad_input_raises_an_error_naming_the_argument(case):
    with pytest.raises(case.error) as info:
        case.call()
    assert names(str(info.value), case.arg), f"the message does not name {case.arg!r}: {info.value}"


@pytest.mark.parametrize("case", [pytest.param(c, id=f"{c.entry}-{c.arg}-{c.kind}", marks=_marks(c))
                                  for c in CONTROLS])
def test_valid_input_is_accepted(case):
    result = case.call()
    for leaf in jax.tree.leaves(result):
        if isinstance(leaf, (np.ndarray, jax.Array)) and jnp.issubdtype(leaf.dtype, jnp.inexact):
            assert bool(jnp.all(jnp.isfinite(jnp.asarray(leaf, jnp.float32)))) or case.entry.startswith(
                ("metrics.reliability", "manifold", "invariance.decision")), f"non-finite output of {case.entry}"


def test_image_presets_take_pixels_in_the_unit_box():
    for preset in ("fast", "multiscale"):
        assert fc.image_realnvp(preset, input_shape=(8, 8, 1), num_classes=K).input_bounds == (0.0, 1.0)
    assert world().tab.input_bounds is None and world().img.input_bounds == (0.0, 1.0)


def test_jitted_calls_check_shapes_but_not_values():
    """Under jit the arguments are tracers: shapes and dtypes are still checked, values are not (documented)."""
    w = world()
    predict = jax.jit(functools.partial(w.img.apply, method="predict"))
    with pytest.raises(ValueError, match="x must have shape"):
        predict(w.iv, _IMAGES[..., 0])
    assert predict(w.iv, _IMAGES * 255).shape == (N,)  # unchecked values: the eager boundary is the check


def test_the_table_is_at_least_as_large_as_the_issue():
    assert len(CASES) >= 339 and len(CONTROLS) >= 53


def census(show: bool = False) -> dict[str, dict[str, int]]:
    """Runs every case; prints and returns ``{group: {outcome: count}}`` (and the totals under ``'all'``)."""
    counts: dict[str, dict[str, int]] = {}
    kinds = ("clear", "obscure", "misleading", "silent")
    for case in CASES:
        result, message = outcome(case)
        for group in (case.group, "all"):
            counts.setdefault(group, dict.fromkeys(kinds, 0))[result] += 1
        if show and result != "clear":
            print(f"  {result:10s} {case.id}: {message[:160]!r}")
    failed_controls = []
    for case in CONTROLS:
        try:
            case.call()
        except Exception as error:  # noqa: BLE001
            failed_controls.append(f"{case.entry}-{case.arg}-{case.kind}: {type(error).__name__}: {str(error)[:120]}")
    print(f"{'group':12s} {'cases':>6s} " + " ".join(f"{k:>10s}" for k in kinds))
    for group, row in sorted(counts.items(), key=lambda item: item[0] == "all"):
        print(f"{group:12s} {sum(row.values()):6d} " + " ".join(f"{row[k]:10d}" for k in kinds))
    print(f"valid controls: {len(CONTROLS)}, failing: {len(failed_controls)}")
    for line in failed_controls:
        print("  control fails:", line)
    return counts


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments.moons.configs
    census(show="--show" in sys.argv)
