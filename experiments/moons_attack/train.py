"""Trains the three models as runs, attacks them from every start point and measures the paths
against the true moons density.

:func:`train_and_evaluate` is the whole experiment. The workdir holds ``experiment.json`` (the
config), one run per model (``fnn/``, ``flow_classifier/``, ``unconditional_flow/``:
``flowclass.load_run`` reloads each; their ``results.json`` and ``test_logits.npy``), the summary
``results.json``, ``table.md`` and :data:`~.report.FIGURES`.

Attacks (Adam at ``attack_lr``, as in the slides; success = ``p(target | x) > threshold``):

* confidence — ascend ``log p(target | x)`` of the FNN, stop at success or ``max_steps``;
* likelihood — ascend ``log p(x | target)`` of the flow classifier for ``likelihood_steps`` steps;
* latent     — ascend the FNN's ``log p(target | f⁻¹(z))`` over the unconditional flow's latent
               code ``z``, starting at ``z = f(x₀)``, stop at success or ``max_steps``;
* confidence on the flow classifier — an extra row: the slides' objective on the flow.

Start points: the slides' four, (2, 0.25), (-0.5, -0.5), (0, 0), (1, -0.5), and a grid over the
data's bounding box plus a margin, towards each class; and the test points towards the class
they do not belong to. A point is on the manifold when its true log-density exceeds the
``percentile``-th percentile of the test data's (:mod:`flowclass.manifold`).
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

import flowclass as fc
from flowclass import attacks, manifold, runs
from flowclass.data import bayes_labels, default_cache_dir, moons_log_density

from . import report
from .configs import MODELS, MoonsAttackConfig

EXPERIMENT_FILE = "experiment.json"
LOGITS_FILE = "test_logits.npy"
TABLE_FILE = "table.md"
SLIDES_STARTS = np.array([[2.0, 0.25], [-0.5, -0.5], [0.0, 0.0], [1.0, -0.5]], np.float32)
DENSITY_NODES = 512  # quadrature nodes for the true density along paths (spacing 0.06 σ at noise 0.1)
ATTACKS = ("confidence", "likelihood", "latent", "confidence_flow")
LABELS = {
    "confidence": "confidence (FNN)",
    "likelihood": "class likelihood (flow classifier)",
    "latent": "latent (unconditional flow + FNN)",
    "confidence_flow": "confidence (flow classifier), extra",
}
POPULATIONS = {
    "grid": "grid points, towards the class they do not belong to (Bayes label)",
    "grid_on_manifold": "the same, only those starting on the manifold",
    "test": "test points, towards the class they do not belong to",
}


class Trained(NamedTuple):
    """A run of the experiment: its model and selected weights, and what its training reported."""

    model: Any
    variables: dict
    info: dict


def train_and_evaluate(
    config: MoonsAttackConfig,
    workdir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    data_dir: str | Path | None = None,
    progress: bool = True,
    figures: bool = True,
) -> dict:
    """Runs the experiment ``config`` in ``workdir``; returns the summary it writes to ``results.json``.

    Args:
      resume: continue the experiment stored in ``workdir``: each run resumes from its newest
        checkpoint (a finished run is only reloaded); refused if ``config`` differs from the stored one.
      overwrite: delete the experiment stored in ``workdir`` first.
      data_dir: unused (the moons are generated); accepted as every experiment's entry point does.
      figures: write :data:`~.report.FIGURES`.

    Raises:
      flowclass.runs.RunExistsError: ``workdir`` holds an experiment or a run, and neither
        ``resume`` nor ``overwrite``; before any training.
      ValueError: ``resume`` with another config (the first difference named), or both flags;
        ``test_starts`` larger than the test split; before any training.
      OSError: ``workdir`` cannot be written.
    """
    del data_dir
    start = time.perf_counter()
    splits = runs.load_splits(config.run("fnn"))
    x_test, y_test = splits.test
    if config.test_starts > len(x_test):
        raise ValueError(f"test_starts must be <= the {len(x_test)} test points; got {config.test_starts}.")
    workdir = prepare_workdir(config, workdir, resume=resume, overwrite=overwrite)

    models = {name: train_model(config, name, workdir / name, splits, resume=resume, overwrite=overwrite,
                                progress=progress) for name in MODELS}
    true_test_lp = moons_log_density(x_test, config.noise, num_nodes=DENSITY_NODES)
    tau = manifold.manifold_threshold(true_test_lp, config.percentile)
    x_all = np.concatenate([splits.train[0], splits.val[0]])
    x0, target, index, box = start_points(x_all, x_test, y_test, config)
    results, timing = run_attacks(models, x0, target, config)
    masks = populations(x0, target, index, config.noise, tau)
    tables, fractions, slides_rows = measure(results, masks, x0, index["slides"], tau, splits.train[0], config.noise)

    summary = {
        "noise": config.noise, "epochs": {name: config.run(name).train.epochs for name in MODELS},
        "seed": config.seed, "grid": f"{config.grid}x{config.grid}",
        "n_train": len(splits.train[0]), "n_val": len(splits.val[0]), "n_test_starts": len(index["test"]),
        "threshold": config.threshold, "percentile": config.percentile, "tau": tau,
        "true_test_nll": float(-np.mean(true_test_lp)), "attack_lr": config.attack_lr,
        "max_steps": config.max_steps, "likelihood_steps": config.likelihood_steps,
        "density_quadrature_nodes": DENSITY_NODES, "models": {name: m.info for name, m in models.items()},
        "populations": POPULATIONS, "attack_labels": LABELS, "attacks": tables,
        "slides_points": slides_rows, "timing": timing,
    }
    if figures:
        report.save_figures(workdir, config, models, results, fractions, masks, index, tau, splits, box,
                            labels=LABELS, density_nodes=DENSITY_NODES)
    summary["wall_s"] = time.perf_counter() - start
    summary = report.strict_json(summary)
    (workdir / TABLE_FILE).write_text(report.markdown(summary))
    runs.write_results(workdir, summary)
    return summary


# --- the runs ---------------------------------------------------------------------------


def train_model(config: MoonsAttackConfig, name: str, run_dir: Path, splits: runs.Splits, *, resume: bool,
                overwrite: bool, progress: bool) -> Trained:
    """Trains (or, with ``resume``, continues or reloads) the run ``name`` in ``run_dir`` with
    :func:`flowclass.runs.train`; writes its ``results.json`` and ``test_logits.npy``."""
    run_config = config.run(name)
    if run_config.model.num_classes == 1:  # the unconditional flow: every point is of its one "class"
        splits = runs.Splits(*((x, np.zeros_like(y)) for x, y in splits))
    start = time.perf_counter()
    run = runs.train(run_config, run_dir, splits=splits, resume=resume, overwrite=overwrite, progress=progress)
    result, (x_test, y_test) = run.result, splits.test
    model, variables = run.model, result.state.variables
    logits = fc.predict_logits(model.apply, variables, x_test)
    np.save(run.workdir / LOGITS_FILE, logits)
    info = {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run, "fit_s": time.perf_counter() - start,
            "val_loss": float(result.history["val_loss"][result.best_epoch - 1])}
    if run_config.model.num_classes > 1:
        info["test_acc"] = float(np.mean(np.argmax(logits, -1) == y_test))
    else:
        info["test_nll"] = float(-np.mean(fc.predict_logits(model.apply, variables, x_test,
                                                             method="marginal_log_prob")))
    runs.write_results(run.workdir, info)
    return Trained(model, variables, info)


def prepare_workdir(config: MoonsAttackConfig, workdir: str | Path, *, resume: bool = False,
                    overwrite: bool = False) -> Path:
    """Checks ``workdir`` for ``config`` and stores it there (``experiment.json``), before any training
    (:func:`flowclass.runs.prepare_workdir`; the runs, summary, table and figures belong to it)."""
    return runs.prepare_workdir(config, workdir, resume=resume, overwrite=overwrite, config_file=EXPERIMENT_FILE,
                                owned=(*MODELS, TABLE_FILE, *report.FIGURES))


def start_points(x_all: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, config: MoonsAttackConfig):
    """All start points and targets in one batch, the index of each group (``slides``, ``grid``,
    ``test``) and the grid's box ``(low, high)``."""
    low, high = x_all.min(0) - 0.5, x_all.max(0) + 0.5
    gx, gy = np.meshgrid(np.linspace(low[0], high[0], config.grid), np.linspace(low[1], high[1], config.grid))
    grid = np.stack([gx.ravel(), gy.ravel()], -1).astype(np.float32)
    test = x_test[: config.test_starts]
    groups = {  # name -> (x0, target)
        "slides": (np.repeat(SLIDES_STARTS, 2, 0), np.tile([0, 1], len(SLIDES_STARTS))),
        "grid": (np.repeat(grid, 2, 0), np.tile([0, 1], len(grid))),
        "test": (test, 1 - y_test[: config.test_starts]),
    }
    x0 = np.concatenate([g[0] for g in groups.values()]).astype(np.float32)
    target = np.concatenate([g[1] for g in groups.values()]).astype(np.int32)
    index, first = {}, 0
    for name, (points, _) in groups.items():
        index[name] = np.arange(first, first + len(points))
        first += len(points)
    return x0, target, index, (low, high)


