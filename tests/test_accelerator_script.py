"""benchmarks/accelerator.sh, without an accelerator: the script parses, its plumbing runs end to end
with the long parts skipped (on a machine without tqdm and orbax-checkpoint too), and what it relies on
(run.py --device gpu's plan and table, the MNIST config, the report helpers) behaves. ~15 s.

The full rehearsal is ``ACCELERATOR_SMOKE=1 bash benchmarks/accelerator.sh`` (~5 min on 2 cores).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "accelerator.sh"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run():
    return _load("benchmark_run_for_accelerator", ROOT / "benchmarks" / "run.py")


@pytest.fixture(scope="module")
def report():
    return _load("accelerator_report", ROOT / "benchmarks" / "accelerator_report.py")


def test_script_parses_and_run_py_takes_the_device_options():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--device", "cpu", "--help"],
                          capture_output=True, text=True, check=True)
    for option in ("--device", "--gpu-precision", "--min-seconds", "--time-limit"):
        assert option in done.stdout


def test_gpu_plan_has_device_rows_only_and_cpu_plan_is_unchanged(run):
    models = ["--models", "mnist_fast_flow,moons_flow", "--frameworks", "jax,torch", "--no-scaling"]
    gpu = run.plan(run.parse_args([*models, "--device", "gpu", "--min-seconds", "1"]))
    main = [s for s in gpu if s["section"] == "main"]
    assert all(s["device"] == "gpu" and s["gpu_precision"] == "tf32" for s in gpu)
    assert not any(s["sharded"] or "codegen" in s for s in main)  # no host-device, allocator or codegen rows
    assert sorted({(s["model"], s["batch"]) for s in main}) == [  # the MNIST flows also at batch 1024
        ("mnist_fast_flow", 128), ("mnist_fast_flow", 1024), ("moons_flow", 128)]
    assert len(main) == 6 and all(s["min_seconds"] == 1 for s in main)
    assert gpu[0] == {"kind": "peak", "n": run.GPU["peak_n"], "section": "peak", "device": "gpu",
                      "gpu_precision": "tf32"}
    cpu = run.plan(run.parse_args(models))
    assert not any("device" in s for s in cpu) and {s["batch"] for s in cpu if s["section"] == "main"} == {128}
    assert any(s.get("sharded") for s in cpu)  # the CPU run keeps its sharded rows
    assert cpu == run.plan(run.parse_args([*models, "--device", "cpu"]))


def test_gpu_table_names_the_device(run):
    row = {"section": "main", "model": "cnn", "batch": 128, "sharded": False, "params": 10, "train_ex_s": 100.0,
           "train_best_ex_s": 110.0, "train_step_s": 1.28, "infer_ex_s": 300.0, "peak_mib": 900.0,
           "device_peak_mib": 55.0, "malloc": "system", "flops_per_step": 1e9}
    rows = [{**row, "kind": "jax", "compile_s": 1.0, "xla_mib": 12.0, "gflop_s": 0.8},
            {**row, "kind": "torch", "threads": 2, "train_ex_s": 50.0, "train_best_ex_s": 60.0}]
    run.add_ratios(rows, peak_gflop_s=100.0)
    summary = {"date": "today", "machine": "x86_64", "versions": {"jax": "1", "flax": "2", "torch": "3"},
               "quick": True, "wall_s": 5.0, "peak": {"n": 8192, "gflop_s": 100.0, "device_kind": "NVIDIA H200"},
               "rows": rows, "device": "gpu", "gpu_precision": "tf32", "time_limit": 10.0, "skipped": ["main: fnn"]}
    text = run.markdown(summary)
    assert "**NVIDIA H200**" in text and "PyTorch (cuda)" in text and "TF32 allowed" in text
    assert "| 55 | 12 |" in text and "| 2.00 / " in text
    assert "Not measured (--time-limit 10 s reached): main: fnn" in text


def test_accelerator_config_is_default_with_a_budget():
    from experiments.mnist.configs import accelerator, default
    from flowclass.config import differences

    config = accelerator.get_config()
    assert config.train.time_budget_s == 240.0 and config.train.batch_size == 128
    assert differences(default.get_config(), config) == [("train.time_budget_s", 1200.0, 240.0)]


def test_minutes_to_accuracy_from_results_or_checkpoint(report, tmp_path):
    history = {"val_accuracy": [0.97, 0.9905, 0.9942, 0.993], "epoch_s": [20.0, 20.0, 20.0, 20.0]}
    (tmp_path / "results.json").write_text(json.dumps({"history": history, "compile_s": 10.0, "test_acc": 0.993}))
    times = report.mnist_times(tmp_path)
    assert times["0.99"] == {"epoch": 2, "minutes": 50.0 / 60} and times["0.994"] == {"epoch": 3, "minutes": 70.0 / 60}
    (tmp_path / "results.json").unlink()
    stored = tmp_path / "checkpoints" / "4" / "metadata"
    stored.mkdir(parents=True)
    rows = [{"val_accuracy": a, "epoch_s": s} for a, s in zip(history["val_accuracy"], history["epoch_s"], strict=True)]
    (stored / "metadata").write_text(json.dumps({"epoch": 4, "history": rows}))
    times = report.mnist_times(tmp_path)  # a run stopped before results.json: the checkpoint's history
    assert times["0.994"] == {"epoch": 3, "minutes": 1.0} and "compilation" in times["source"]
    assert report.time_to_accuracy({"val_accuracy": [0.5], "epoch_s": [1.0]}, None)["0.99"] is None


def test_mnist_epochs_fit_the_measured_speed(report, tmp_path):
    results = tmp_path / "results.json"
    row = {"section": "main", "model": "mnist_fast_flow", "kind": "jax", "batch": 128, "sharded": False,
           "malloc": "system"}
    results.write_text(json.dumps({"malloc": "system", "rows": [{**row, "train_ex_s": 40_000.0}]}))
    assert report.mnist_epochs(results, 240.0)[0] == 80  # 87 fit: at most 80
    results.write_text(json.dumps({"malloc": "system", "rows": [{**row, "train_ex_s": 20_000.0}]}))
    assert report.mnist_epochs(results, 240.0)[0] == 43
    assert report.mnist_epochs(tmp_path / "absent.json", 240.0)[0] == 27


def test_plumbing_end_to_end_without_tqdm_and_orbax(tmp_path):
    # environment, import (from this checkout), summary; tqdm and orbax hidden: stand-ins let flowclass import
    work, out = tmp_path / "work", tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "ACCELERATOR_WORK": str(work), "PYTHON": sys.executable,
           "ACCELERATOR_SKIP": "install,tests,bench,mnist", "ACCELERATOR_HIDE": "tqdm,orbax"}
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    parts = [line.split("\t") for line in (work / "parts.tsv").read_text().splitlines()]
    assert [p[:2] for p in parts] == [["environment", "ok"], ["install", "ok"], ["tests", "skipped"],
                                      ["benchmark", "skipped"], ["mnist", "skipped"], ["total", ""]]
    assert "missing: orbax.checkpoint, tqdm" in parts[0][3] and "via PYTHONPATH" in parts[1][3]
    assert json.loads((work / "env.json").read_text())["jax_check"] == 499500.0
    assert "| install | ok |" in (work / "summary.md").read_text()
    # with ACCELERATOR_WORK, OUT gets the summary and one archive of the rest (a tool may bring back few files)
    assert sorted(p.name for p in out.iterdir()) == ["accelerator-out.tar.gz", "summary.md"]
    with tarfile.open(out / "accelerator-out.tar.gz") as archive:
        assert {"./parts.tsv", "./env.json", "./summary.md"} <= set(archive.getnames())
    probe = ("import tqdm.auto, orbax.checkpoint as ocp\n"
             "assert list(tqdm.auto.tqdm(range(3))) == [0, 1, 2]\n"
             "try:\n    ocp.CheckpointManager\nexcept ImportError as e:\n    print('refused:', e)\n")
    stand_ins = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                               env={**os.environ, "PYTHONPATH": f"{work / 'stand-ins'}:{work / 'hidden'}"})
    assert "refused: orbax-checkpoint is not installed" in stand_ins.stdout
