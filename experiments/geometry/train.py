"""Trains the moons flow with its class means at ``±(d/2) u`` for every distance, direction and seed.

:func:`train_and_evaluate` is the whole experiment. The workdir holds ``experiment.json`` (the
config), one run per placement and seed (``<direction>_d<d>/seed<s>``: ``flowclass.load_run``
reloads each; their ``results.json`` and ``test_predictions.npy``), the summary ``results.json``,
``table.md`` and :data:`FIGURE`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from tqdm.auto import tqdm

import flowclass as fc
from flowclass import runs
from flowclass.config import RunConfig
from flowclass.data import bayes_labels, default_cache_dir, make_moons, moons_class_log_density
from flowclass.training import FitResult

from .configs import GeometryConfig

EXPERIMENT_FILE = "experiment.json"
PREDICTIONS_FILE = "test_predictions.npy"
TABLE_FILE = "table.md"
FIGURE = "geometry.png"
SCORES = ("fresh_acc", "test_nll", "test_marginal_nll")


class Placement(NamedTuple):
    direction: str
    distance: float
    seed: int


def placements(config: GeometryConfig) -> list[Placement]:
    """Every run of the sweep, in the order they are trained."""
    return [Placement(u, d, s) for u in config.directions for d in config.distances for s in config.seeds]


def run_config(config: GeometryConfig, placement: Placement) -> RunConfig:
    """The run of ``placement``: ``config.run`` with its means and seed."""
    model = dataclasses.replace(config.run.model, means=config.means(placement.direction, placement.distance))
    return dataclasses.replace(config.run, model=model, seed=placement.seed)


def run_dir(workdir: Path, placement: Placement) -> Path:
    return Path(workdir) / f"{placement.direction}_d{placement.distance:g}" / f"seed{placement.seed}"


def train_and_evaluate(
    config: GeometryConfig,
    workdir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    data_dir: str | Path | None = None,
    progress: bool = True,
    figures: bool = True,
) -> dict:
    """Runs the sweep ``config`` in ``workdir``; returns the summary it writes to ``results.json``.

    Args:
      resume: continue the experiment stored in ``workdir``: finished runs are reloaded, the
        others trained (refused if ``config`` differs from the stored one).
      overwrite: delete the experiment stored in ``workdir`` first.
      data_dir: unused (the moons are generated); accepted as every experiment's entry point does.
      progress: one progress bar over the runs.
      figures: write :data:`FIGURE`.

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
    x_test, y_test = runs.load_splits(config.run).test
    true_log_p = moons_class_log_density(x_test, noise)  # the data's own density: the NLL floor
    summary: dict[str, Any] = {
        "dataset": "moons", "noise": noise, "epochs": config.run.train.epochs,
        "lr": config.run.optim.learning_rate, "batch_size": config.run.train.batch_size,
        "seeds": list(config.seeds), "n_test": len(x_test), "n_fresh": config.fresh_size,
        "bayes_fresh_acc": float(np.mean(bayes_labels(x_fresh, noise, cache_dir=default_cache_dir()) == y_fresh)),
        "true_test_nll": float(-np.mean(true_log_p[np.arange(len(y_test)), y_test])),
        "true_test_marginal_nll": float(-np.mean(np.logaddexp(true_log_p[:, 0], true_log_p[:, 1]) - np.log(2))),
        "runs": [],
    }
    for placement in tqdm(placements(config), desc="geometry runs", disable=not progress):
        wd = workdirs[placement]
        stored = wd / runs.RESULTS_FILE
        if resume and stored.is_file():  # finished earlier
            summary["runs"].append(json.loads(stored.read_text()))
            continue
        # the workdir was checked and stored by prepare_workdir: start the run, or continue it from its
        # newest checkpoint if an earlier invocation left one
        run = runs.train(run_config(config, placement), wd, resume=True, progress=False)
        summary["runs"].append(score(run.result, run.splits, (x_fresh, y_fresh), placement, wd))
    summary["mean"] = [
        {"direction": u, "distance": d,
         **{f"{k}_{stat}": float(getattr(np, stat)([r[k] for r in summary["runs"]
                                                    if (r["direction"], r["distance"]) == (u, d)]))
            for k in SCORES for stat in ("mean", "std")}}
        for u in config.directions for d in config.distances
    ]
    (workdir / TABLE_FILE).write_text(table(summary))
    if figures:
        save_figure(workdir, summary)
    summary["wall_s"] = time.perf_counter() - start
    runs.write_results(workdir, summary)
    return summary


