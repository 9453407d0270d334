"""The Python half of ``benchmarks/accelerator.sh``: what the machine has, stand-ins for missing
modules, the MNIST run's minutes to an accuracy, and the summary. Standard library only, so that it
runs before anything is known to import.

    python benchmarks/accelerator_report.py env OUT/env.json
    python benchmarks/accelerator_report.py stand-ins DIR tqdm orbax.checkpoint   # import-only stand-ins
    python benchmarks/accelerator_report.py hide DIR chex scipy                   # make modules unimportable
    python benchmarks/accelerator_report.py mnist-epochs BENCH/results.json BUDGET_S
    python benchmarks/accelerator_report.py mnist-times WORKDIR OUT/mnist/time_to_accuracy.json
    python benchmarks/accelerator_report.py summary OUT
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any

#: Modules the script asks about: name to import -> what it is needed for.
MODULES = {
    "jax": "everything", "jaxlib": "everything", "flax": "everything", "optax": "everything",
    "numpy": "everything", "sklearn": "flowclass.sklearn, the moons data, tests/test_metrics.py",
    "orbax.checkpoint": "checkpoints (fit with a directory, runs.train: the MNIST part)",
    "tqdm": "progress bars (flowclass.training imports it)",
    "matplotlib": "figures (not drawn here: --no-figures)",
    "torch": "the PyTorch twins of the benchmark", "pytest": "the test part",
    "chex": "tests/test_bijectors.py, test_classifier.py, test_distributions.py",
    "scipy": "tests/test_classifier.py, test_distributions.py", "pandas": "one test of flowclass.sklearn",
    "xdist": "not used (one process holds the device)",
}
#: Thresholds of validation accuracy whose time is reported.
THRESHOLDS = (0.99, 0.994)
#: Training examples of the MNIST run (60,000 less the 5,000 held out for validation).
MNIST_TRAIN_EXAMPLES = 55_000


def _version(module: Any, name: str) -> str:
    version = getattr(module, "__version__", None)
    if version is None:
        from importlib import metadata

        for dist in (name.split(".")[0], name.replace(".", "-"), "scikit-learn" if name == "sklearn" else name):
            try:
                return metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
    return str(version)


def environment() -> dict:
    """Python, the importable modules (version or the import error), JAX's devices and backend with a
    computation on its default device, and PyTorch's CUDA device with one on it."""
    import importlib

    report: dict[str, Any] = {
        "python": sys.version.split()[0], "executable": sys.executable,
        "platform": f"{platform.machine()}, {os.cpu_count()} CPU(s), {platform.system()} {platform.release()}",
        "modules": {}, "missing": [],
    }
    for name in MODULES:
        try:
            module = importlib.import_module(name)
            report["modules"][name] = _version(module, name)
        except Exception as error:  # ImportError, or a broken install failing otherwise
            report["modules"][name] = None
            report["missing"].append(name)
            report.setdefault("import_errors", {})[name] = f"{type(error).__name__}: {error}"[:300]
    if report["modules"].get("jax"):
        try:
            import jax
            import jax.numpy as jnp

            report["jax_backend"] = jax.default_backend()
            report["jax_devices"] = [str(d) for d in jax.devices()]
            report["jax_device_kind"] = jax.devices()[0].device_kind
            report["jax_check"] = float(jnp.arange(1000.0).sum().block_until_ready())  # 499500.0
        except Exception as error:
            report["jax_error"] = f"{type(error).__name__}: {error}"[:500]
    if report["modules"].get("torch"):
        try:
            import torch

            report["torch_cuda_available"] = bool(torch.cuda.is_available())
            report["torch_cuda_version"] = torch.version.cuda
            if torch.cuda.is_available():
                report["torch_device"] = torch.cuda.get_device_name()
                report["torch_check"] = float(torch.arange(1000.0, device="cuda").sum().item())
        except Exception as error:
            report["torch_error"] = f"{type(error).__name__}: {error}"[:500]
    return report


def print_environment(report: dict) -> None:
    print(f"python {report['python']} ({report['executable']}); {report['platform']}")
    for name, version in report["modules"].items():
        status = version if version else f"MISSING ({report['import_errors'][name][:120]})"
        print(f"  {name:<17} {status:<40} {'' if version else '-> ' + MODULES[name]}")
    if "jax_backend" in report:
        print(f"jax default backend: {report['jax_backend']}; devices: {report['jax_devices']} "
              f"({report['jax_device_kind']}); a sum on it: {report['jax_check']}")
    if "jax_error" in report:
        print(f"jax FAILED: {report['jax_error']}")
    if "torch_cuda_available" in report:
        device = f"; {report['torch_device']}, a sum on it: {report['torch_check']}" if "torch_device" in report else ""
        print(f"torch.cuda.is_available(): {report['torch_cuda_available']} (CUDA {report['torch_cuda_version']})"
              + device)
    if "torch_error" in report:
        print(f"torch FAILED: {report['torch_error']}")


