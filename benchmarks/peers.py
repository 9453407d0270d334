"""flowclass next to the peer flow libraries (flowjax, distrax, zuko, normflows) on the moons RealNVP.

    python benchmarks/peers.py                          # full run: 3 rounds, ~4 min on a 2-core CPU
    python benchmarks/peers.py --quick                  # smoke-test sizes, ~1 min
    python benchmarks/peers.py --libraries flowclass,flowjax --out /tmp/peers

One model, built by each library: 5 affine couplings with alternating halves, conditioners
2 → 100 → 100 → outputs (ReLU), a standard-normal base shifted to the class means ((-4, 0), (4, 0)),
trained on flowclass's class-conditional NLL ``−mean log p(x | y)`` with Adam 1e-3 at batch 128.
Per library, in fresh subprocesses (``peers.py --worker``): the jitted train step (eager for the
PyTorch libraries), 100 steps inside one compiled ``lax.scan`` (JAX libraries), ``log p(x | k)`` for
200,000 points, and the library's own training function for 20 epochs of 8,500 points (flowclass's
``fit``, flowjax's ``fit_to_data``), compile included. Every library is measured ``--rounds`` times, the
libraries in a rotated order each round, and each column reports the median over the rounds. Then, in one
more process, the JAX libraries' steps and loops are timed interleaved, call by call in a random order
(``peers.py --worker`` with ``parts: ['interleaved']``): every library then meets the same machine state,
which the rounds of separate processes do not (one full run's step ratios moved by ±5 % from round to
round, another's by ±1.5 %). Writes
``peers.json`` and ``peers.md`` to
``--out``; progress goes to stderr. benchmarks/README.md ("Peer flow libraries") says what each
library forces to differ.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from flowclass.runtime import has_avx512

import run  # benchmarks/run.py: worker environments, subprocess runner, versions, synthetic batches

HERE = Path(__file__).resolve().parent
LIBRARIES = ("flowclass", "flowjax", "distrax", "zuko", "normflows")
JAX_LIBRARIES = ("flowclass", "flowjax", "distrax")
FIT_LIBRARIES = ("flowclass", "flowjax")  # those with a training function of their own
PACKAGES = ("flowclass", "jax", "jaxlib", "flax", "optax", "torch", "flowjax", "equinox", "distrax", "tfp-nightly",
            "zuko", "normflows")
NUM_FEATURES, NUM_COUPLINGS, HIDDEN, BATCH, LEARNING_RATE = 2, 5, (100, 100), 128, 1e-3
MOONS_NOISE = 0.1
FULL = {"warmup": 2, "repeats": 5, "min_seconds": 2.0, "scan_steps": 100, "infer_points": 200_000,
        "fit_epochs": 20, "fit_train": 8_500, "fit_val": 944}
QUICK = {"warmup": 1, "repeats": 2, "min_seconds": 0.2, "scan_steps": 10, "infer_points": 20_000,
         "fit_epochs": 2, "fit_train": 8_500, "fit_val": 944}

# What each library's model is, for the table (benchmarks/README.md has the details).
MODELS = {
    "flowclass": "`tabular_realnvp`: masked coupling, log-scale a·tanh(ŝ) (learnt a)",
    "flowjax": "`coupling_flow` + `Affine` with scale exp(tanh(ŝ)) (a = 1, fixed); split halves + `Flip`",
    "distrax": "`MaskedCoupling` + `ScalarAffine`, Flax conditioners, log-scale a·tanh(ŝ) (learnt a)",
    "zuko": "`flows.RealNVP`: its `MonotonicAffineTransform` (log-scale ŝ / (1 + abs(ŝ) / 6.9)); split halves",
    "normflows": "`AffineCouplingBlock` ('exp' scale; a·tanh(ŝ) in the param map, learnt a); split halves",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke-test sizes: few timed calls, 10 steps per loop, "
                   "20,000 inference points, 2 training epochs")
    p.add_argument("--out", type=Path, default=HERE / "results", help="output directory (default benchmarks/results)")
    p.add_argument("--libraries", default=",".join(LIBRARIES), help=f"comma-separated subset of {','.join(LIBRARIES)}")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads of the PyTorch libraries")
    p.add_argument("--malloc", choices=("auto", "tcmalloc", "system"), default="auto",
                   help="allocator of every measuring process (as run.py): tcmalloc when installed, by default")
    p.add_argument("--codegen", choices=("fast", "default"), default="fast",
                   help="XLA CPU code generation of every JAX library's process alike (as run.py's flowclass rows): "
                   "flowclass.runtime.fast_codegen_flags() (default), or XLA's defaults")
    p.add_argument("--rounds", type=int, default=None,
                   help="measure every library this many times, the libraries in a rotated order each round, and "
                   "report each column's median over the rounds (default 3; 1 with --quick): the machine's speed "
                   "drifts while the libraries run one after another")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: one library, JSON spec
    args = p.parse_args(argv)
    args.libraries = list(dict.fromkeys(name.strip() for name in args.libraries.split(",") if name.strip()))
    unknown = [name for name in args.libraries if name not in LIBRARIES]
    if not args.libraries or unknown:
        p.error(f"--libraries must be a subset of {','.join(LIBRARIES)}; got {args.libraries}")
    if args.threads < 1:
        p.error(f"--threads must be >= 1; got {args.threads}")
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.rounds < 1:
        p.error(f"--rounds must be >= 1; got {args.rounds}")
    return args


# --- the measurement, in a worker process -----------------------------------------------------------


class JaxPeer(NamedTuple):
    """A JAX library's model: ``step(carry, (x, y)) -> (carry, aux)`` (one Adam step on the loss),
    ``log_likelihoods(params, x) -> (N, K)``, ``params(carry)``, the trainable parameter count, and
    ``fit(train, val, epochs) -> (seconds, final validation NLL)`` for a library with a training function."""

    carry: Any
    step: Callable
    log_likelihoods: Callable
    params: Callable
    num_params: int
    fit: Callable | None


def class_means() -> np.ndarray:
    """The moons flow's class means in flowclass's latent order, ``(K, D)``."""
    import measure_jax

    return np.asarray(measure_jax.MOONS_MEANS, np.float32)


def nll(log_likelihoods, y):
    """``−mean_i log p(x_i | y_i)`` from ``(N, K)`` class log-likelihoods (jax or torch arrays)."""
    if hasattr(log_likelihoods, "gather"):  # torch
        return -log_likelihoods.gather(1, y[:, None]).mean()
    import jax.numpy as jnp

    return -jnp.mean(jnp.take_along_axis(log_likelihoods, y[:, None], axis=-1))


def moons(cfg: dict) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``make_moons`` training and validation points for the training functions (noise 0.1)."""
    from flowclass.data import make_moons

    x, y = make_moons(cfg["fit_train"] + cfg["fit_val"], noise=MOONS_NOISE, random_state=0)
    return (x[: cfg["fit_train"]], y[: cfg["fit_train"]]), (x[cfg["fit_train"]:], y[cfg["fit_train"]:])