def score(result: FitResult, splits: runs.Splits, fresh: tuple[np.ndarray, np.ndarray], placement: Placement,
          workdir: Path) -> dict:
    """The run's results row, also written to its ``results.json``, with its test predictions."""
    state, (x_test, y_test) = result.state, splits.test
    logits = fc.predict_logits(state.apply_fn, state.variables, x_test)
    np.save(workdir / PREDICTIONS_FILE, np.argmax(logits, -1).astype(np.int32))
    fresh_logits = fc.predict_logits(state.apply_fn, state.variables, fresh[0])
    marginal = fc.predict_logits(state.apply_fn, state.variables, x_test, method="marginal_log_prob")
    row = {"direction": placement.direction, "distance": placement.distance, "seed": placement.seed,
           "fresh_acc": float(np.mean(np.argmax(fresh_logits, -1) == fresh[1])),
           "test_nll": fc.evaluate(state, x_test, y_test)["nll"], "test_marginal_nll": float(-np.mean(marginal)),
           "best_epoch": result.best_epoch, "train_s": result.train_s}
    runs.write_results(workdir, row)
    return row


def prepare_workdir(config: GeometryConfig, workdir: str | Path, *, resume: bool = False,
                    overwrite: bool = False) -> dict[Placement, Path]:
    """Checks ``workdir`` for ``config`` and stores the config there (``experiment.json``), then
    does the same for every run's workdir, all before any training (:func:`flowclass.runs.prepare_workdir`).

    A workdir that holds an experiment is refused unless ``resume`` (the configs must agree but
    for :data:`~flowclass.config.RESUMABLE_FIELDS`) or ``overwrite`` (its runs, summary, table and
    figure are deleted first).
    """
    workdir = Path(workdir).absolute()
    earlier_runs = sorted(p.name for p in workdir.glob("*_d*") if p.is_dir())
    runs.prepare_workdir(config, workdir, resume=resume, overwrite=overwrite, config_file=EXPERIMENT_FILE,
                         owned=(TABLE_FILE, FIGURE, *earlier_runs))
    return {p: runs.prepare_workdir(run_config(config, p), run_dir(workdir, p), resume=resume, overwrite=overwrite)
            for p in placements(config)}


def table(s: dict) -> str:
    """The sweep as Markdown: accuracy and test NLLs (mean ± std over the seeds) per placement."""
    lines = [f"Two moons, flow classifier with means at ±(d/2)·u; {s['epochs']} epochs, seeds {s['seeds']}; "
             f"accuracy on {s['n_fresh']:,} fresh points (%), test NLL −log p(x|y) and −log p(x) on the slides' "
             f"{s['n_test']} test points (nats), mean ± std.", "",
             f"noise {s['noise']:g} (Bayes: {100 * s['bayes_fresh_acc']:.2f} %; the true density's test NLL: "
             f"{s['true_test_nll']:.3f} for p(x|y), {s['true_test_marginal_nll']:.3f} for p(x))", "",
             "| direction | d | fresh acc (%) | test NLL p(x|y) | test NLL p(x) |", "|---|---|---|---|---|"]
    for m in s["mean"]:
        lines.append(f"| {m['direction']} | {m['distance']:g} | {100 * m['fresh_acc_mean']:.2f} ± "
                     f"{100 * m['fresh_acc_std']:.2f} | {m['test_nll_mean']:.3f} ± {m['test_nll_std']:.3f} | "
                     f"{m['test_marginal_nll_mean']:.3f} ± {m['test_marginal_nll_std']:.3f} |")
    return "\n".join(lines) + "\n"


def save_figure(workdir: Path, s: dict) -> None:
    """:data:`FIGURE`: accuracy and both test NLLs against the distance, one curve per direction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4), constrained_layout=True)
    for direction in dict.fromkeys(m["direction"] for m in s["mean"]):
        points = [m for m in s["mean"] if m["direction"] == direction]
        d = [m["distance"] for m in points]
        for ax, (key, scale, label) in zip(axes, (("fresh_acc", 100, "fresh accuracy (%)"),
                                                  ("test_nll", 1, "test NLL −log p(x|y) (nats)"),
                                                  ("test_marginal_nll", 1, "test NLL −log p(x) (nats)")), strict=True):
            ax.errorbar(d, [scale * m[f"{key}_mean"] for m in points], yerr=[scale * m[f"{key}_std"] for m in points],
                        marker="o", capsize=3, label=f"means along {direction}")
            ax.set_xscale("log", base=2)
            ax.set(xlabel="distance d between the means", ylabel=label, title=f"noise {s['noise']:g}")
    axes[0].axhline(100 * s["bayes_fresh_acc"], color="k", linestyle=":", label="Bayes")
    axes[1].axhline(s["true_test_nll"], color="k", linestyle=":", label="true density")
    axes[2].axhline(s["true_test_marginal_nll"], color="k", linestyle=":", label="true density")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.suptitle(f"two moons: latent geometry, {len(s['seeds'])} seed(s) (mean ± std); the slides used d = 8 along x")
    fig.savefig(workdir / FIGURE, dpi=110)
    plt.close(fig)
