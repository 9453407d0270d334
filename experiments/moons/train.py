"""Trains the flow and the FNN for each seed and scores them against the Bayes-optimal classifier.

:func:`train_and_evaluate` is the whole experiment. The workdir holds ``experiment.json`` (the
config), one run per model and seed (``seed<s>/flow``, ``seed<s>/fnn``: ``flowclass.load_run`` reloads
each; their ``results.json`` and ``test_predictions.npy``), the summary ``results.json`` and
:data:`FIGURES` (of the first seed).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

import flowclass as fc
from flowclass import runs
from flowclass.config import RunConfig
from flowclass.data import bayes_labels, default_cache_dir, make_moons
from flowclass.training import FitResult

from .configs import MoonsConfig

MODELS = ("flow", "fnn")
EXPERIMENT_FILE = "experiment.json"
PREDICTIONS_FILE = "test_predictions.npy"
FIGURES = ("decision_boundaries.png", "latent_space.png")
SLIDES_REPORTED = {  # test accuracy (%) on the 1500-point split, as the slides report it
    0.1: {"flow": 100.0, "fnn": 100.0},
    0.25: {"flow": 94.73, "fnn": 94.54},
    0.5: {"flow": 82.80, "fnn": 82.87},
}


def run_config(config: MoonsConfig, name: str, seed: int) -> RunConfig:
    """The run of model ``name`` (``'flow'`` or ``'fnn'``) for ``seed``."""
    return dataclasses.replace(getattr(config, name), seed=seed)


def run_dir(workdir: Path, name: str, seed: int) -> Path:
    return Path(workdir) / f"seed{seed}" / name


def train_and_evaluate(
    config: MoonsConfig,
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
      resume: continue the experiment stored in ``workdir``: finished runs are reloaded, the
        others trained (refused if ``config`` differs from the stored one).
      overwrite: delete the experiment stored in ``workdir`` first.
      data_dir: unused (the moons are generated); accepted as every experiment's entry point does.
      figures: write :data:`FIGURES`.

    Raises:
      flowclass.runs.RunExistsError: ``workdir`` holds an experiment or a run, and neither
        ``resume`` nor ``overwrite``; before any training.
      ValueError: ``resume`` with another config (the first difference named), or both flags.
      OSError: ``workdir`` cannot be written.
    """
    del data_dir
    start = time.perf_counter()
    workdirs = prepare_workdir(config, workdir, resume=resume, overwrite=overwrite)
    workdir = Path(workdir).absolute()
    noise = config.noise
    x_fresh, y_fresh = make_moons(config.fresh_size, noise, config.fresh_random_state)
    x_test, y_test = runs.load_splits(run_config(config, "flow", config.seeds[0])).test
    cache = default_cache_dir()
    bayes = {"test_acc": float(np.mean(bayes_labels(x_test, noise, cache_dir=cache) == y_test)),
             "fresh_acc": float(np.mean(bayes_labels(x_fresh, noise, cache_dir=cache) == y_fresh))}

    per_seed: dict[str, list[dict]] = {name: [] for name in MODELS}
    first: dict[str, Trained] = {}
    for seed in config.seeds:
        for name in MODELS:
            trained = train_run(run_config(config, name, seed), workdirs[(name, seed)], resume=resume,
                                progress=progress)
            per_seed[name].append(trained.stored or score(trained, (x_fresh, y_fresh)))
            first.setdefault(name, trained)

    flow_cfg, splits = config.flow, first["flow"].splits
    summary = {"noise": noise, "epochs": flow_cfg.train.epochs, "batch_size": flow_cfg.train.batch_size,
               "lr": flow_cfg.optim.learning_rate, "seeds": list(config.seeds), "n_train": len(splits.train[0]),
               "n_val": len(splits.val[0]), "n_test": len(x_test), "n_fresh": config.fresh_size, "bayes": bayes}
    slides_split = config.flow.data.train_subset is None and config.flow.data.test_subset is None
    for name, rows in per_seed.items():
        run = getattr(config, name)
        test, fresh = [r["test_acc"] for r in rows], [r["fresh_acc"] for r in rows]
        summary[name] = {
            "test_acc": float(np.mean(test)),
            "fresh_acc": float(np.mean(fresh)),
            "test_acc_std": _std(test),
            "fresh_acc_std": _std(fresh),
            "gap_to_bayes_fresh_points": 100 * (bayes["fresh_acc"] - float(np.mean(fresh))),
            "train_samples_per_s": float(np.mean([r["train_samples_per_s"] for r in rows])),
            "slides_reported_test_acc": SLIDES_REPORTED.get(noise, {}).get(name) if slides_split else None,
            "epochs": run.train.epochs, "batch_size": run.train.batch_size, "lr": run.optim.learning_rate,
            "per_seed": rows,
        }
    if figures:
        save_figures(workdir, noise, first["flow"], first["fnn"])
    summary["wall_s"] = time.perf_counter() - start
    runs.write_results(workdir, summary)
    return summary