TQDM_STAND_IN = '''"""Stand-in written by benchmarks/accelerator.sh: tqdm is not installed here, so no progress bars."""


class tqdm:
    def __init__(self, iterable=None, *args, **kwargs):
        self.iterable = iterable

    def __iter__(self):
        return iter(() if self.iterable is None else self.iterable)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        pass

    def set_postfix(self, *args, **kwargs):
        pass

    def close(self):
        pass
'''

ORBAX_STAND_IN = '''"""Stand-in written by benchmarks/accelerator.sh: orbax-checkpoint is not installed here. flowclass
imports, but writing or reading a checkpoint fails with this message."""


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise ImportError(f"orbax-checkpoint is not installed (orbax.checkpoint.{name} was asked for): "
                      "checkpoints cannot be written or read here")
'''


def write_stand_ins(directory: Path, modules: list[str]) -> list[str]:
    """Import-only stand-ins for the missing ``tqdm`` (working, silent) and ``orbax.checkpoint`` (imports;
    any use raises ImportError), so that ``import flowclass`` works without them. Returns those written."""
    written = []
    for name in modules:
        if name == "tqdm":
            (directory / "tqdm").mkdir(parents=True, exist_ok=True)
            (directory / "tqdm" / "__init__.py").write_text(TQDM_STAND_IN)
            (directory / "tqdm" / "auto.py").write_text("from tqdm import tqdm  # noqa: F401\n")
        elif name == "orbax.checkpoint":
            (directory / "orbax" / "checkpoint").mkdir(parents=True, exist_ok=True)
            (directory / "orbax" / "__init__.py").write_text("")
            (directory / "orbax" / "checkpoint" / "__init__.py").write_text(ORBAX_STAND_IN)
        else:
            continue
        written.append(name)
    return written


def write_hidden(directory: Path, modules: list[str]) -> None:
    """Packages that fail to import, for a rehearsal of a machine without ``modules`` (top-level names)."""
    for name in modules:
        top = name.split(".")[0]
        (directory / top).mkdir(parents=True, exist_ok=True)
        (directory / top / "__init__.py").write_text(
            f"raise ImportError('{top} is hidden by ACCELERATOR_HIDE (benchmarks/accelerator.sh)')\n")


def mnist_epochs(bench_results: Path | None, budget_s: float, default: int = 27, most: int = 80,
                 efficiency: float = 0.5) -> tuple[int, str]:
    """Epochs for the MNIST run: as many as ``efficiency`` × the benchmark's flowclass train throughput of the
    default flow at batch 128 (same device) fits into ``budget_s``, between ``default`` and ``most``;
    ``default`` without a measurement. ``efficiency`` covers what ``fit`` adds to the bare step
    (augmentation, validation after each epoch). Returns ``(epochs, why)``."""
    results = _read_json(bench_results) if bench_results is not None else None
    rows = (results or {}).get("rows", [])
    # the main row of the default flow at batch 128 on one device, with the run's own allocator and code generation
    found = [r for r in rows if r.get("section") == "main" and r.get("model") == "mnist_fast_flow"
             and r.get("kind") == "jax" and r.get("batch") == 128 and not r.get("sharded") and "train_ex_s" in r
             and r.get("codegen") != "default" and r.get("malloc") == (results or {}).get("malloc")]
    if not found:
        return default, f"{default} (the default config's; no benchmark row of mnist_fast_flow at batch 128)"
    ex_s = max(r["train_ex_s"] for r in found)
    fits = int(efficiency * ex_s * budget_s / MNIST_TRAIN_EXAMPLES)
    epochs = max(default, min(most, fits))
    return epochs, (f"{epochs} ({efficiency} × {ex_s:,.0f} train ex/s measured × {budget_s:.0f} s / "
                    f"{MNIST_TRAIN_EXAMPLES:,} examples = {fits} epochs, clamped to [{default}, {most}])")


def _newest_checkpoint_history(workdir: Path) -> tuple[list[dict], str] | None:
    """The per-epoch history stored with the newest checkpoint (its JSON metadata), if any."""
    candidates = []
    for path in (workdir / "checkpoints").rglob("*"):
        if path.is_file() and "metadata" in (path.name, path.parent.name) and path.stat().st_size < 50_000_000:
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError, UnicodeDecodeError):
                continue
            if isinstance(data, dict) and isinstance(data.get("history"), list):
                candidates.append((len(data["history"]), str(path), data["history"]))
    if not candidates:
        return None
    _, path, history = max(candidates)
    return history, path


