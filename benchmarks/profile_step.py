"""Where a train step's time goes: forward, backward and optimiser, flowclass vs its PyTorch twin.

    python benchmarks/profile_step.py                                  # the default MNIST flow, batch 128
    python benchmarks/profile_step.py --models mnist_fast_flow,mnist_multiscale_flow,cnn --batch 128

For each model, in one run, each framework in a fresh process with the benchmark's environment
(``run.worker_environments``: tcmalloc when installed, ``OMP_WAIT_POLICY=PASSIVE``; flowclass with
``flowclass.runtime.fast_codegen_flags()`` on one XLA host device, unsharded) measures the median
wall time of

* ``forward``: the training loss without gradients (``jax.jit(loss)`` / ``torch.no_grad()``);
* ``forward+backward``: the loss and its gradients (``jax.jit(jax.value_and_grad(loss))`` /
  ``loss.backward()``);
* ``step``: the whole train step (``fc.train_step`` / ``backward`` + clipping + ``Adam.step``),

and prints the phases (backward = forward+backward − forward, optimiser = step − forward+backward)
side by side with flowclass / PyTorch ratios (above 1: flowclass faster). Models and data are
``run.py``'s (``measure_jax.build``, ``torch_models.build``, ``run.make_batch``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402

PHASES = ("forward", "forward+backward", "step")
TIMING = {"warmup": 2, "min_repeats": 5, "min_seconds": 2.0}


def _jax_phases(model_name: str, x: np.ndarray, y: np.ndarray) -> dict:
    import jax
    import jax.numpy as jnp

    import flowclass as fc

    import measure_jax

    model, loss_fn, tx = measure_jax.build(model_name)
    state = fc.create_train_state(model, jax.random.key(0), x, tx, loss_fn)
    batch = (jnp.asarray(x), jnp.asarray(y))

    def loss(params):
        return loss_fn(state.apply_fn, {"params": params, **state.collections}, *batch)[0]

    forward = jax.jit(loss)
    backward = jax.jit(jax.value_and_grad(loss))
    step = jax.jit(fc.train_step, donate_argnums=0)
    holder = {"state": state}

    def one_step():
        holder["state"], metrics = step(holder["state"], batch)
        return holder["state"], metrics

    return {name: measure_jax.median_time(fn, **TIMING)[0] for name, fn in
            (("forward", lambda: forward(state.params)), ("forward+backward", lambda: backward(state.params)),
             ("step", one_step))}


def _torch_phases(model_name: str, x: np.ndarray, y: np.ndarray, threads: int) -> dict:
    import torch

    import torch_models

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, loss_fn, clip = torch_models.build(model_name)
    xt = torch.as_tensor(x)
    if xt.dim() == 4:
        xt = xt.permute(0, 3, 1, 2).contiguous()
    yt = torch.as_tensor(y, dtype=torch.long)
    with torch.no_grad():
        model(xt)  # data-dependent init (ActNorm)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def forward():
        with torch.no_grad():
            loss_fn(model, xt, yt)

    def forward_backward():
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model, xt, yt).backward()

    def step():
        forward_backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()

    return {name: torch_models.median_time(fn, **TIMING)[0] for name, fn in
            (("forward", forward), ("forward+backward", forward_backward), ("step", step))}


def worker(spec: dict) -> dict:
    x, y = run.make_batch(spec["model"], spec["batch"])
    if spec["framework"] == "jax":
        return _jax_phases(spec["model"], x, y)
    return _torch_phases(spec["model"], x, y, spec["threads"])


def table(model: str, batch: int, jax_s: dict, torch_s: dict) -> list[str]:
    """Markdown rows: milliseconds per phase in both frameworks and the flowclass / PyTorch ratio."""
    def split(t):
        return {"forward": t["forward"], "backward": t["forward+backward"] - t["forward"],
                "optimiser": t["step"] - t["forward+backward"], "whole step": t["step"]}

    j, t = split(jax_s), split(torch_s)
    rows = [f"| {model} (batch {batch}) | phase | flowclass ms | PyTorch ms | flowclass / PyTorch speed |",
            "|---|---|---|---|---|"]
    for phase in j:
        ratio = t[phase] / j[phase] if j[phase] > 0 else float("nan")
        rows.append(f"| | {phase} | {1000 * j[phase]:.1f} | {1000 * t[phase]:.1f} | {ratio:.2f}× |")
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="mnist_fast_flow", help=f"comma-separated subset of {', '.join(run.MODELS)}")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in run.MODELS]
    if unknown or args.batch < 1 or args.threads < 1:
        p.error(f"--models must name models of {list(run.MODELS)}, --batch and --threads be >= 1; "
                f"got {args.models!r}, {args.batch}, {args.threads}")
    envs, malloc, _, codegen = run.worker_environments(1, "auto")
    jax_env = {**envs[malloc], "XLA_FLAGS": f"{envs[malloc]['XLA_FLAGS']} {' '.join(codegen)}".strip()}
    lines = [f"# Train-step phases, flowclass vs PyTorch ({malloc}; XLA flags: {jax_env['XLA_FLAGS']}; "
             f"torch threads {args.threads})", ""]
    for model in models:
        spec = {"model": model, "batch": args.batch, "threads": args.threads}
        print(f"{model}: flowclass ...", file=sys.stderr, flush=True)
        jax_s = run.run_worker({**spec, "framework": "jax"}, jax_env, script=Path(__file__).resolve())
        print(f"{model}: PyTorch ...", file=sys.stderr, flush=True)
        torch_s = run.run_worker({**spec, "framework": "torch"}, envs[malloc], script=Path(__file__).resolve())
        if "error" in jax_s or "error" in torch_s:
            lines += [f"{model}: error: {jax_s.get('error') or torch_s.get('error')}", ""]
            continue
        lines += table(model, args.batch, jax_s, torch_s) + [""]
    print("\n".join(lines))


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
