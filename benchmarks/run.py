"""flowclass vs PyTorch, side by side in one run: throughput, FLOP/s, compile time, memory, scaling.

    python benchmarks/run.py                 # full run, ~15 min on a 2-core CPU
    python benchmarks/run.py --quick         # fewer steps and sizes, ~2 min
    python benchmarks/run.py --models moons_flow,fnn --frameworks jax --out /tmp/bench

Every measurement runs in its own subprocess (so its peak resident memory is its own);
the parent sets ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` for them before
any jax import. Writes ``results.json`` and ``results.md`` to ``--out``; progress goes to
stderr. See benchmarks/README.md for what each column means.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from flowclass.runtime import fast_codegen_flags, find_tcmalloc, xla_option

HERE = Path(__file__).resolve().parent

# name -> input shape, classes, default batch, description
MODELS: dict[str, dict[str, Any]] = {
    "moons_flow": {"shape": (2,), "classes": 2, "batch": 128, "label": "moons flow (RealNVP, 5 MLP couplings)"},
    "fnn": {"shape": (2,), "classes": 2, "batch": 128, "label": "seed FNN 2-100-100-2"},
    "mnist_multiscale_flow": {"shape": (28, 28, 1), "classes": 10, "batch": 128, "label": "MNIST flow 'multiscale'"},
    "mnist_fast_flow": {"shape": (28, 28, 1), "classes": 10, "batch": 128, "label": "MNIST flow 'fast' (default)"},
    "cnn": {"shape": (28, 28, 1), "classes": 10, "batch": 128, "label": "seed CNN"},
}
SHARDABLE = ("mnist_multiscale_flow", "mnist_fast_flow")
FULL = {"batches": {"moons_flow": (32, 64, 128, 256, 512, 1024), "mnist_fast_flow": (32, 64, 128, 256, 512, 1024)},
        "couplings": (1, 2, 5, 10, 20), "peak_n": 2048,
        "warmup": 2, "repeats": 5, "min_seconds": 2.0}
QUICK = {"batches": {"moons_flow": (32, 1024)}, "couplings": (1, 10), "peak_n": 1024,
         "warmup": 1, "repeats": 2, "min_seconds": 0.2, "image_batch": 32}
# --device gpu: a GPU's matmul takes ~1 ms only from n = 8192; the MNIST flows' main rows also at a batch that fills it
GPU = {"peak_n": 8192, "quick_peak_n": 4096, "extra_main_batch": 1024}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke-test sizes: MNIST batch 32, few steps, only the moons "
                   "sweeps (2 points each), no sharded rows, no 'multiscale' MNIST flow unless named in --models")
    p.add_argument("--out", type=Path, default=HERE / "results", help="output directory (default benchmarks/results)")
    p.add_argument("--models", default=None, help=f"comma-separated subset of {','.join(MODELS)}")
    p.add_argument("--frameworks", default="jax,torch", help="comma-separated subset of jax,torch")
    p.add_argument("--host-devices", type=int, default=2,
                   help="XLA host devices (sharded rows for the MNIST flows when > 1)")
    p.add_argument("--threads", default="2", help="torch.set_num_threads; a comma-separated list measures "
                   "each (ratios are against the fastest)")
    p.add_argument("--no-scaling", action="store_true", help="skip the batch-size and coupling sweeps")
    p.add_argument("--malloc", choices=("auto", "tcmalloc", "system"), default="auto",
                   help="allocator of every measuring process: tcmalloc (LD_PRELOAD), glibc's, or tcmalloc when "
                   "installed (default). With tcmalloc the flows' flowclass rows are also measured with glibc's.")
    p.add_argument("--codegen", choices=("fast", "default"), default="fast",
                   help="XLA CPU code generation of every flowclass process: flowclass.runtime.fast_codegen_flags() "
                   "(default; the MNIST flows' main rows are then also measured with XLA's defaults), or XLA's.")
    p.add_argument("--device", choices=("cpu", "gpu", "auto"), default="cpu",
                   help="cpu (default): JAX on XLA host devices, PyTorch on CPU threads. gpu: JAX on its default "
                   "backend (which must be a GPU), the PyTorch twins and their data on cuda (synchronised before "
                   "each clock read); no host-device flag, CPU code generation, allocator rows or sharded rows, and "
                   "the MNIST flows' main rows also at batch 1024. auto: gpu when JAX's default backend is a GPU, "
                   "else cpu.")
    p.add_argument("--gpu-precision", choices=("tf32", "float32"), default="tf32",
                   help="--device gpu: float32 matmuls/convolutions in both frameworks with TF32 allowed (JAX's GPU "
                   "default; PyTorch told so) or in full float32 (JAX precision 'highest', PyTorch TF32 off)")
    p.add_argument("--min-seconds", type=float, default=None,
                   help="at least this many seconds of timed steps per measurement (default 2, 0.2 with --quick)")
    p.add_argument("--time-limit", type=float, default=None,
                   help="start no measurement after this many seconds; those left are listed as skipped")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: one measurement, JSON spec
    args = p.parse_args(argv)
    models = list(MODELS) if args.models is None else [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        p.error(f"unknown model(s) {unknown}; expected some of {list(MODELS)}")
    if args.quick and args.models is None:
        models.remove("mnist_multiscale_flow")
    args.models = models
    args.frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    if not args.frameworks or set(args.frameworks) - {"jax", "torch"}:
        p.error(f"--frameworks must be a subset of jax,torch; got {args.frameworks}")
    try:
        args.threads = [int(t) for t in args.threads.split(",")]
    except ValueError:
        p.error(f"--threads must be comma-separated integers; got {args.threads!r}")
    if args.host_devices < 1 or min(args.threads) < 1:
        p.error(f"--host-devices and --threads must be >= 1; got {args.host_devices} and {args.threads}")
    if (args.min_seconds or 0) < 0 or (args.time_limit is not None and args.time_limit <= 0):
        p.error(f"--min-seconds must be >= 0 and --time-limit > 0; got {args.min_seconds} and {args.time_limit}")
    return args


def make_batch(model: str, batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic data of the model's shape: moons-like ``N(0, 1)`` points, or 8-bit bin centres in (0, 1)."""
    info = MODELS[model]
    rng = np.random.default_rng(seed)
    shape = (batch, *info["shape"])
    if len(info["shape"]) == 1:
        x = rng.normal(size=shape).astype(np.float32)
    else:
        x = ((rng.integers(0, 256, size=shape) + 0.5) / 256).astype(np.float32)
    return x, rng.integers(0, info["classes"], size=batch).astype(np.int32)