def time_to_accuracy(history: dict[str, list[float]], compile_s: float | None,
                     thresholds: tuple[float, ...] = THRESHOLDS) -> dict:
    """For each threshold: the first epoch whose ``val_accuracy`` reaches it, and the minutes of training
    until the end of that epoch (``epoch_s`` summed: its steps and its validation), plus ``compile_s``
    when known (the step blocks' compilation, before the first epoch).

    >>> h = {"val_accuracy": [0.98, 0.991, 0.995], "epoch_s": [30.0, 30.0, 30.0]}
    >>> t = time_to_accuracy(h, compile_s=6.0)
    >>> t["0.99"]["epoch"], t["0.99"]["minutes"], t["0.994"]["epoch"], round(t["0.994"]["minutes"], 2)
    (2, 1.1, 3, 1.6)
    """
    accuracy, seconds = history.get("val_accuracy", []), history.get("epoch_s", [])
    out: dict[str, Any] = {"epochs": len(accuracy), "best_val_accuracy": max(accuracy) if accuracy else None,
                           "compile_s": compile_s, "train_s": sum(seconds)}
    elapsed = [sum(seconds[: i + 1]) + (compile_s or 0.0) for i in range(len(seconds))]
    for threshold in thresholds:
        epoch = next((i for i, a in enumerate(accuracy) if a is not None and a >= threshold), None)
        out[f"{threshold:g}"] = (None if epoch is None or epoch >= len(elapsed)
                                 else {"epoch": epoch + 1, "minutes": elapsed[epoch] / 60})
    return out


def mnist_times(workdir: Path) -> dict:
    """:func:`time_to_accuracy` of the run in ``workdir``: from its ``results.json`` (history, compile time,
    test accuracy), or else (the run was stopped before writing it) from its newest checkpoint."""
    results = workdir / "results.json"
    if results.is_file():
        summary = json.loads(results.read_text())
        out = time_to_accuracy(summary["history"], summary.get("compile_s"))
        out.update(source=str(results), test_acc=summary.get("test_acc"), best_epoch=summary.get("best_epoch"),
                   epochs_scheduled=summary.get("epochs_scheduled"), wall_s=summary.get("wall_s"),
                   train_images_per_s=summary.get("train_images_per_s"), platform=summary.get("platform"),
                   test_bits_per_dim=summary.get("test_bits_per_dim"))
        return out
    stored = _newest_checkpoint_history(workdir)
    if stored is None:
        return {"error": f"no results.json and no checkpoint history in {workdir}"}
    rows, path = stored
    history = {key: [row.get(key) for row in rows] for key in ("val_accuracy", "epoch_s")}
    out = time_to_accuracy(history, None)
    out.update(source=f"{path} (no results.json: minutes exclude compilation)")
    return out