def _std(values) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


class Trained(NamedTuple):
    """A run of the experiment: its model and selected weights, the data it saw, and either the
    fit result (trained now) or its stored results row (finished earlier, ``resume``)."""

    config: RunConfig
    workdir: Path
    model: Any
    variables: dict
    splits: runs.Splits
    result: FitResult | None
    fit_wall_s: float
    stored: dict | None


def train_run(config: RunConfig, workdir: Path, *, resume: bool, progress: bool) -> Trained:
    """Trains the run ``config`` in its ``workdir``, already checked and stored by
    :func:`prepare_workdir` (so :func:`flowclass.runs.train` is asked to start *or continue* it: from
    its newest checkpoint, if an earlier invocation left one). With ``resume``, a finished run (its
    ``results.json`` written) is reloaded instead (:func:`flowclass.runs.load_run`)."""
    if resume and (workdir / runs.RESULTS_FILE).is_file():
        model, variables, _ = runs.load_run(workdir)
        stored = json.loads((workdir / runs.RESULTS_FILE).read_text())
        return Trained(config, workdir, model, variables, runs.load_splits(config), None, stored["fit_wall_s"],
                       stored)
    start = time.perf_counter()
    run = runs.train(config, workdir, resume=True, progress=progress)
    return Trained(config, workdir, run.model, run.result.state.variables, run.splits, run.result,
                   time.perf_counter() - start, None)


def score(trained: Trained, fresh: tuple[np.ndarray, np.ndarray]) -> dict:
    """The run's results row (test and fresh accuracy, selection and speed), also written to its
    ``results.json``, with its test predictions in ``test_predictions.npy``."""
    result, (x_test, y_test) = trained.result, trained.splits.test
    assert result is not None
    apply_fn, variables = result.state.apply_fn, trained.variables
    predictions = np.argmax(fc.predict_logits(apply_fn, variables, x_test), -1).astype(np.int32)
    fresh_predictions = np.argmax(fc.predict_logits(apply_fn, variables, fresh[0]), -1)
    np.save(trained.workdir / PREDICTIONS_FILE, predictions)
    row = {
        "seed": trained.config.seed,
        "test_acc": float(np.mean(predictions == y_test)),
        "fresh_acc": float(np.mean(fresh_predictions == fresh[1])),
        "val_acc": float(result.history["val_accuracy"][result.best_epoch - 1]),
        "best_epoch": result.best_epoch,
        "compile_s": result.compile_s,
        "train_s": result.train_s,
        "fit_wall_s": trained.fit_wall_s,
        "train_samples_per_s": result.train_samples_per_s,
    }
    runs.write_results(trained.workdir, row)
    return row


def prepare_workdir(config: MoonsConfig, workdir: str | Path, *, resume: bool = False,
                    overwrite: bool = False) -> dict[tuple[str, int], Path]:
    """Checks ``workdir`` for ``config`` and stores the config there (``experiment.json``), then
    does the same for every run's workdir, all before any training (:func:`flowclass.runs.prepare_workdir`).
    Returns the runs' workdirs by ``(model, seed)``.

    A workdir that holds an experiment is refused unless ``resume`` (the configs must agree but
    for :data:`~flowclass.config.RESUMABLE_FIELDS`) or ``overwrite`` (its runs, summary and figures
    are deleted first).
    """
    workdir = Path(workdir).absolute()
    earlier_runs = sorted(p.name for p in workdir.glob("seed*") if p.is_dir())
    runs.prepare_workdir(config, workdir, resume=resume, overwrite=overwrite, config_file=EXPERIMENT_FILE,
                         owned=(*FIGURES, *earlier_runs))
    return {(name, seed): runs.prepare_workdir(run_config(config, name, seed), run_dir(workdir, name, seed),
                                               resume=resume, overwrite=overwrite)
            for seed in config.seeds for name in MODELS}


