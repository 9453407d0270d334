"""JAX side of the benchmark: flowclass's own ``train_step`` on a ``TrainState``, and the model's logits.

Measured per model and batch size:

* compile time: wall time of ``jax.jit(fc.train_step, donate_argnums=0).lower(state, batch).compile()``;
* FLOPs per step: ``compiled.cost_analysis()['flops']`` (XLA's count for the whole step:
  forward, backward, optimiser), times the device count when the step is sharded (XLA
  reports the per-device program);
* XLA memory: ``compiled.memory_analysis()``: arguments + outputs − aliased (donated) + temporaries;
* step time: median wall time of the compiled step, each call ended by ``jax.block_until_ready``,
  after warm-up calls.

With ``spec['device'] == 'gpu'`` (``run.py --device gpu``) :func:`use_device` first checks that JAX's
default backend is a GPU and sets the matmul precision; the data and state then live on it.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import flowclass as fc
from flowclass.losses import LossFn

MOONS_MEANS = ((-4.0, 0.0), (4.0, 0.0))


def build(name: str, num_couplings: int = 5) -> tuple[Any, LossFn, optax.GradientTransformation]:
    """``(model, loss_fn, optimiser)`` as the experiments build them (constant learning rate 1e-3).

    moons (``experiments/moons``): Adam; MNIST (``experiments/mnist``): global-norm
    clipping at 10, then Adam; flows use the hybrid loss ``bits/dim + 3 · CE``. The optimisers are
    the library's (:func:`flowclass.optim.make_optimizer`, which packs the MNIST flows' small arrays).
    """
    mnist_tx = fc.optim.make_optimizer(1e-3, clip_norm=10.0)
    mnist_flow_loss = fc.make_flow_loss(cross_entropy_weight=3.0, nll_unit="bits_per_dim", num_bins=256)
    if name == "moons_flow":
        model = fc.tabular_realnvp(2, 2, num_couplings=num_couplings, hidden=(100, 100), means=MOONS_MEANS)
        return model, fc.flow_nll, fc.optim.make_optimizer(1e-3)
    if name == "fnn":
        return fc.FNN(num_classes=2, hidden=(100, 100)), fc.cross_entropy, fc.optim.make_optimizer(1e-3)
    if name == "mnist_multiscale_flow":
        return fc.image_realnvp("multiscale", input_shape=(28, 28, 1), num_classes=10), mnist_flow_loss, mnist_tx
    if name == "mnist_fast_flow":
        return fc.image_realnvp("fast", input_shape=(28, 28, 1), num_classes=10), mnist_flow_loss, mnist_tx
    if name == "cnn":
        return fc.CNN(num_classes=10), fc.cross_entropy, mnist_tx
    raise ValueError(f"unknown model {name!r}.")


def use_device(spec: dict) -> dict:
    """Device set-up of a measuring process: nothing on the CPU (``{}``); for ``spec['device'] == 'gpu'``,
    checks JAX's default backend, sets ``jax_default_matmul_precision`` to ``'highest'`` when
    ``spec['gpu_precision'] == 'float32'`` (JAX's GPU default allows TF32), and returns
    ``{'device_kind': ...}``.

    Raises:
      RuntimeError: a GPU was asked for and JAX's default backend is not one.
    """
    if spec.get("device", "cpu") != "gpu":
        return {}
    if jax.default_backend() != "gpu":
        raise RuntimeError(f"--device gpu, but JAX's default backend is {jax.default_backend()!r} "
                           f"({jax.devices()}); install a CUDA jaxlib or use --device cpu.")
    if spec.get("gpu_precision", "tf32") == "float32":
        jax.config.update("jax_default_matmul_precision", "highest")
    return {"device_kind": jax.devices()[0].device_kind}


def device_peak_mib() -> float | None:
    """Peak memory in use on the default device (``None`` where the backend does not report it, e.g. CPU)."""
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**20


def median_time(
    fn: Callable[[], Any], warmup: int, min_repeats: int, min_seconds: float
) -> tuple[float, float, int]:
    """``(median, min, count)`` of the wall times of ``jax.block_until_ready(fn())`` after ``warmup`` calls;
    at least ``min_repeats`` calls and ``min_seconds`` of timed calls."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times: list[float] = []
    while len(times) < min_repeats or sum(times) < min_seconds:
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times)), min(times), len(times)


def peak_matmul(n: int, repeats: int = 5) -> dict:
    """Float32 matmul peak: ``2 n³ / t_min`` for ``jnp.dot`` of two ``n × n`` matrices on the default device."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot).lower(a, b).compile()
    _, seconds, _ = median_time(lambda: dot(a, b), warmup=2, min_repeats=repeats, min_seconds=0.0)
    return {"n": n, "seconds": seconds, "gflop_s": 2 * n**3 / seconds / 1e9}


def measure(spec: dict, x: np.ndarray, y: np.ndarray) -> dict:
    """Compile time, XLA cost/memory and train/logits throughput for ``spec['model']`` on ``(x, y)``.

    With ``spec['sharded']`` the state is replicated and the batch split over all devices
    (``flowclass.sharding``), which is how ``fc.fit`` trains on several devices.
    """
    model, loss_fn, tx = build(spec["model"], spec.get("num_couplings", 5))
    state = fc.create_train_state(model, jax.random.key(0), x, tx, loss_fn)
    params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
    batch = (jnp.asarray(x), jnp.asarray(y))
    devices = 1
    if spec.get("sharded"):
        mesh = fc.sharding.data_mesh()
        devices = mesh.devices.size
        fc.sharding.check_divisible(len(x), mesh)
        state = jax.device_put(state, fc.sharding.replicated(mesh))
        batch = jax.device_put(batch, fc.sharding.batch_sharding(mesh))

    start = time.perf_counter()
    # fc.train_step checks its batch eagerly, then runs the jitted, donated step; under jit only the
    # shape checks trace, so this compiles exactly the library's step.
    compiled = jax.jit(fc.train_step, donate_argnums=0).lower(state, batch).compile()
    compile_s = time.perf_counter() - start
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost  # a list of dicts in older jax
    flops = float(cost.get("flops", float("nan"))) * devices
    memory = compiled.memory_analysis()
    xla_bytes = (memory.argument_size_in_bytes + memory.output_size_in_bytes - memory.alias_size_in_bytes
                 + memory.temp_size_in_bytes) if memory is not None else None

    holder = {"state": state}

    def train() -> Any:
        holder["state"], aux = compiled(holder["state"], batch)  # the state is donated: keep the new one
        return holder["state"], aux

    timing = dict(warmup=spec["warmup"], min_repeats=spec["repeats"], min_seconds=spec["min_seconds"])
    train_s, train_best_s, train_n = median_time(train, **timing)
    result = {"framework": "jax", "params": params, "devices": devices, "compile_s": compile_s,
              "flops_per_step": flops, "train_step_s": train_s, "train_best_step_s": train_best_s,
              "train_repeats": train_n, "train_best_ex_s": len(x) / train_best_s,
              "train_ex_s": len(x) / train_s, "gflop_s": flops / train_s / 1e9,
              "xla_mib": None if xla_bytes is None else xla_bytes / 2**20}
    if spec.get("infer", True):
        variables = holder["state"].variables
        logits = jax.jit(model.apply).lower(variables, batch[0]).compile()
        infer_s, _, _ = median_time(lambda: logits(variables, batch[0]), **timing)
        result.update(infer_s=infer_s, infer_ex_s=len(x) / infer_s)
    if spec.get("device", "cpu") == "gpu":
        result["device_peak_mib"] = device_peak_mib()
    return result