def _minutes(entry: Any) -> str:
    return "not reached" if not entry else f"{entry['minutes']:.2f} min (epoch {entry['epoch']})"


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def summary_markdown(out: Path) -> str:
    """``OUT/summary.md``: the parts (status, seconds), the machine, tests, benchmark main rows and MNIST."""
    lines = ["# flowclass on an accelerator (benchmarks/accelerator.sh)", ""]
    env = _read_json(out / "env.json") or {}
    if env:
        device = env.get("jax_device_kind", "?")
        lines += [f"Machine: {env.get('platform', '?')}; JAX backend **{env.get('jax_backend', '?')}** ({device}); "
                  f"torch CUDA: {env.get('torch_cuda_available', 'n/a')}; python {env.get('python')}; "
                  f"jax {env.get('modules', {}).get('jax')}, flax {env.get('modules', {}).get('flax')}, "
                  f"optax {env.get('modules', {}).get('optax')}, torch {env.get('modules', {}).get('torch')}. "
                  f"Missing: {', '.join(env.get('missing', [])) or 'nothing'}.", ""]
    lines += ["| part | status | seconds | result |", "|---|---|---|---|"]
    parts_file = out / "parts.tsv"
    if parts_file.is_file():
        for line in parts_file.read_text().splitlines():
            fields = line.split("\t") + ["", "", "", ""]
            lines.append(f"| {fields[0]} | {fields[1]} | {fields[2]} | {fields[3]} |")
    bench = _read_json(out / "bench" / "results.json")
    if bench:
        rows = [r for r in bench.get("rows", []) if r.get("section") == "main" and "error" not in r
                and not r.get("sharded") and r.get("codegen") != "default"
                and not (r.get("malloc") == "system" and bench.get("malloc") == "tcmalloc")]
        lines += ["", f"Benchmark main rows ({'GPU' if bench.get('device') == 'gpu' else 'CPU'}; "
                  f"matmul peak {bench['peak']['gflop_s']:,.0f} GFLOP/s; full table: bench/results.md):", "",
                  "| model | batch | flowclass train ex/s | PyTorch train ex/s | ratio train (infer) | "
                  "flowclass compile s |", "|---|---|---|---|---|---|"]
        seen = []
        for r in rows:
            if (r["model"], r["batch"]) in seen:
                continue
            seen.append((r["model"], r["batch"]))
            jax_row = next((q for q in rows if q["kind"] == "jax" and (q["model"], q["batch"]) == seen[-1]), None)
            torch_rows = [q for q in rows if q["kind"] == "torch" and (q["model"], q["batch"]) == seen[-1]]
            torch_row = max(torch_rows, key=lambda q: q["train_ex_s"]) if torch_rows else None
            ratio = "–"
            if jax_row and "train_ratio_vs_torch" in jax_row:
                ratio = f"{jax_row['train_ratio_vs_torch']:.2f}"
                if "infer_ratio_vs_torch" in jax_row:
                    ratio += f" ({jax_row['infer_ratio_vs_torch']:.2f})"
            lines.append(f"| {r['model']} | {r['batch']} | "
                         f"{format(jax_row['train_ex_s'], ',.0f') if jax_row else '–'} | "
                         f"{format(torch_row['train_ex_s'], ',.0f') if torch_row else '–'} | {ratio} | "
                         f"{format(jax_row['compile_s'], '.1f') if jax_row else '–'} |")
        if bench.get("skipped"):
            lines.append(f"\nNot measured (time limit): {len(bench['skipped'])} row(s).")
    mnist = _read_json(out / "mnist" / "time_to_accuracy.json")
    if mnist:
        lines += ["", "MNIST, default flow (experiments/mnist/configs/accelerator.py):", ""]
        if "error" in mnist:
            lines.append(f"* {mnist['error']}")
        else:
            best = mnist.get("best_val_accuracy")
            lines += [
                f"* epochs run {mnist['epochs']} of {mnist.get('epochs_scheduled', '?')}; best validation accuracy "
                + ("–" if best is None else f"{100 * best:.2f} %")
                + (f"; test accuracy {100 * mnist['test_acc']:.2f} %" if mnist.get("test_acc") is not None else "")
                + (f" at {mnist['test_bits_per_dim']:.2f} bits/dim" if mnist.get("test_bits_per_dim") else "")
                + (f"; {mnist['train_images_per_s']:,.0f} train images/s" if mnist.get("train_images_per_s") else "")
                + (f"; compile {mnist['compile_s']:.0f} s" if mnist.get("compile_s") is not None else ""),
                f"* minutes to 99.0 % validation accuracy: **{_minutes(mnist.get('0.99'))}**",
                f"* minutes to 99.4 % validation accuracy: **{_minutes(mnist.get('0.994'))}**",
                "* (minutes of training: compilation of the step blocks plus every epoch's steps and validation; "
                "data loading and the final test scoring not included)",
            ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    command, rest = argv[0], argv[1:]
    if command == "env":
        report = environment()
        Path(rest[0]).write_text(json.dumps(report, indent=2) + "\n")
        print_environment(report)
        return 0 if report.get("jax_check") == 499500.0 else 1
    if command == "stand-ins":
        print(" ".join(write_stand_ins(Path(rest[0]), rest[1:])))
        return 0
    if command == "hide":
        write_hidden(Path(rest[0]), rest[1:])
        return 0
    if command == "mnist-epochs":
        epochs, why = mnist_epochs(Path(rest[0]), float(rest[1]), *(int(v) for v in rest[2:4]))
        print(epochs)
        print(f"epochs: {why}", file=sys.stderr)
        return 0
    if command == "mnist-times":
        times = mnist_times(Path(rest[0]))
        Path(rest[1]).write_text(json.dumps(times, indent=2) + "\n")
        if "error" in times:
            print(times["error"])
            return 1
        print(f"epochs {times['epochs']}, best val accuracy {100 * (times['best_val_accuracy'] or math.nan):.2f} %; "
              f"99.0 %: {_minutes(times.get('0.99'))}; 99.4 %: {_minutes(times.get('0.994'))}")
        return 0
    if command == "summary":
        text = summary_markdown(Path(rest[0]))
        (Path(rest[0]) / "summary.md").write_text(text)
        print(text)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