def table(s: dict) -> str:
    """The summary as the table ``python experiments/moons.py`` has always printed."""
    def pct(mean, std):
        return f"{100 * mean:6.2f} ± {100 * std:4.2f}"

    flow_epochs, fnn_epochs = s["flow"]["epochs"], s["fnn"]["epochs"]
    epochs = f"{flow_epochs}" if flow_epochs == fnn_epochs else f"flow {flow_epochs} / fnn {fnn_epochs}"
    test, fresh = f"test {s['n_test']} (%)", f"fresh {s['n_fresh'] / 1000:g}k (%)"
    lines = [f"\nmoons, noise {s['noise']:g}, {len(s['seeds'])} seed(s), {epochs} epochs",
             f"{'model':6} | {test:>15} | {'slides report':>13} | {fresh:>15} | {'gap to Bayes':>12} | "
             f"{'train samples/s':>15}"]
    for name in MODELS:
        m = s[name]
        reported = m["slides_reported_test_acc"]
        lines.append(f"{name:6} | {pct(m['test_acc'], m['test_acc_std'])} | "
                     f"{reported if reported is not None else '-':>13} | {pct(m['fresh_acc'], m['fresh_acc_std'])} | "
                     f"{m['gap_to_bayes_fresh_points']:+10.2f} pt | {m['train_samples_per_s']:15,.0f}")
    b = s["bayes"]
    lines.append(f"{'Bayes':6} | {100 * b['test_acc']:15.2f} | {'':13} | {100 * b['fresh_acc']:15.2f} |")
    return "\n".join(lines)


def save_figures(workdir: Path, noise: float, flow: Trained, fnn: Trained) -> None:
    """:data:`FIGURES`: ``p(class 1 | x)`` of the flow, the FNN and the Bayes classifier over the test
    split, and the flow's training data in latent space."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flowclass.data import moons_class_log_density
    from flowclass.plotting import plot_decision_regions, plot_latent

    def proba(trained: Trained):
        return lambda points: jax.nn.softmax(fc.predict_logits(trained.model.apply, trained.variables, points))

    # nodes spaced ∝ σ: p(class 1 | x) within 1e-4 of the 2048-node quadrature (checked for σ = 0.1 ... 1) at a
    # fraction of its cost (σ = 0.5: 410 nodes, 5x faster); the accuracies use bayes_labels' 2048 nodes
    nodes = min(2048, math.ceil(2048 * 0.1 / noise))

    def bayes_proba(points):
        return jax.nn.softmax(moons_class_log_density(points, noise, num_nodes=nodes))

    x_test, y_test = flow.splits.test
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), constrained_layout=True)
    plot_decision_regions(axes[0], proba(flow), x_test, y_test, title="flow classifier")
    plot_decision_regions(axes[1], proba(fnn), x_test, y_test, title="FNN")
    plot_decision_regions(axes[2], bayes_proba, x_test, y_test, title="Bayes optimal")
    fig.suptitle(f"two moons, noise {noise:g}: p(class 1 | x) on the test split")
    fig.savefig(workdir / FIGURES[0], dpi=110)

    x_train, y_train = flow.splits.train
    z, _ = flow.model.apply(flow.variables, x_train, method="encode")
    means = flow.model.apply(flow.variables, method="class_means")
    fig, ax = plt.subplots(figsize=(6, 5), constrained_layout=True)
    plot_latent(ax, np.asarray(z), y_train, np.asarray(means), title=f"training data in latent space (noise {noise:g})")
    fig.savefig(workdir / FIGURES[1], dpi=110)
    plt.close("all")