def worker(spec: dict) -> dict:
    """One measurement in this process; adds its peak resident set size (``ru_maxrss``)."""
    if spec["kind"] == "peak":
        import measure_jax

        device = measure_jax.use_device(spec)
        result = {**measure_jax.peak_matmul(spec["n"]), **device}
    else:
        x, y = make_batch(spec["model"], spec["batch"])
        if spec["kind"] == "jax":
            import measure_jax

            device = measure_jax.use_device(spec)
            result = {**measure_jax.measure(spec, x, y), **device}
        else:
            import torch_models

            result = torch_models.measure(spec, x, y)
    result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return result


def run_worker(spec: dict, env: dict[str, str], script: Path | None = None) -> dict:
    """Runs ``script --worker SPEC`` (this file's :func:`worker` by default; ``peers.py`` passes itself)
    in a fresh interpreter; returns its JSON result (the last line of its stdout), or ``{'error': ...}``."""
    script = Path(__file__).resolve() if script is None else script
    proc = subprocess.run([sys.executable, str(script), "--worker", json.dumps(spec)],
                          capture_output=True, text=True, env=env, cwd=HERE)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        return {"error": f"worker exited with {proc.returncode}: {tail}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def plan(args: argparse.Namespace) -> list[dict]:
    """Every measurement of this run, in order (the sweeps after the main table).

    With ``args.device == 'gpu'`` every spec carries ``device`` and ``gpu_precision``, and the CPU-only
    variants (sharded over host devices, glibc malloc, default CPU code generation) are left out.
    """
    cfg = QUICK if args.quick else FULL
    gpu = getattr(args, "device", "cpu") == "gpu"
    timing = {k: cfg[k] for k in ("warmup", "repeats", "min_seconds")}
    if getattr(args, "min_seconds", None) is not None:
        timing["min_seconds"] = args.min_seconds
    on_device = {"device": "gpu", "gpu_precision": args.gpu_precision} if gpu else {}
    peak_n = (GPU["quick_peak_n"] if args.quick else GPU["peak_n"]) if gpu else cfg["peak_n"]
    specs: list[dict] = [{"kind": "peak", "n": peak_n, "section": "peak", **on_device}]

    def add(section: str, model: str, batch: int, infer: bool, **extra: Any) -> None:
        common = {"section": section, "model": model, "batch": batch, "infer": infer, "sharded": False,
                  "malloc": args.malloc, **timing, **extra, **on_device}
        if "jax" in args.frameworks and gpu:
            specs.append({"kind": "jax", **common})
        elif "jax" in args.frameworks:
            jax_specs = [{"kind": "jax", **common, "codegen": args.codegen}]
            if model in SHARDABLE and args.host_devices > 1 and not args.quick:
                jax_specs.append({**jax_specs[-1], "sharded": True})
            ablations = []
            if section == "main" and model in SHARDABLE and args.malloc == "tcmalloc":
                ablations += [{**spec, "malloc": "system"} for spec in jax_specs]
            if section == "main" and model in SHARDABLE and args.codegen == "fast":
                ablations += [{**spec, "codegen": "default"} for spec in jax_specs]
            jax_specs += ablations
            specs.extend(jax_specs)
        if "torch" in args.frameworks:
            specs.extend({"kind": "torch", "threads": threads, **common} for threads in args.threads)

    for model in args.models:
        image = len(MODELS[model]["shape"]) == 3
        add("main", model, cfg.get("image_batch", MODELS[model]["batch"]) if image else MODELS[model]["batch"], True)
        if gpu and model in SHARDABLE:
            add("main", model, GPU["extra_main_batch"], True)
    if not args.no_scaling:
        for model, batches in cfg["batches"].items():
            if model in args.models:
                for batch in batches:
                    add("batch_scaling", model, batch, False)
        if "moons_flow" in args.models:
            for couplings in cfg["couplings"]:
                add("coupling_scaling", "moons_flow", MODELS["moons_flow"]["batch"], False, num_couplings=couplings)
    return specs


def describe(spec: dict) -> str:
    if spec["kind"] == "peak":
        return f"float32 matmul peak, n={spec['n']}"
    variant = f" sharded×{spec['devices']}" if spec.get("sharded") else ""
    variant += f" threads={spec['threads']}" if "threads" in spec else ""
    variant += f" couplings={spec['num_couplings']}" if "num_couplings" in spec else ""
    variant += " glibc-malloc" if spec.get("malloc") == "system" and "device" not in spec else ""
    variant += " default-codegen" if spec.get("codegen") == "default" else ""
    variant += f" on {spec['device']}" if "device" in spec else ""
    return f"{spec['section']}: {spec['model']} {spec['kind']}{variant} batch={spec['batch']}"


def add_ratios(rows: list[dict], peak_gflop_s: float) -> None:
    """flowclass/PyTorch throughput ratios, and FLOP/s for every row from the XLA count of the same model.

    Ratios are against the fastest PyTorch row of the same model and batch (over the thread counts
    measured). Torch rows get the single-device XLA FLOP count of their JAX twin (same maths) divided
    by their step time.
    """

    def key(row: dict) -> tuple:
        return row["section"], row["model"], row["batch"], row.get("num_couplings")

    torch_rows: dict[tuple, dict] = {}
    for r in rows:
        if r["kind"] == "torch" and "error" not in r:
            best = torch_rows.get(key(r))
            if best is None or r["train_ex_s"] > best["train_ex_s"]:
                torch_rows[key(r)] = r
    flops = {key(r): r["flops_per_step"] for r in rows if r["kind"] == "jax" and not r["sharded"] and "error" not in r}
    for row in rows:
        if "error" in row:
            continue
        twin = torch_rows.get(key(row))
        if row["kind"] == "jax" and twin is not None:
            row["train_ratio_vs_torch"] = row["train_ex_s"] / twin["train_ex_s"]
            row["train_best_ratio_vs_torch"] = row["train_best_ex_s"] / twin["train_best_ex_s"]
            row["ratio_vs_torch_threads"] = twin["threads"]
            if "infer_ex_s" in row and "infer_ex_s" in twin:
                row["infer_ratio_vs_torch"] = row["infer_ex_s"] / twin["infer_ex_s"]
        if row["kind"] == "torch" and key(row) in flops:
            row["flops_per_step"] = flops[key(row)]
            row["gflop_s"] = flops[key(row)] / row["train_step_s"] / 1e9
        if "gflop_s" in row:
            row["pct_of_peak"] = 100 * row["gflop_s"] / peak_gflop_s


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def markdown(summary: dict) -> str:
    """The results as markdown tables (main, batch scaling, coupling scaling)."""
    peak = summary["peak"]
    gpu = summary.get("device") == "gpu"
    if gpu:
        tf32 = summary["gpu_precision"] == "tf32"
        setting = (f"{summary['date']}; {summary['machine']}; **{peak.get('device_kind', 'GPU')}**; "
                   f"jax {summary['versions']['jax']}, flax {summary['versions']['flax']}, torch "
                   f"{summary['versions'].get('torch', 'not installed')}; flowclass on JAX's GPU backend, the "
                   "PyTorch twins (eager) and their data on cuda, each clock read after the device finished "
                   "(jax.block_until_ready, torch.cuda.synchronize); float32 with "
                   + ("TF32 allowed in matmuls and convolutions (JAX's default; torch allow_tf32)" if tf32 else
                      "full-precision matmuls and convolutions (JAX precision 'highest', torch TF32 off)")
                   + f"; {'quick' if summary['quick'] else 'full'} run, {summary['wall_s']:.0f} s.")
    lines = [
        "# flowclass vs PyTorch benchmark",
        "",
    ] + ([setting] if gpu else [
        f"{summary['date']}; {summary['machine']}; jax {summary['versions']['jax']}, "
        f"flax {summary['versions']['flax']}, torch {summary['versions'].get('torch', 'not installed')}; "
        f"{summary['host_devices']} XLA host device(s), torch threads {summary['threads']} "
        f"(OMP_WAIT_POLICY={summary['omp_wait_policy']}); "
        f"allocator {summary.get('tcmalloc') if summary.get('malloc') == 'tcmalloc' else 'glibc malloc'}; "
        f"XLA CPU code generation: {' '.join(summary.get('codegen_flags') or ['default'])}; "
        f"load average before the run {summary['load_average'][0]:.1f}; "
        f"{'quick' if summary['quick'] else 'full'} run, {summary['wall_s']:.0f} s.",
    ]) + [
        "",
        f"float32 matmul peak (jnp.dot, n={peak['n']}): **{peak['gflop_s']:.1f} GFLOP/s**. "
        "Train ex/s: from the median step time after warm-up (in brackets: from the fastest step, which "
        "is less sensitive to other load on the machine). Ratio: flowclass / PyTorch examples per second "
        "(train median / logits median; in brackets: train fastest), against the fastest PyTorch thread count. "
        "GFLOP/s: XLA's FLOP count of the train step / median step time (torch rows: the count of their JAX twin). "
        + ("Peak MiB: the device's peak memory in use (JAX memory_stats, torch.cuda.max_memory_allocated); "
           if gpu else "Peak MiB: peak RSS of the measuring process (framework runtime included); ")
        + "XLA MiB: the compiled step's buffers (memory_analysis).",
    ]
    if summary.get("skipped"):
        lines += ["", f"Not measured (--time-limit {summary['time_limit']:.0f} s reached): "
                  + "; ".join(summary["skipped"]) + "."]
    titles = {"main": "Models", "batch_scaling": "Train throughput vs batch size",
              "coupling_scaling": "Moons flow: train throughput vs number of couplings (batch 128)"}
    header = ("| model | framework | params | batch | train ex/s (best) | infer ex/s "
              "| ratio vs torch: train / infer (best) | GFLOP/s | % of peak | compile s | peak MiB | XLA MiB |")
    for section, title in titles.items():
        rows = [r for r in summary["rows"] if r["section"] == section]
        if not rows:
            continue
        lines += ["", f"## {title}", "", header, "|" + "---|" * 12]
        for r in rows:
            name = r["model"] + (f" ({r['num_couplings']} couplings)" if section == "coupling_scaling" else "")
            framework = ("flowclass" if r["kind"] == "jax" else "PyTorch (cuda)" if gpu
                         else f"PyTorch ({r['threads']} thr.)")
            if r.get("sharded"):
                framework += f" sharded×{r['devices']}"
            if r.get("malloc") == "system" and summary.get("malloc") == "tcmalloc":
                framework += ", glibc malloc"
            if r.get("codegen") == "default" and summary.get("codegen") == "fast":
                framework += ", default codegen"
            if "error" in r:
                lines.append(f"| {name} | {framework} | | {r['batch']} | error: {r['error'].splitlines()[-1][:80]} "
                             "| | | | | | | |")
                continue
            ratio = ""
            if "train_ratio_vs_torch" in r:
                ratio = f"{r['train_ratio_vs_torch']:.2f}"
                if "infer_ratio_vs_torch" in r:
                    ratio += f" / {r['infer_ratio_vs_torch']:.2f}"
                ratio += f" ({r['train_best_ratio_vs_torch']:.2f})"
            lines.append(
                f"| {name} | {framework} | {r['params']:,} | {r['batch']} "
                f"| {r['train_ex_s']:,.0f} ({r['train_best_ex_s']:,.0f}) "
                f"| {_fmt(r.get('infer_ex_s'), ',.0f')} | {ratio} | {_fmt(r.get('gflop_s'), '.2f')} "
                f"| {_fmt(r.get('pct_of_peak'), '.1f')} | {_fmt(r.get('compile_s'), '.1f')} "
                f"| {_fmt(r.get('device_peak_mib') if gpu else r['peak_mib'], ',.0f')} "
                f"| {_fmt(r.get('xla_mib'), ',.0f')} |"
            )
    return "\n".join(lines) + "\n"


def versions(packages: tuple[str, ...] = ("jax", "jaxlib", "flax", "optax", "torch")) -> dict[str, str]:
    """Installed versions of ``packages`` (those not installed are left out)."""
    from importlib import metadata

    found = {}
    for package in packages:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


def worker_environments(host_devices: int, malloc: str) -> tuple[dict[str, dict[str, str]], str, str | None, list[str]]:
    """The measuring processes' environments, before any import in them: ``({'system': env, 'tcmalloc': env},
    malloc, tcmalloc, codegen_flags)``.

    Each ``env`` is this process's environment with ``XLA_FLAGS`` set to the user's flags less those the
    benchmark controls, plus ``--xla_force_host_platform_device_count=host_devices``, ``OMP_WAIT_POLICY=PASSIVE``
    unless set, and ``LD_PRELOAD`` without (``'system'``) or with (``'tcmalloc'``) tcmalloc. ``malloc`` is the
    allocator chosen (``'auto'`` becomes ``'tcmalloc'`` when installed, else ``'system'``), ``tcmalloc`` the
    library found (or ``None``), ``codegen_flags`` the XLA flags of ``--codegen fast``, for the caller to append.
    """
    env = dict(os.environ)
    codegen_flags = list(fast_codegen_flags())  # the rows compare these with XLA's defaults: drop the user's
    controlled = {xla_option(f) for f in codegen_flags} | {"--xla_force_host_platform_device_count"}
    flags = [f for f in env.get("XLA_FLAGS", "").split() if xla_option(f) not in controlled]
    env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={host_devices}"])
    # PyTorch's OpenMP threads, left to libgomp's default wait policy, ran 10x slower on a machine
    # with other load (measured); an explicit policy keeps the comparison about the frameworks.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    tcmalloc = find_tcmalloc()
    if malloc == "auto":
        malloc = "tcmalloc" if tcmalloc is not None else "system"
    if malloc == "tcmalloc" and tcmalloc is None:
        raise SystemExit("--malloc tcmalloc: no tcmalloc library found (apt install libtcmalloc-minimal4).")
    preloads = [lib for lib in env.get("LD_PRELOAD", "").split() if "tcmalloc" not in lib]
    malloc_env = {"system": {**env, "LD_PRELOAD": " ".join(preloads)},
                  "tcmalloc": {**env, "LD_PRELOAD": " ".join([str(tcmalloc)] + preloads)}}
    return malloc_env, malloc, tcmalloc, codegen_flags


def jax_backend() -> str:
    """JAX's default backend (``'cpu'``, ``'gpu'``, ``'tpu'``), asked of a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-c", "import jax; print(jax.default_backend())"],
                          capture_output=True, text=True)
    return proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 and proc.stdout.strip() else "cpu"


def gpu_environments(malloc: str) -> tuple[dict[str, dict[str, str]], str, str | None, list[str]]:
    """:func:`worker_environments` for ``--device gpu``: the user's ``XLA_FLAGS`` as they are (no host devices,
    no CPU code generation), and glibc's allocator unless tcmalloc is asked for by name."""
    malloc_env, malloc, tcmalloc, _ = worker_environments(1, "system" if malloc == "auto" else malloc)
    for env in malloc_env.values():
        env["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "")
    return malloc_env, malloc, tcmalloc, []


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(json.loads(args.worker))))
        return {}
    if "torch" in args.frameworks and "torch" not in versions():
        raise SystemExit("PyTorch is not installed: pip install -e '.[bench]', or pass --frameworks jax.")
    if args.device == "auto":
        args.device = "gpu" if jax_backend() == "gpu" else "cpu"
        print(f"--device auto: {args.device}", file=sys.stderr)
    if args.device == "gpu":
        malloc_env, args.malloc, tcmalloc, codegen_flags = gpu_environments(args.malloc)
    else:
        malloc_env, args.malloc, tcmalloc, codegen_flags = worker_environments(args.host_devices, args.malloc)
    env = malloc_env["system"]
    start = time.perf_counter()
    load_average = os.getloadavg()  # other work on the machine shows up in every number below
    specs = plan(args)
    rows: list[dict] = []
    peak: dict = {}
    skipped: list[str] = []
    for i, spec in enumerate(specs, 1):
        if args.time_limit is not None and spec["kind"] != "peak" and time.perf_counter() - start > args.time_limit:
            skipped = [describe({**s, "devices": args.host_devices}) for s in specs[i - 1:]]
            print(f"--time-limit {args.time_limit:g} s reached: {len(skipped)} measurement(s) not started",
                  file=sys.stderr)
            break
        if spec.get("sharded"):
            spec["devices"] = args.host_devices
        t0 = time.perf_counter()
        print(f"[{i}/{len(specs)}] {describe(spec)} ...", end="", file=sys.stderr, flush=True)
        worker_env = malloc_env[spec.get("malloc", args.malloc)]
        if spec.get("codegen") == "fast":
            worker_env = {**worker_env, "XLA_FLAGS": " ".join([worker_env["XLA_FLAGS"], *codegen_flags])}
        result = run_worker(spec, worker_env)
        if spec["kind"] == "peak":
            if "error" in result:
                raise SystemExit(f"\nthe matmul peak measurement failed: {result['error']}")
            peak = result
            print(f" {peak['gflop_s']:.1f} GFLOP/s", file=sys.stderr)
            continue
        rows.append({**{k: spec[k] for k in ("section", "model", "kind", "batch", "sharded")},
                     **({"threads": spec["threads"]} if "threads" in spec else {}),
                     **({"num_couplings": spec["num_couplings"]} if "num_couplings" in spec else {}),
                     **({"devices": spec["devices"]} if spec.get("sharded") else {}),
                     **({"codegen": spec["codegen"]} if "codegen" in spec else {}),
                     "malloc": spec["malloc"], **result})
        if "error" in result:
            print(f" FAILED ({time.perf_counter() - t0:.0f} s)\n{result['error']}", file=sys.stderr)
        else:
            infer = f", infer {result['infer_ex_s']:,.0f} ex/s" if "infer_ex_s" in result else ""
            compile_s = f", compile {result['compile_s']:.1f} s" if "compile_s" in result else ""
            print(f" {result['params']:,} params, train {result['train_ex_s']:,.0f} ex/s{infer}{compile_s} "
                  f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    add_ratios(rows, peak["gflop_s"])
    summary = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s), {platform.system()} {platform.release()}",
        "versions": versions(), "quick": args.quick, "load_average": load_average,
        "omp_wait_policy": env["OMP_WAIT_POLICY"], "malloc": args.malloc, "tcmalloc": tcmalloc,
        "codegen": args.codegen, "codegen_flags": codegen_flags if args.codegen == "fast" else [],
        "host_devices": args.host_devices, "threads": args.threads,
        "peak": peak, "rows": rows, "wall_s": time.perf_counter() - start,
    }
    if args.device == "gpu":
        summary.update(device="gpu", gpu_precision=args.gpu_precision)
    if args.time_limit is not None:
        summary.update(time_limit=args.time_limit, skipped=skipped)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(summary))
    print(markdown(summary), file=sys.stderr)
    print(f"wrote {args.out / 'results.json'} and results.md; wall {summary['wall_s']:.0f} s", file=sys.stderr)
    failed = [describe(r) for r in rows if "error" in r]
    if failed:
        raise SystemExit(f"{len(failed)} measurement(s) failed: {failed}")
    return summary


if __name__ == "__main__":
    main()
