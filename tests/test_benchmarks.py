"""Smoke test of benchmarks/run.py: the moons flow and the FNN with tiny step counts (~30 s each); and of
benchmarks/peers.py: each peer library's worker at tiny sizes.

The PyTorch half and each peer library's test are skipped when it is not installed (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"
PEERS = RUN.parent / "peers.py"


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


@pytest.mark.slow
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


# --- benchmarks/peers.py ---

MOONS_FLOW_PARAMS = 54_030  # flowclass's moons flow, as test_jax_moons_and_fnn asserts
# A split coupling's conditioner sees only the kept half (1 input, not 2) and predicts only the transformed
# half (2 outputs, not 4): per coupling, flowclass's masked conditioner has 100 input weights and 2 × 101
# output weights that never act (they see or produce masked entries), and one log-scale bound a for a kept entry.
DEAD_PER_COUPLING = 100 + 2 * 101 + 1
SPLIT_PARAMS = MOONS_FLOW_PARAMS - 5 * DEAD_PER_COUPLING  # 52,515: the same function, with its learnt bounds a
TINY = {"warmup": 0, "repeats": 1, "min_seconds": 0.0, "scan_steps": 2, "infer_points": 256, "fit_epochs": 1,
        "fit_train": 256, "fit_val": 128, "threads": 1}


def _peer_worker(library: str) -> dict:
    run = _load_run_module()
    result = run.run_worker({"library": library, "parts": ["fit", "speed"], **TINY}, dict(os.environ), script=PEERS)
    assert "error" not in result, result.get("error")
    return result


def _identity_flow_nll() -> float:
    """``−mean log N(x; μ_y, I)`` on peers.py's batch: every library's flow starts as the identity map."""
    import numpy as np

    x, y = _load_run_module().make_batch("moons_flow", 128)
    means = np.array([[-4.0, 0.0], [4.0, 0.0]])
    return float(np.mean(0.5 * ((x - means[y]) ** 2).sum(-1) + math.log(2 * math.pi)))


@pytest.mark.parametrize(
    "library, params, why",
    [
        ("distrax", MOONS_FLOW_PARAMS, "masked coupling with flowclass's conditioner: identical"),
        ("flowjax", SPLIT_PARAMS - 5, "split coupling; its log-scale bound is fixed (not a parameter)"),
        ("zuko", SPLIT_PARAMS - 5, "split coupling; its own log-scale clamp has no parameter"),
        ("normflows", SPLIT_PARAMS, "split coupling with the learnt bound a in the param map"),
    ],
)
def test_peer_worker_at_tiny_sizes(library, params, why):
    """Each peer's worker runs every measurement; its model has the expected parameter count, starts as the
    identity (so its loss is flowclass's, with the same base and class means) and gives finite log p."""
    pytest.importorskip(library)
    result = _peer_worker(library)
    assert result["params"] == params, why
    assert result["init_nll"] == pytest.approx(_identity_flow_nll(), rel=1e-5)
    assert result["log_p_finite"] and math.isfinite(result["mean_log_p"])
    assert result["train_ex_s"] > 0 and result["infer_ex_s"] > 0 and result["infer_points"] == TINY["infer_points"]
    assert ("scan_ex_s" in result) == (library in ("distrax", "flowjax"))
    if library == "flowjax":  # fit_to_data: its own training loop
        assert result["fit_s"] > 0 and math.isfinite(result["fit_val_nll"]) and result["fit_train"] == 256


def test_distrax_peer_is_flowclass_moons_flow():
    """With flowclass's (perturbed) variables copied in, the distrax model computes the same log p(x | k)."""
    pytest.importorskip("distrax")
    import jax
    import numpy as np

    sys.path.insert(0, str(RUN.parent))
    import measure_jax
    import peers

    x, _ = _load_run_module().make_batch("moons_flow", 16)
    flow, _, _ = measure_jax.build("moons_flow")
    variables = jax.jit(flow.init)(jax.random.key(0), x)
    rng = np.random.default_rng(1)  # move the zero-initialised projections (and the bounds) off their init
    variables = {**variables, "params": jax.tree.map(
        lambda v: np.asarray(v) + 0.05 * rng.standard_normal(v.shape, np.float32), variables["params"])}
    expected = jax.jit(lambda v, x: flow.apply(v, x, method="class_log_likelihoods"))(variables, x)

    peer = peers.distrax_peer(x)
    layers = variables["params"]["flow"]
    params = {name: {**p["conditioner"], "zero_proj": p["zero_proj"], "log_scale_bound": p["log_scale_bound"]}
              for name, p in layers.items()}
    assert jax.tree.structure(params) == jax.tree.structure(peer.params(peer.carry))
    got = jax.jit(peer.log_likelihoods)(params, x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_interleaved_worker_times_every_jax_library_in_one_process():
    """peers.py's interleaved worker compiles each JAX library's step and loop in one process and times them in
    turns: every library gets at least ``repeats`` calls of each kind, and a speed from them."""
    pytest.importorskip("distrax")
    run = _load_run_module()
    spec = {"libraries": ["flowclass", "distrax"], "parts": ["interleaved"], **TINY, "repeats": 3}
    result = run.run_worker(spec, dict(os.environ), script=PEERS)
    assert "error" not in result, result.get("error")
    measured = result["interleaved"]
    assert sorted(measured) == ["distrax", "flowclass"]
    for library, m in measured.items():  # min_seconds 0: exactly `repeats` turns, one call each per turn
        assert (m["step_calls"], m["scan_calls"]) == (3, 3), library
        assert m["step_s"] > 0 and m["scan_s"] > 0 and m["step_ex_s"] * m["step_s"] == pytest.approx(128), library


def test_interleave_runs_every_library_in_turns_until_each_has_enough_timed_calls():
    """peers.interleave: warm-up calls untimed, the same number of calls per name, a random order per turn,
    and the first tenth of each name's calls left out when deciding whether there are enough."""
    sys.path.insert(0, str(RUN.parent))
    import peers

    log: list[str] = []
    clock = iter(range(10_000))
    calls = {name: (lambda name=name: log.append(name)) for name in ("a", "b", "c")}
    times = peers.interleave(calls, warmup=2, repeats=10, min_seconds=0.0, clock=lambda: float(next(clock)),
                             wait=lambda out: out)
    assert log[:6] == ["a", "a", "b", "b", "c", "c"]  # the warm-up, name by name
    turns = [log[i:i + 3] for i in range(6, len(log), 3)]
    # 10 calls keep only 9 (the first is left out), so an 11th turn: 10 kept
    assert len(turns) == 11 and all(sorted(turn) == ["a", "b", "c"] for turn in turns)
    assert len({tuple(turn) for turn in turns}) > 1  # the order changes between turns
    assert {name: len(t) for name, t in times.items()} == {"a": 11, "b": 11, "c": 11}
    # min_seconds counts only the kept calls: each call lasts 1 tick here, so 20 s need 20 kept: 22 calls
    clock = iter(range(10_000))
    times = peers.interleave(calls, warmup=0, repeats=1, min_seconds=20.0, clock=lambda: float(next(clock)),
                             wait=lambda out: out)
    assert {len(t) for t in times.values()} == {22}


def test_peers_main_reports_a_failed_interleaved_run_and_still_writes_the_table(tmp_path, monkeypatch):
    sys.path.insert(0, str(RUN.parent))
    import peers

    row = {"params": 1, "train_ex_s": 2.0, "train_best_ex_s": 3.0, "scan_ex_s": 4.0, "infer_ex_s": 5.0}
    monkeypatch.setattr(peers, "measure_library", lambda library, cfg, threads, env: dict(row))
    asked = []

    def failing_worker(spec, env, script=None):
        asked.append(spec["libraries"])
        return {"error": "worker exited with 1: boom"}

    monkeypatch.setattr(peers.run, "run_worker", failing_worker)
    monkeypatch.setattr(peers.run, "versions", lambda packages: {name: "0" for name in packages})  # no bench extra
    with pytest.raises(SystemExit, match="interleaved"):
        peers.main(["--quick", "--libraries", "flowclass,distrax,zuko", "--out", str(tmp_path)])
    assert asked == [["flowclass", "distrax"]]  # the JAX libraries only
    assert json.loads((tmp_path / "peers.json").read_text())["interleaved"]["error"].endswith("boom")
    assert "The interleaved run failed: worker exited with 1: boom" in (tmp_path / "peers.md").read_text()


def test_peer_table_ratios_and_markdown():
    sys.path.insert(0, str(RUN.parent))
    import peers

    rows = [{"library": "flowclass", "params": 54_030, "train_ex_s": 200.0, "train_best_ex_s": 250.0,
             "scan_ex_s": 400.0, "infer_ex_s": 1000.0, "fit_s": 2.0, "fit_val_nll": 1.5},
            {"library": "zuko", "params": 52_510, "train_ex_s": 100.0, "train_best_ex_s": 125.0, "infer_ex_s": 500.0},
            {"library": "flowjax", "error": "worker exited with 1: boom"}]
    rows.insert(1, {"library": "distrax", "params": 54_030, "train_ex_s": 400.0, "train_best_ex_s": 500.0,
                    "scan_ex_s": 800.0, "infer_ex_s": 500.0})
    calls = {"step_calls": 9, "scan_calls": 4}
    peers.add_interleaved(rows, {"flowclass": {"step_ex_s": 150.0, "scan_ex_s": 300.0, **calls},
                                 "distrax": {"step_ex_s": 100.0, "scan_ex_s": 400.0, **calls},
                                 "flowjax": {"step_ex_s": 1.0, "scan_ex_s": 1.0, **calls}})
    assert "step_interleaved_ex_s" not in rows[3]  # a failed row stays as it is
    peers.add_ratios(rows)
    assert rows[2]["flowclass_ratio"] == {"train_ex_s": 2.0, "train_best_ex_s": 2.0, "infer_ex_s": 2.0}
    assert rows[1]["flowclass_ratio"] == {"train_ex_s": 0.5, "train_best_ex_s": 0.5, "scan_ex_s": 0.5,
                                          "infer_ex_s": 2.0, "step_interleaved_ex_s": 1.5,
                                          "scan_interleaved_ex_s": 0.75}
    summary = {"date": "today", "machine": "m", "versions": {"flowclass": "0", "zuko": "1.6.0"}, "quick": True,
               "config": peers.QUICK, "load_average": (0.0, 0.0, 0.0), "omp_wait_policy": "PASSIVE",
               "malloc": "system", "tcmalloc": None, "codegen_flags": [], "threads": 2, "rows": rows, "wall_s": 1.0}
    table = peers.markdown(summary)
    assert "| zuko 1.6.0 |" in table and "| — | 2.00 / — / 2.00 / — |" in table and "error: worker exited" in table
    assert "| 100 / 400 | 0.50 / 0.50 / 2.00 / —; 1.50 / 0.75 |" in table  # distrax: interleaved speeds and ratios
    assert "| 150 / 300 |  |" in table  # flowclass: its interleaved speeds, no ratio
    assert {line.count("|") for line in table.splitlines() if line.startswith("|")} == {10}  # 9 cells in every row


def test_peer_rows_are_medians_over_rounds_and_a_failed_round_fails_the_row():
    sys.path.insert(0, str(RUN.parent))
    import peers

    # skewed rounds, the median in the middle: not the mean, the first or the last round
    rounds = [{"params": 7, "train_ex_s": 300.0, "train_best_ex_s": 310.0, "infer_ex_s": 9.0, "infer_best_ex_s": 9.5,
               "fit_s": 4.0},
              {"params": 7, "train_ex_s": 110.0, "train_best_ex_s": 400.0, "infer_ex_s": 5.0, "infer_best_ex_s": 9.9,
               "fit_s": 2.1},
              {"params": 7, "train_ex_s": 100.0, "train_best_ex_s": 220.0, "infer_ex_s": 5.2, "infer_best_ex_s": 6.0,
               "fit_s": 2.0}]
    row = peers.median_over_rounds(rounds)
    assert (row["train_ex_s"], row["infer_ex_s"], row["fit_s"]) == (110.0, 5.2, 2.1)
    assert (row["train_best_ex_s"], row["infer_best_ex_s"]) == (400.0, 9.9)
    assert row["train_ex_s_rounds"] == [300.0, 110.0, 100.0] and row["rounds"] == 3 and "scan_ex_s" not in row
    assert peers.median_over_rounds([rounds[0], {"error": "worker exited with 1"}]) == {"error": "worker exited with 1"}
    assert peers.parse_args([]).rounds == 3 and peers.parse_args(["--quick"]).rounds == 1
    assert peers.parse_args(["--libraries", "flowjax,flowclass,flowjax"]).libraries == ["flowjax", "flowclass"]
    with pytest.raises(SystemExit):
        peers.parse_args(["--rounds", "0"])


def test_profile_step_splits_a_step_into_its_phases():
    """benchmarks/profile_step.py's worker times forward, forward+backward and the whole step of flowclass's
    moons flow; the table turns them into per-phase milliseconds and flowclass / PyTorch ratios."""
    sys.path.insert(0, str(RUN.parent))
    try:
        import profile_step
    finally:
        sys.path.remove(str(RUN.parent))
    profile_step.TIMING.update(warmup=1, min_repeats=2, min_seconds=0.0)
    phases = profile_step.worker({"model": "moons_flow", "batch": 16, "framework": "jax", "threads": 1})
    assert set(phases) == set(profile_step.PHASES) and all(0 < t < 10 for t in phases.values())
    rows = profile_step.table("m", 16, {"forward": 0.001, "forward+backward": 0.003, "step": 0.004},
                              {"forward": 0.002, "forward+backward": 0.004, "step": 0.008})
    assert "| | forward | 1.0 | 2.0 | 2.00× |" in rows and "| | backward | 2.0 | 2.0 | 1.00× |" in rows
    assert "| | whole step | 4.0 | 8.0 | 2.00× |" in rows