# --- attacks ------------------------------------------------------------------------------


@functools.lru_cache
def _adam(learning_rate: float) -> optax.GradientTransformation:
    """One optimiser object per learning rate, so repeated runs reuse the compiled attacks."""
    return optax.adam(learning_rate)


def run_attacks(models: dict[str, Trained], x0: np.ndarray, target: np.ndarray, config: MoonsAttackConfig):
    """Runs every attack on all start points at once; returns the results and timings by attack."""
    fnn, flow, uflow = (models[name] for name in MODELS)
    fnn_logits = functools.partial(fnn.model.apply, fnn.variables)
    optimizer = _adam(config.attack_lr)
    stopping = {"optimizer": optimizer, "max_steps": config.max_steps, "threshold": config.threshold}
    attack = {
        "confidence": lambda: attacks.confidence_attack(fnn_logits, x0, target, **stopping),
        "likelihood": lambda: attacks.likelihood_attack(
            functools.partial(flow.model.apply, flow.variables, method="class_log_likelihoods"), x0, target,
            log_prior=flow.model.apply(flow.variables, method="log_weights"), optimizer=optimizer,
            steps=config.likelihood_steps, threshold=config.threshold),
        "latent": lambda: attacks.latent_attack(
            fnn_logits, functools.partial(uflow.model.apply, uflow.variables, method="encode"),
            functools.partial(uflow.model.apply, uflow.variables, method="decode"), x0, target, **stopping),
        "confidence_flow": lambda: attacks.confidence_attack(
            functools.partial(flow.model.apply, flow.variables), x0, target, **stopping),
    }
    results, timing = {}, {}
    for name in ATTACKS:
        start = time.perf_counter()
        results[name] = jax.device_get(jax.block_until_ready(attack[name]()))
        seconds = time.perf_counter() - start
        steps = int(results[name].num_steps.max())  # later steps are skipped: every path had stopped
        timing[name] = {"wall_s_incl_compile": seconds, "trajectories": len(x0), "steps_computed": steps,
                        "trajectory_steps_per_s": len(x0) * steps / seconds}
        print(f"{LABELS[name]}: {len(x0)} trajectories x {steps} steps in {seconds:.2f} s", file=sys.stderr)
    return results, timing


