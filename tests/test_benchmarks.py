"""Smoke test of benchmarks/run.py: the moons flow and the FNN with tiny step counts (~30 s each).

The PyTorch half is skipped when torch is not installed (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


def _load_run_module():
    spec = importlib.util.spec_from_file_location("benchmark_run", RUN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(out: Path, frameworks: str) -> dict:
    cmd = [sys.executable, str(RUN), "--quick", "--no-scaling", "--models", "moons_flow,fnn",
           "--frameworks", frameworks, "--host-devices", "1", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "results.md").read_text().count("| moons_flow |") == frameworks.count(",") + 1
    return json.loads((out / "results.json").read_text())


def test_plan_covers_models_and_sweeps():
    run = _load_run_module()
    specs = run.plan(run.parse_args(["--quick", "--frameworks", "jax", "--models", "moons_flow,mnist_fast_flow"]))
    sections = {s["section"] for s in specs}
    assert sections == {"peak", "main", "batch_scaling", "coupling_scaling"}
    assert [s["num_couplings"] for s in specs if s["section"] == "coupling_scaling"] == list(run.QUICK["couplings"])
    full = run.plan(run.parse_args(["--models", "mnist_fast_flow", "--frameworks", "jax", "--host-devices", "2"]))
    assert any(s.get("sharded") for s in full) and all(s["batch"] % 2 == 0 for s in full if s.get("sharded"))


def test_plan_measures_default_codegen_beside_the_fast_flags_for_the_mnist_flows():
    run = _load_run_module()
    argv = ["--models", "moons_flow,mnist_fast_flow", "--frameworks", "jax", "--no-scaling", "--malloc", "system"]
    fast = [s for s in run.plan(run.parse_args(argv)) if s["kind"] == "jax"]
    ablations = [(s["model"], s["sharded"]) for s in fast if s["codegen"] == "default"]
    assert ablations == [("mnist_fast_flow", False), ("mnist_fast_flow", True)]
    default = [s for s in run.plan(run.parse_args(argv + ["--codegen", "default"])) if s["kind"] == "jax"]
    assert {s["codegen"] for s in default} == {"default"} and len(default) == len(fast) - 2


def test_jax_moons_and_fnn(tmp_path):
    summary = _run(tmp_path, "jax")
    rows = {r["model"]: r for r in summary["rows"]}
    assert rows["moons_flow"]["params"] == 54_030 and rows["fnn"]["params"] == 10_602
    for row in rows.values():
        assert row["train_ex_s"] > 0 and row["infer_ex_s"] > 0 and row["compile_s"] > 0
        assert row["flops_per_step"] > 0 and 0 < row["pct_of_peak"]
    assert summary["peak"]["gflop_s"] > 0


def test_torch_twins_match_parameter_counts(tmp_path):
    pytest.importorskip("torch")
    summary = _run(tmp_path, "jax,torch")
    by_kind = {(r["model"], r["kind"]): r for r in summary["rows"]}
    for model in ("moons_flow", "fnn"):
        assert by_kind[(model, "jax")]["params"] == by_kind[(model, "torch")]["params"]
        assert by_kind[(model, "jax")]["train_ratio_vs_torch"] > 0


@pytest.mark.parametrize("model", ["moons_flow", "mnist_fast_flow"])
def test_torch_twin_computes_the_same_log_likelihoods(model):
    """The PyTorch port is the same function: with flowclass's (perturbed) variables copied in,
    ``log p(x | k)`` agrees to float32 precision."""
    pytest.importorskip("torch")
    import jax
    import numpy as np
    import torch

    sys.path.insert(0, str(RUN.parent))
    import measure_jax
    import torch_models

    run = _load_run_module()
    x, _ = run.make_batch(model, 8)
    flow, _, _ = measure_jax.build(model)
    variables = jax.jit(flow.init)(jax.random.key(0), x)
    rng = np.random.default_rng(1)  # move the zero-initialised projections off zero
    params = jax.tree.map(lambda v: np.asarray(v) + 0.05 * rng.standard_normal(v.shape, np.float32),
                          variables["params"])
    variables = {**variables, "params": params}
    expected = np.asarray(jax.jit(lambda v, x: flow.apply(v, x, method="class_log_likelihoods"))(variables, x))
    means = np.asarray(flow.apply(variables, method=lambda m: m.base.class_means))

    twin, _, _ = torch_models.build(model)
    torch_models.load_flax_variables(twin, variables, means)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2) if x.ndim == 4 else torch.from_numpy(x)
    with torch.no_grad():
        got = twin.class_log_likelihoods(xt).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