def _optax_step(loss: Callable, tx) -> Callable:
    """An Adam step ``((params, opt_state), (x, y)) -> ((params, opt_state), loss)`` on ``loss(params, x, y)``."""
    import jax
    import optax

    def step(carry, batch):
        params, opt_state = carry
        value, grads = jax.value_and_grad(loss)(params, *batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    return step


def _count(tree) -> int:
    import jax

    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def flowclass_peer(x: np.ndarray) -> JaxPeer:
    """flowclass's own moons flow, loss, optimiser and ``train_step`` (as ``measure_jax``), and ``fc.fit``."""
    import jax

    import flowclass as fc

    import measure_jax

    model, loss_fn, tx = measure_jax.build("moons_flow", NUM_COUPLINGS)
    state = fc.create_train_state(model, jax.random.key(0), x[:1], tx, loss_fn)

    def log_likelihoods(variables, x):
        return model.apply(variables, x, method="class_log_likelihoods")

    def fit(train, val, epochs):
        start = fc.create_train_state(model, jax.random.key(0), train[0][:1], tx, loss_fn)
        t0 = time.perf_counter()
        result = fc.fit(start, train, val, key=jax.random.key(1), progress=False,
                        config=fc.TrainConfig(epochs=epochs, batch_size=BATCH))
        jax.block_until_ready(result.state)
        return time.perf_counter() - t0, float(result.history["val_nll"][-1])

    return JaxPeer(state, fc.train_step, log_likelihoods, lambda s: s.variables, _count(state.params), fit)


def _log_scale_to_scale(raw):
    import jax.numpy as jnp

    return jnp.exp(jnp.tanh(raw))


def flowjax_peer(x: np.ndarray) -> JaxPeer:
    """flowjax's ``coupling_flow`` with an ``Affine`` transformer whose scale is ``exp(tanh(ŝ))``, conditioners
    ``eqx.nn.MLP`` of width 100 and depth 2 (last layers zeroed, so the flow starts as the identity), its
    ``StandardNormal`` base, its ``train.step`` and ``fit_to_data``."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax
    import paramax
    from flowjax.bijections import Affine, Coupling
    from flowjax.distributions import StandardNormal
    from flowjax.flows import coupling_flow
    from flowjax.train import fit_to_data
    from flowjax.train import step as flowjax_step

    transformer = eqx.tree_at(lambda a: a.scale, Affine(), paramax.Parameterize(_log_scale_to_scale, jnp.zeros(())))
    flow = coupling_flow(jax.random.key(0), base_dist=StandardNormal((NUM_FEATURES,)), transformer=transformer,
                         flow_layers=NUM_COUPLINGS, nn_width=HIDDEN[0], nn_depth=len(HIDDEN), invert=True)

    def last_layers(tree):
        couplings = [m for m in jax.tree.leaves(tree, is_leaf=lambda m: isinstance(m, Coupling))
                     if isinstance(m, Coupling)]
        return [p for c in couplings for p in (c.conditioner.layers[-1].weight, c.conditioner.layers[-1].bias)]

    flow = eqx.tree_at(last_layers, flow, replace_fn=jnp.zeros_like)
    # Every coupling_flow layer ends with a Flip: after 5 layers the latent's two coordinates are swapped
    # relative to flowclass's, so the means are given swapped too (the same function as flowclass's model).
    means = jnp.asarray(class_means()[:, ::-1])
    params, static = eqx.partition(flow, eqx.is_inexact_array, is_leaf=lambda m: isinstance(m, paramax.NonTrainable))
    tx = optax.adam(LEARNING_RATE)

    def log_likelihoods(params, x, static=static):
        dist = paramax.unwrap(eqx.combine(params, static))
        z, log_det = jax.vmap(dist.bijection.inverse_and_log_det)(x)  # x -> z, as Transformed.log_prob does
        return dist.base_dist.log_prob(z[:, None, :] - means) + log_det[:, None]

    def loss(params, static, x, y, key=None):  # flowjax's loss signature: (params, static, *data, key)
        return nll(log_likelihoods(params, x, static), y)

    def step(carry, batch):  # flowjax's own step (an eqx.filter_jit, inlined under the outer jit)
        params, opt_state = carry
        params, opt_state, value = flowjax_step(params, static, *batch, optimizer=tx, opt_state=opt_state,
                                                loss_fn=loss)
        return (params, opt_state), value

    def fit(train, val, epochs):
        data = tuple(np.concatenate(pair) for pair in zip(train, val, strict=True))
        t0 = time.perf_counter()
        trained, losses = fit_to_data(jax.random.key(1), flow, data, loss_fn=loss, optimizer=optax.adam(LEARNING_RATE),
                                      max_epochs=epochs, max_patience=epochs, batch_size=BATCH,
                                      val_prop=len(val[0]) / len(data[0]), show_progress=False)
        jax.block_until_ready(eqx.filter(trained, eqx.is_array))
        return time.perf_counter() - t0, float(losses["val"][-1])

    return JaxPeer((params, tx.init(params)), step, log_likelihoods, lambda c: c[0], _count(params), fit)


def distrax_peer(x: np.ndarray) -> JaxPeer:
    """distrax's ``MaskedCoupling`` + ``ScalarAffine`` in a ``Chain``, with Flax Linen conditioners (built inside
    the module's ``__call__``), its ``MultivariateNormalDiag`` base; optax Adam. distrax has no training loop."""
    import distrax
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    class Conditioner(nn.Module):
        """``(shift, a · tanh(ŝ))`` from ``MLP(m ⊙ x)`` and a zero-initialised projection, as flowclass's coupling."""

        @nn.compact
        def __call__(self, masked_x):
            h = masked_x
            for width in HIDDEN:
                h = nn.relu(nn.Dense(width)(h))
            out = nn.Dense(2 * NUM_FEATURES, kernel_init=nn.initializers.zeros, name="zero_proj")(h)
            raw_log_scale, shift = jnp.split(out, 2, axis=-1)
            bound = self.param("log_scale_bound", nn.initializers.ones, (NUM_FEATURES,))
            return shift, bound * jnp.tanh(raw_log_scale)

    class DistraxRealNVP(nn.Module):
        @nn.compact
        def __call__(self, x):  # log p(x | k), (N, K)
            layers = [distrax.MaskedCoupling(mask=jnp.arange(NUM_FEATURES) % 2 == i % 2,  # True: kept, conditions
                                             conditioner=Conditioner(name=f"layers_{i}"),
                                             bijector=lambda p: distrax.ScalarAffine(shift=p[0], log_scale=p[1]))
                      for i in range(NUM_COUPLINGS)]
            flow = distrax.Chain(layers[::-1])  # a distrax Chain applies its last bijector first
            z, log_det = flow.forward_and_log_det(x)
            base = distrax.MultivariateNormalDiag(jnp.zeros(NUM_FEATURES), jnp.ones(NUM_FEATURES))
            return base.log_prob(z[:, None, :] - jnp.asarray(class_means())) + log_det[:, None]

    module = DistraxRealNVP()
    params = jax.jit(module.init)(jax.random.key(0), x[:1])["params"]
    tx = optax.adam(LEARNING_RATE)

    def log_likelihoods(params, x):
        return module.apply({"params": params}, x)

    step = _optax_step(lambda params, x, y: nll(log_likelihoods(params, x), y), tx)
    return JaxPeer((params, tx.init(params)), step, log_likelihoods, lambda c: c[0], _count(params), None)


def _torch_peer(name: str):
    """``(module with class_log_likelihoods(x) -> (N, K), number of trainable parameters)``."""
    import torch
    from torch import nn

    means = torch.as_tensor(class_means())
    if name == "zuko":
        import zuko

        class ZukoModel(nn.Module):
            """zuko's RealNVP (alternating masks, MLP hyper-networks, DiagNormal base); last layers zeroed."""

            def __init__(self):
                super().__init__()
                self.flow = zuko.flows.RealNVP(NUM_FEATURES, transforms=NUM_COUPLINGS, hidden_features=HIDDEN)
                for transform in self.flow.transform.transforms:
                    nn.init.zeros_(transform.hyper[-1].weight)
                    nn.init.zeros_(transform.hyper[-1].bias)
                self.register_buffer("means", means)

            def class_log_likelihoods(self, x):
                dist = self.flow()
                z, log_det = dist.transform.call_and_ladj(x)  # x -> z, as NormalizingFlow.log_prob does
                return dist.base.log_prob(z[:, None, :] - self.means) + log_det[:, None]

        model = ZukoModel()
    elif name == "normflows":
        import normflows as nf

        class BoundedParamMap(nn.Module):
            """normflows' MLP (zero-initialised last layer); its log-scale outputs mapped to ``a · tanh(ŝ)``."""

            def __init__(self):
                super().__init__()
                half = NUM_FEATURES // 2
                self.mlp = nf.nets.MLP([half, *HIDDEN, 2 * (NUM_FEATURES - half)], init_zeros=True)
                self.log_scale_bound = nn.Parameter(torch.ones(NUM_FEATURES - half))

            def forward(self, z1):
                out = self.mlp(z1)  # AffineCoupling reads shift = out[:, 0::2], log-scale = out[:, 1::2]
                log_scale = self.log_scale_bound * torch.tanh(out[:, 1::2])
                return torch.stack([out[:, 0::2], log_scale], dim=2).flatten(1)

        class NormflowsModel(nn.Module):
            def __init__(self):
                super().__init__()
                # log_prob runs flows[-1] first (in the inverse direction): alternate the conditioning half so
                # that the first coupling applied to x keeps x_0, as flowclass's first coupling does.
                flows = [nf.flows.AffineCouplingBlock(BoundedParamMap(), scale_map="exp",
                                                      split_mode="channel" if (NUM_COUPLINGS - 1 - i) % 2 == 0
                                                      else "channel_inv")
                         for i in range(NUM_COUPLINGS)]
                self.flow = nf.NormalizingFlow(nf.distributions.DiagGaussian(NUM_FEATURES, trainable=False), flows)
                self.register_buffer("means", means)

            def class_log_likelihoods(self, x):
                z, log_det = self.flow.inverse_and_log_det(x)  # x -> z, as NormalizingFlow.log_prob does
                shifted = (z[:, None, :] - self.means).reshape(-1, NUM_FEATURES)  # its log_prob takes (N, D)
                return self.flow.q0.log_prob(shifted).reshape(len(x), -1) + log_det[:, None]

        model = NormflowsModel()
    else:
        raise ValueError(f"unknown PyTorch library {name!r}")
    return model, sum(p.numel() for p in model.parameters() if p.requires_grad)


def _timing(spec: dict) -> dict:
    return {"warmup": spec["warmup"], "min_repeats": spec["repeats"], "min_seconds": spec["min_seconds"]}


def _data(spec: dict) -> dict[str, np.ndarray]:
    """The batch (``run.make_batch``: N(0, 1) points, random labels), ``scan_steps`` more batches, inference points."""
    x, y = run.make_batch("moons_flow", BATCH)
    xs, ys = run.make_batch("moons_flow", spec["scan_steps"] * BATCH, seed=1)
    points, _ = run.make_batch("moons_flow", spec["infer_points"], seed=2)
    return {"x": x, "y": y, "xs": xs.reshape(spec["scan_steps"], BATCH, -1), "ys": ys.reshape(spec["scan_steps"], -1),
            "points": points}


JAX_PEERS = {"flowclass": flowclass_peer, "flowjax": flowjax_peer, "distrax": distrax_peer}


class CompiledPeer:
    """A JAX peer's train step and ``lax.scan`` loop over ``batches``, both compiled with the carry donated;
    :meth:`step` and :meth:`loop` each run one call and keep the new carry in :attr:`carry`.
    ``compile_s``: the step's lowering and compilation, in seconds."""

    def __init__(self, peer: JaxPeer, batch: tuple, batches: tuple):
        import jax

        start = time.perf_counter()
        self._step = jax.jit(peer.step, donate_argnums=0).lower(peer.carry, batch).compile()
        self.compile_s = time.perf_counter() - start
        self._loop = jax.jit(lambda carry, xs, ys: jax.lax.scan(peer.step, carry, (xs, ys)), donate_argnums=0)
        self._loop = self._loop.lower(peer.carry, *batches).compile()
        self.carry, self._batch, self._batches = peer.carry, batch, batches

    def step(self) -> tuple:
        self.carry, aux = self._step(self.carry, self._batch)  # the carry is donated: keep the new one
        return self.carry, aux

    def loop(self) -> tuple:
        self.carry, aux = self._loop(self.carry, *self._batches)
        return self.carry, aux


def _batches(data: dict[str, np.ndarray]) -> tuple[tuple, tuple]:
    """The step's batch and the loop's stacked batches as device arrays."""
    import jax.numpy as jnp

    return (jnp.asarray(data["x"]), jnp.asarray(data["y"])), (jnp.asarray(data["xs"]), jnp.asarray(data["ys"]))


def measure_jax_peer(spec: dict) -> dict:
    import jax

    import measure_jax

    data = _data(spec)
    peer = JAX_PEERS[spec["library"]](data["x"])
    result: dict[str, Any] = {"params": peer.num_params}
    if "fit" in spec["parts"] and peer.fit is not None and spec["fit_epochs"] > 0:  # first: compiles included
        train, val = moons(spec)
        result["fit_s"], result["fit_val_nll"] = peer.fit(train, val, spec["fit_epochs"])
        result.update(fit_epochs=spec["fit_epochs"], fit_train=len(train[0]), fit_val=len(val[0]))
    if "speed" not in spec["parts"]:
        return result
    batch, batches = _batches(data)
    result["init_nll"] = float(nll(jax.jit(peer.log_likelihoods)(peer.params(peer.carry), batch[0]), batch[1]))
    compiled = CompiledPeer(peer, batch, batches)
    result["compile_s"] = compiled.compile_s
    train_s, train_best_s, n = measure_jax.median_time(compiled.step, **_timing(spec))
    result.update(train_step_s=train_s, train_ex_s=BATCH / train_s, train_best_ex_s=BATCH / train_best_s,
                  train_repeats=n)
    loop_s, loop_best_s, n = measure_jax.median_time(compiled.loop, **_timing(spec))
    examples = spec["scan_steps"] * BATCH
    result.update(scan_steps=spec["scan_steps"], scan_s=loop_s, scan_ex_s=examples / loop_s,
                  scan_best_ex_s=examples / loop_best_s, scan_repeats=n)

    params, points = peer.params(compiled.carry), jax.numpy.asarray(data["points"])
    infer = jax.jit(peer.log_likelihoods).lower(params, points).compile()
    infer_s, infer_best_s, n = measure_jax.median_time(lambda: infer(params, points), **_timing(spec))
    out = np.asarray(infer(params, points))
    result.update(infer_points=len(points), infer_s=infer_s, infer_ex_s=len(points) / infer_s,
                  infer_best_ex_s=len(points) / infer_best_s, infer_repeats=n,
                  log_p_finite=bool(np.isfinite(out).all()), mean_log_p=float(out.mean()))
    return result


def measure_torch_peer(spec: dict) -> dict:
    import torch

    import torch_models

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    data = _data(spec)
    model, num_params = _torch_peer(spec["library"])
    x, y = torch.as_tensor(data["x"]), torch.as_tensor(data["y"], dtype=torch.long)
    with torch.no_grad():
        result: dict[str, Any] = {"params": num_params, "init_nll": float(nll(model.class_log_likelihoods(x), y))}
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        nll(model.class_log_likelihoods(x), y).backward()
        optimizer.step()

    train_s, train_best_s, n = torch_models.median_time(train_step, **_timing(spec))
    result.update(train_step_s=train_s, train_ex_s=BATCH / train_s, train_best_ex_s=BATCH / train_best_s,
                  train_repeats=n)
    points = torch.as_tensor(data["points"])
    holder = {}

    def infer():
        with torch.inference_mode():
            holder["out"] = model.class_log_likelihoods(points)

    infer_s, infer_best_s, n = torch_models.median_time(infer, **_timing(spec))
    out = holder["out"].numpy()
    result.update(infer_points=len(points), infer_s=infer_s, infer_ex_s=len(points) / infer_s,
                  infer_best_ex_s=len(points) / infer_best_s, infer_repeats=n, threads=spec["threads"],
                  log_p_finite=bool(np.isfinite(out).all()), mean_log_p=float(out.mean()))
    return result


def kept(times: list[float]) -> list[float]:
    """The calls :func:`interleave` counts and reports: all but the first tenth (more warm-up)."""
    return times[len(times) // 10:]


def interleave(calls: dict[str, Callable[[], Any]], warmup: int, repeats: int, min_seconds: float,
               seed: int = 0, clock: Callable[[], float] = time.perf_counter,
               wait: Callable[[Any], Any] | None = None) -> dict[str, list[float]]:
    """Times ``calls`` (name → function) in turns, the names in a fresh random order every turn, each call
    ended by ``wait`` (``jax.block_until_ready`` by default), after ``warmup`` untimed calls of each; returns
    every timed call's seconds per name. Turns go on until, with the first tenth of each name's calls left out
    (more warm-up), every name has at least ``repeats`` calls and ``min_seconds`` of timed calls; every name
    then has the same number of calls.

    Example:
      >>> ticks = iter(range(100))
      >>> times = interleave({"a": lambda: None, "b": lambda: None}, warmup=1, repeats=3, min_seconds=0.0,
      ...                    clock=lambda: float(next(ticks)), wait=lambda out: out)
      >>> {name: len(t) for name, t in times.items()}, set(times["a"])
      ({'a': 3, 'b': 3}, {1.0})
    """
    if wait is None:
        import jax

        wait = jax.block_until_ready
    for fn in calls.values():
        for _ in range(warmup):
            wait(fn())
    rng = np.random.default_rng(seed)
    times: dict[str, list[float]] = {name: [] for name in calls}

    def short(t: list[float]) -> bool:
        return len(kept(t)) < repeats or sum(kept(t)) < min_seconds

    while any(short(t) for t in times.values()):
        for name in rng.permutation(list(calls)):
            start = clock()
            wait(calls[name]())
            times[name].append(clock() - start)
    return times


def measure_interleaved(spec: dict) -> dict:
    """``spec['libraries']``' (JAX libraries') compiled steps and 100-step loops in one process, timed by
    :func:`interleave` (the steps first, then the loops): ``{library: {'step_s', 'step_ex_s', 'scan_s',
    'scan_ex_s', 'step_calls', 'scan_calls'}}``, each time the median of the calls after the first tenth."""
    data = _data(spec)
    batch, batches = _batches(data)
    compiled = {library: CompiledPeer(JAX_PEERS[library](data["x"]), batch, batches) for library in spec["libraries"]}
    timing = {k: spec[k] for k in ("warmup", "repeats", "min_seconds")}
    step_times = interleave({library: c.step for library, c in compiled.items()}, **timing)
    loop_times = interleave({library: c.loop for library, c in compiled.items()}, **timing, seed=1)
    result = {}
    for library in compiled:
        step_s, scan_s = (float(np.median(kept(t[library]))) for t in (step_times, loop_times))
        result[library] = {"step_s": step_s, "step_ex_s": BATCH / step_s, "scan_s": scan_s,
                           "scan_ex_s": spec["scan_steps"] * BATCH / scan_s,
                           "step_calls": len(step_times[library]), "scan_calls": len(loop_times[library])}
    return result


def worker(spec: dict) -> dict:
    """One library's measurements in this process, ``spec['parts']`` of ``'fit'`` (its training function, first)
    and ``'speed'`` (step, loop, log p), or ``['interleaved']`` (:func:`measure_interleaved`, the libraries in
    ``spec['libraries']``); adds the process's peak resident set size (``ru_maxrss``)."""
    if spec["parts"] == ["interleaved"]:
        return {"interleaved": measure_interleaved(spec),
                "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    measure = measure_jax_peer if spec["library"] in JAX_LIBRARIES else measure_torch_peer
    result = measure(spec)
    result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return result


# --- the parent: one subprocess per library, ratios, tables ----------------------------------------


def cpu_model() -> str:
    """The CPU's model name and widest vector extension (AVX-512 / AVX2), from ``/proc/cpuinfo``."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                "unknown CPU")
    avx2 = any(line.startswith("flags") and "avx2" in line.split() for line in info.splitlines())
    return name + (" (AVX-512)" if has_avx512(info) else " (AVX2)" if avx2 else "")


def measure_library(library: str, cfg: dict, threads: int, env: dict) -> dict:
    """One library's measurement in fresh worker processes: its training function (where it has one) in one,
    the speed columns in another."""
    result: dict[str, Any] = {}
    for parts in ([["fit"], ["speed"]] if library in FIT_LIBRARIES else [["speed"]]):
        spec = {"library": library, "parts": parts, **cfg, "threads": threads}
        part = run.run_worker(spec, env, script=Path(__file__).resolve())
        if "fit" in parts and "peak_mib" in part:
            part["fit_peak_mib"] = part.pop("peak_mib")
        result.update(part)
        if "error" in part:
            break
    return result


#: The timed columns a row reports as the median over rounds, and those it reports as the best over rounds.
TIMED = ("train_step_s", "train_ex_s", "scan_s", "scan_ex_s", "infer_s", "infer_ex_s", "fit_s", "fit_val_nll")
BEST = ("train_best_ex_s", "scan_best_ex_s", "infer_best_ex_s")


def median_over_rounds(results: list[dict]) -> dict:
    """A library's row from its rounds' results: each timed column's median over the rounds (its per-round values
    in ``<column>_rounds``), the fastest call of each kind over all rounds, the rest from the first round; the
    first error if any round failed.

    Example:
      >>> row = median_over_rounds([{"params": 5, "train_ex_s": 3.0, "train_best_ex_s": 4.0},
      ...                           {"params": 5, "train_ex_s": 1.1, "train_best_ex_s": 5.0},
      ...                           {"params": 5, "train_ex_s": 1.0, "train_best_ex_s": 4.5}])
      >>> row["train_ex_s"], row["train_best_ex_s"], row["train_ex_s_rounds"], row["rounds"]
      (1.1, 5.0, [3.0, 1.1, 1.0], 3)
    """
    failed = [r for r in results if "error" in r]
    if failed:
        return failed[0]
    row = {**results[0], "rounds": len(results)}
    for column in TIMED:
        values = [r[column] for r in results if column in r]
        if values:
            row[column] = float(np.median(values))
            row[f"{column}_rounds"] = values
    for column in BEST:
        bests = [r[column] for r in results if column in r]
        if bests:
            row[column] = max(bests)
    return row


def add_interleaved(rows: list[dict], interleaved: dict[str, dict]) -> None:
    """Puts :func:`measure_interleaved`'s step and loop speeds into the rows as ``step_interleaved_ex_s`` and
    ``scan_interleaved_ex_s`` (with their call counts).

    Example:
      >>> rows = [{"library": "flowclass"}, {"library": "zuko"}]
      >>> add_interleaved(rows, {"flowclass": {"step_ex_s": 2.0, "scan_ex_s": 3.0, "step_calls": 9, "scan_calls": 4}})
      >>> rows[0]["step_interleaved_ex_s"], rows[0]["scan_interleaved_calls"], "step_interleaved_ex_s" in rows[1]
      (2.0, 4, False)
    """
    for row in rows:
        measured = interleaved.get(row["library"])
        if measured is None or "error" in row:
            continue
        for kind in ("step", "scan"):
            row[f"{kind}_interleaved_ex_s"] = measured[f"{kind}_ex_s"]
            row[f"{kind}_interleaved_calls"] = measured[f"{kind}_calls"]


def add_ratios(rows: list[dict]) -> None:
    """flowclass ÷ each library, as speeds (above 1: flowclass is faster); the training functions by wall time."""
    base = next((r for r in rows if r["library"] == "flowclass" and "error" not in r), None)
    if base is None:
        return
    for row in rows:
        if row["library"] == "flowclass" or "error" in row:
            continue
        ratios = {}
        for column in ("train_ex_s", "train_best_ex_s", "scan_ex_s", "infer_ex_s", "step_interleaved_ex_s",
                       "scan_interleaved_ex_s"):
            if column in row and column in base:
                ratios[column] = base[column] / row[column]
        if "fit_s" in row and "fit_s" in base:
            ratios["fit_s"] = row["fit_s"] / base["fit_s"]
        row["flowclass_ratio"] = ratios


def _num(value: float | None, spec: str = ",.0f") -> str:
    return "—" if value is None or not math.isfinite(value) else format(value, spec)


def markdown(summary: dict) -> str:
    cfg, versions = summary["config"], summary["versions"]
    library_versions = ", ".join(f"{p} {versions[p]}" for p in PACKAGES if p in versions)
    lines = [
        "# flowclass vs the peer flow libraries: the moons RealNVP",
        "",
        f"{summary['date']}; {summary['machine']}; {library_versions}; one XLA host device; torch threads "
        f"{summary['threads']} (OMP_WAIT_POLICY={summary['omp_wait_policy']}, eager); allocator "
        f"{summary['tcmalloc'] if summary['malloc'] == 'tcmalloc' else 'glibc malloc'}; XLA CPU code generation "
        f"(every JAX library): {' '.join(summary['codegen_flags']) or 'default'}; load average before the run "
        f"{summary['load_average'][0]:.1f}; {'quick' if summary['quick'] else 'full'} run, "
        f"{summary.get('rounds', 1)} round(s) (each column: the median over the rounds; the libraries in a rotated "
        f"order each round), {summary['wall_s']:.0f} s.",
        "",
        f"Batch {BATCH}, Adam {LEARNING_RATE:g}, loss −mean log p(x | y). Step: one compiled train step per call "
        "(PyTorch: eager `zero_grad`, loss, `backward`, `Adam.step`), examples/s from the median call after "
        f"warm-up (in brackets: the fastest). Loop: {cfg['scan_steps']} steps of pre-drawn batches in one compiled "
        f"`lax.scan`. log p: `log p(x | k)` for both classes of {cfg['infer_points']:,} points. Own fit: the "
        f"library's training function, {cfg['fit_epochs']} epochs of {cfg['fit_train']:,} moons points at batch "
        f"{BATCH} with a validation pass on {cfg['fit_val']} points every epoch, compile included, in a fresh "
        "process (its final validation NLL in brackets). Interleaved: the JAX libraries' steps and loops timed "
        "again in one process, call by call in a random order (median call; the same machine state for every "
        "library). Ratios: flowclass ÷ library as speeds (above 1: flowclass is faster); step / loop / log p / "
        "own fit; interleaved step / loop.",
        "",
        "| library | model | params | step ex/s (best) | loop ex/s | log p ex/s | own fit s (val NLL) "
        "| interleaved step / loop ex/s | flowclass ÷ library: step / loop / log p / fit; interleaved |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["rows"]:
        name = f"{r['library']} {versions.get(r['library'], '')}".strip()
        if "error" in r:
            error = r["error"].splitlines()[-1][:100].replace("|", "\\|")
            lines.append(f"| {name} | {MODELS[r['library']]} | | error: {error} "
                         "| | | | | |")
            continue
        fit = "—" if "fit_s" not in r else f"{r['fit_s']:.1f} ({r['fit_val_nll']:.3f})"
        interleaved = "—" if "step_interleaved_ex_s" not in r else (
            f"{r['step_interleaved_ex_s']:,.0f} / {r['scan_interleaved_ex_s']:,.0f}")
        ratio = r.get("flowclass_ratio")
        ratio_cell = "" if ratio is None else " / ".join(
            _num(ratio.get(k), ".2f") for k in ("train_ex_s", "scan_ex_s", "infer_ex_s", "fit_s"))
        if ratio is not None and "step_interleaved_ex_s" in ratio:
            ratio_cell += "; " + " / ".join(
                _num(ratio.get(k), ".2f") for k in ("step_interleaved_ex_s", "scan_interleaved_ex_s"))
        lines.append(
            f"| {name} | {MODELS[r['library']]} | {r['params']:,} "
            f"| {r['train_ex_s']:,.0f} ({r['train_best_ex_s']:,.0f}) | {_num(r.get('scan_ex_s'))} "
            f"| {r['infer_ex_s']:,.0f} | {fit} | {interleaved} | {ratio_cell} |"
        )
    failed = summary.get("interleaved", {}).get("error")
    if failed:
        lines += ["", f"The interleaved run failed: {failed.splitlines()[-1]}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(json.loads(args.worker))))
        return {}
    installed = run.versions(PACKAGES)
    missing = [name for name in args.libraries if name != "flowclass" and name not in installed]
    if missing:
        raise SystemExit(f"not installed: {missing}; pip install -e '.[bench]', or leave them out of --libraries.")
    # One XLA device for every JAX library: fc.fit would otherwise shard its batches over several.
    malloc_env, args.malloc, tcmalloc, codegen_flags = run.worker_environments(1, args.malloc)
    env = dict(malloc_env[args.malloc])
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # compile times are part of the training functions' wall time
    if args.codegen == "fast":
        jax_env = {**env, "XLA_FLAGS": " ".join([env["XLA_FLAGS"], *codegen_flags])}
    else:
        jax_env = env
    cfg = QUICK if args.quick else FULL
    start, load_average = time.perf_counter(), os.getloadavg()
    per_round: dict[str, list[dict]] = {library: [] for library in args.libraries}
    todo = len(args.libraries) * args.rounds
    for r in range(args.rounds):
        shift = r % len(args.libraries)  # each library starts a round in turn
        for library in args.libraries[shift:] + args.libraries[:shift]:
            t0 = time.perf_counter()
            done = sum(map(len, per_round.values())) + 1
            print(f"[{done}/{todo}] round {r + 1}: {library} ...", end="", file=sys.stderr, flush=True)
            result = measure_library(library, cfg, args.threads, jax_env if library in JAX_LIBRARIES else env)
            per_round[library].append(result)
            if "error" in result:
                print(f" FAILED ({time.perf_counter() - t0:.0f} s)\n{result['error']}", file=sys.stderr)
                continue
            fit = f", own fit {result['fit_s']:.1f} s" if "fit_s" in result else ""
            loop = f", loop {result['scan_ex_s']:,.0f} ex/s" if "scan_ex_s" in result else ""
            print(f" {result['params']:,} params, step {result['train_ex_s']:,.0f} ex/s{loop}, "
                  f"log p {result['infer_ex_s']:,.0f} ex/s{fit} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    rows = [{"library": library, **median_over_rounds(per_round[library])} for library in args.libraries]
    # The JAX libraries whose rounds succeeded, flowclass among them (else there is no ratio to form).
    jax_libraries = [r["library"] for r in rows if r["library"] in JAX_LIBRARIES and "error" not in r]
    interleaved: dict[str, Any] = {}
    if len(jax_libraries) > 1 and "flowclass" in jax_libraries:
        t0 = time.perf_counter()
        print(f"interleaved: {', '.join(jax_libraries)} ...", end="", file=sys.stderr, flush=True)
        interleaved = run.run_worker({"libraries": jax_libraries, "parts": ["interleaved"], **cfg,
                                      "threads": args.threads}, jax_env, script=Path(__file__).resolve())
        if "error" in interleaved:
            print(f" FAILED ({time.perf_counter() - t0:.0f} s)\n{interleaved['error']}", file=sys.stderr)
        else:
            add_interleaved(rows, interleaved["interleaved"])
            print(" " + ", ".join(f"{library} step {m['step_ex_s']:,.0f} / loop {m['scan_ex_s']:,.0f} ex/s"
                                  for library, m in interleaved["interleaved"].items())
                  + f" ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    add_ratios(rows)
    summary = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu_model()}, {platform.machine()}, {os.cpu_count()} CPU(s), {platform.system()} "
                   f"{platform.release()}",
        "versions": installed, "quick": args.quick, "config": cfg, "load_average": load_average,
        "omp_wait_policy": env["OMP_WAIT_POLICY"], "malloc": args.malloc, "tcmalloc": tcmalloc,
        "codegen": args.codegen, "codegen_flags": codegen_flags if args.codegen == "fast" else [],
        "threads": args.threads, "rounds": args.rounds, "rows": rows, "wall_s": time.perf_counter() - start,
        "interleaved": interleaved,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "peers.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "peers.md").write_text(markdown(summary))
    print(markdown(summary), file=sys.stderr)
    print(f"wrote {args.out / 'peers.json'} and peers.md; wall {summary['wall_s']:.0f} s", file=sys.stderr)
    failed = [r["library"] for r in rows if "error" in r] + (["interleaved"] if "error" in interleaved else [])
    if failed:
        raise SystemExit(f"{len(failed)} measurement(s) failed: {failed}")
    return summary


if __name__ == "__main__":
    main()