# --- measures -----------------------------------------------------------------------------


def true_labels(x: np.ndarray, noise: float) -> np.ndarray:
    """The Bayes-optimal labels of ``x`` (cached under :func:`flowclass.data.default_cache_dir`)."""
    return bayes_labels(np.asarray(x, np.float32), noise, cache_dir=default_cache_dir(), num_nodes=DENSITY_NODES)


def populations(x0, target, index, noise: float, tau: float) -> dict[str, np.ndarray]:
    """Boolean masks over all trajectories, one per population of :data:`POPULATIONS`."""
    n, grid = len(x0), index["grid"]
    other = true_labels(x0[grid], noise) != target[grid]
    start_on = moons_log_density(x0[grid], noise, num_nodes=DENSITY_NODES) > tau
    masks = {name: np.zeros(n, bool) for name in POPULATIONS}
    masks["grid"][grid[other]] = True
    masks["grid_on_manifold"][grid[other & start_on]] = True
    masks["test"][index["test"]] = True
    return masks


def _share(values, select) -> float:
    """Mean of the boolean ``values`` over the ``select`` mask (NaN when it selects nothing)."""
    return float(values[select].mean()) if select.any() else float("nan")


def measure(results, masks, x0, slides_index, tau, x_train, noise: float):
    """Per attack: a summary per population, per-path on-manifold shares, and the slides' points' rows."""
    density = functools.partial(moons_log_density, noise=noise, num_nodes=DENSITY_NODES)
    tables, fractions, slides_rows = {}, {}, {}
    for name, r in results.items():
        paths = manifold.path_log_density(r.inputs, r.num_steps, density)
        tables[name] = {pop: manifold.summarize_paths(r, paths, threshold=tau, reference=x_train, select=mask)
                        for pop, mask in masks.items() if mask.any()}
        last = (r.num_steps, np.arange(len(r.num_steps)))
        in_target = true_labels(r.inputs[last], noise) == r.target
        on_end = paths[last] > tau
        tables[name].update({pop: {"n": 0} for pop, mask in masks.items() if not mask.any()})
        for pop, mask in masks.items():
            if not mask.any():
                continue
            ok = mask & r.succeeded & (r.num_steps > 0)
            tables[name][pop]["successful"].update(
                ends_in_target_class=_share(in_target, ok), on_manifold_adversarial=_share(on_end & ~in_target, ok))
            failed = mask & ~r.succeeded
            tables[name][pop]["failures"] = {
                "n": int(failed.sum()),
                "by_target": np.bincount(r.target[failed], minlength=2).tolist(),
                "median_best_target_prob": float(np.median(r.target_prob[:, failed].max(0))) if failed.any() else None,
            }
        fractions[name] = manifold.on_manifold_fraction(paths, r.num_steps, tau)
        slides_rows[name] = [
            {"start": x0[i].tolist(), "target": int(r.target[i]), "success_step": int(r.success_step[i]),
             "num_steps": int(r.num_steps[i]), "final": r.inputs[r.num_steps[i], i].tolist(),
             "final_target_prob": float(r.target_prob[r.num_steps[i], i]),
             "on_manifold_step_fraction": None if np.isnan(fractions[name][i]) else float(fractions[name][i]),
             "ends_on_manifold": bool(paths[r.num_steps[i], i] > tau)}
            for i in slides_index
        ]
    return tables, fractions, slides_rows
