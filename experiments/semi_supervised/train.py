"""FlowGMM with a few labels against the same flow trained on the labels alone.

:func:`train_and_evaluate` trains, for every seed, runs of the same flow with the same loss
(:func:`flowclass.losses.make_semi_supervised_loss`): ``semi_supervised``, on the few labelled
examples (repeated to ``run.data.labelled_share`` of the rows) plus the unlabelled rest, and
``labelled_only``, on the repeated labelled rows alone, for the same number of optimiser steps
on the same learning-rate schedule (and, on MNIST, the same time budget). When the run has a
consistency term (``run.loss.consistency_weight > 0``, FlowGMM-cons), it is the ``consistency``
model, and ``semi_supervised`` is the same run without the term (``without_consistency``). All
select their epoch without labels (``run.train.select``, e.g. the marginal NLL ``−log p(x)`` of
the held-out unlabelled examples). Moons are scored on fresh points against the Bayes-optimal
classifier, images on their test set. On images, every epoch also records, as a diagnostic
that nothing selects on, how the held-out validation images fall into the class Gaussians
against their hidden labels (``val_hidden_accuracy``, ``val_assigned_share_<k>``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import numpy as np

import flowclass as fc
from flowclass import runs
from flowclass.config import RunConfig, override
from flowclass.data import UNLABELLED, bayes_labels, default_cache_dir, make_moons

EXPERIMENT_FILE = "experiment.json"
TABLE_FILE = "table.md"
PREDICTIONS_FILE = "test_predictions.npy"
BASELINE = "labelled_only"
ASSIGNMENT_FIGURE = "assignment.png"
# overrides: the term off
NO_CONSISTENCY = ("loss.consistency_weight=0.0", "loss.consistency_rampup_steps=0", "loss.consistency_start_step=0")
# overrides for a run without unlabelled examples: no consistency term, no ramp-up of the unlabelled one
LABELLED_ONLY_LOSS = (*NO_CONSISTENCY, "loss.unlabelled_rampup_steps=0")
DIAGNOSTIC_SIZE = 2000  # held-out validation images whose hidden labels the diagnostic reads


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """The experiment: the semi-supervised run and what is repeated or scored around it.

    Attributes:
      run: the semi-supervised flow (``loss.kind='semi_supervised'``, ``data.num_labels`` set);
        the labelled-only baseline is derived from it (:func:`baseline_config`).
      num_seeds: seeds ``run.seed, run.seed + 1, …`` (each draws its own labelled subset); the
        tables report mean ± std over them.
      without_consistency: when ``run`` has a consistency term, also train it without (the
        ``semi_supervised`` model; the run itself is ``consistency``).
      fresh_size, fresh_random_state: moons: the fresh ``make_moons`` points scored against the
        Bayes-optimal classifier (its labels cached in ``$FLOWCLASS_CACHE``).
    """

    run: RunConfig
    num_seeds: int = 1
    without_consistency: bool = True
    fresh_size: int = 200_000
    fresh_random_state: int = 20_260_101

    def __post_init__(self):
        r = self.run
        if r.loss.kind != "semi_supervised":
            raise ValueError(f"run.loss.kind must be 'semi_supervised'; got {r.loss.kind!r}.")
        if r.data.num_labels is None:
            raise ValueError("run.data.num_labels must be set: the number of labelled training examples.")
        if r.data.labelled_only:
            raise ValueError("run.data.labelled_only must be False: the labelled-only baseline is derived from run.")
        if r.decision_rules != ("plain",):
            raise ValueError(f"run.decision_rules must be ('plain',): the validation labels are hidden; "
                             f"got {r.decision_rules}.")
        for name in ("num_seeds", "fresh_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}.")

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(range(self.run.seed, self.run.seed + self.num_seeds))

    @property
    def models(self) -> tuple[str, ...]:
        """The models trained per seed, the labelled-only baseline last."""
        if not self.run.loss.consistency_weight:
            return ("semi_supervised", BASELINE)
        return ("consistency", "semi_supervised", BASELINE) if self.without_consistency else ("consistency", BASELINE)

    @property
    def figures(self) -> tuple[str, ...]:
        if self.run.data.dataset == "moons":
            return ("decision_boundaries.png",)
        return (ASSIGNMENT_FIGURE, *(f"{kind}_{name}.png" for kind in ("prototypes", "interpolations")
                                     for name in self.models))


def baseline_config(run: RunConfig, splits: runs.Splits) -> RunConfig:
    """The labelled-only run of ``run`` (whose data are ``splits``): the repeated labelled rows
    alone, for as many optimiser steps as ``run`` takes, on a schedule of the same length (no
    consistency term and no ramp-up of the unlabelled term: it has no unlabelled examples)."""
    y_train = splits.train[1]
    batch = run.train.batch_size
    steps = run.optim.schedule_steps or run.train.epochs * (len(y_train) // batch)
    labelled_rows = int(np.sum(y_train != UNLABELLED))
    if labelled_rows < batch:
        raise ValueError(f"run.train.batch_size={batch} exceeds the {labelled_rows} repeated labelled rows of the "
                         "labelled-only baseline: raise run.data.labelled_share or lower the batch size.")
    epochs = math.ceil(steps / (labelled_rows // batch))
    return override(run, ["data.labelled_only=True", f"optim.schedule_steps={steps}", f"train.epochs={epochs}",
                          *LABELLED_ONLY_LOSS])


def plan(config: ExperimentConfig, workdir: Path, data_dir=None) -> dict[Path, RunConfig]:
    """``{sub-workdir: run config}`` of every run, in training order (loads each seed's data once)."""
    planned = {}
    for seed in config.seeds:
        run = dataclasses.replace(config.run, seed=seed)
        splits = runs.load_splits(run, data_dir=data_dir)
        for name in config.models:
            if name == BASELINE:
                sub = baseline_config(run, splits)
            elif name == "semi_supervised" and run.loss.consistency_weight:
                sub = override(run, list(NO_CONSISTENCY))
            else:
                sub = run
            planned[workdir / f"seed{seed}" / name] = sub
    return planned


def assignment_diagnostic(run: RunConfig, data_dir=None) -> Callable[[fc.TrainState], dict[str, float]] | None:
    """Images: ``state -> {hidden_accuracy, assigned_share_<k>}`` on the first
    :data:`DIAGNOSTIC_SIZE` held-out validation images, scored against their labels, which the
    run itself never sees (its validation labels are hidden): the fraction put into the right
    Gaussian and the share put into each Gaussian ``k``. A diagnostic for the docs' figure;
    ``train.select`` cannot name it (it is checked to be label-free). ``None`` on moons."""
    if run.data.dataset == "moons":
        return None
    labelled = override(run, ["data.num_labels=None", "loss.kind=flow", "loss.labelled_weight=1.0",
                              *LABELLED_ONLY_LOSS])
    x_val, y_val = runs.load_splits(labelled, data_dir=data_dir).val
    x_val, y_val = x_val[:DIAGNOSTIC_SIZE], y_val[:DIAGNOSTIC_SIZE]
    k = run.model.num_classes

    def diagnostic(state: fc.TrainState) -> dict[str, float]:
        predicted = fc.predict_logits(state.apply_fn, state.variables, x_val, batch_size=500).argmax(-1)
        shares = np.bincount(predicted, minlength=k) / len(predicted)
        return {"hidden_accuracy": float(np.mean(predicted == y_val)),
                **{f"assigned_share_{c}": float(shares[c]) for c in range(k)}}

    return diagnostic


def train_and_evaluate(
    config: ExperimentConfig,
    workdir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    data_dir: str | Path | None = None,
    progress: bool = True,
    figures: bool = True,
) -> dict:
    """Runs the experiment in ``workdir`` and returns the summary it writes to ``workdir/results.json``.

    ``workdir`` gets ``experiment.json`` (the config), ``results.json``, ``table.md``, the figures,
    and one run per seed and model in ``seed<s>/semi_supervised`` and ``seed<s>/labelled_only``
    (each reloadable with ``flowclass.load_run``, with its own ``results.json`` and
    ``test_predictions.npy``). Every run's config is built and every workdir checked before any
    training.

    Raises:
      flowclass.runs.RunExistsError: ``workdir`` holds another experiment (or run) and neither
        ``resume`` nor ``overwrite``.
      ValueError: ``resume`` with a config that differs from the stored one (the first
        difference named), or both flags.
    """
    start = time.perf_counter()
    workdir = Path(workdir).absolute()
    planned = plan(config, workdir, data_dir)
    owned = (*(f"seed{seed}" for seed in config.seeds), TABLE_FILE, *config.figures)  # sub-runs follow from config
    runs.prepare_workdir(config, workdir, resume=resume, overwrite=overwrite, config_file=EXPERIMENT_FILE, owned=owned)
    moons = config.run.data.dataset == "moons"
    fresh = fresh_points(config) if moons else None
    results: dict[str, list[dict]] = {name: [] for name in config.models}
    shown = {}
    diagnostics: dict[int, Any] = {}
    for sub, run_config in planned.items():
        if run_config.seed not in diagnostics:
            diagnostics[run_config.seed] = assignment_diagnostic(run_config, data_dir)
        run = runs.train(run_config, sub, data_dir=data_dir, resume=resume, overwrite=overwrite, progress=progress,
                         extra_val_metrics=diagnostics[run_config.seed])
        entry = evaluate_run(run, fresh)
        runs.write_results(sub, entry)
        results[sub.name].append(entry)
        if run_config.seed == config.run.seed:
            shown[sub.name] = run
    summary = summarize(config, results, shown, fresh)
    if figures:
        (save_moons_figure if moons else save_image_figures)(config, shown, workdir)
    summary["wall_s"] = time.perf_counter() - start
    runs.write_results(workdir, summary)
    (workdir / TABLE_FILE).write_text(table(summary))
    return summary


def read_experiment(workdir: str | Path) -> ExperimentConfig:
    """The config stored in ``workdir/experiment.json``."""
    return runs.read_config(workdir, ExperimentConfig, config_file=EXPERIMENT_FILE)


def fresh_points(config: ExperimentConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Moons: ``(x, y, bayes)``, fresh points, their labels and the Bayes-optimal predictions (cached)."""
    noise = config.run.data.noise
    x, y = make_moons(config.fresh_size, noise, config.fresh_random_state)
    return x, y, bayes_labels(x, noise, cache_dir=default_cache_dir())


def evaluate_run(run: runs.Run, fresh) -> dict:
    """One run's scores: test accuracy (and bits/dim on images, the loss's metrics), fresh-point
    accuracy on moons; writes the test predictions to ``test_predictions.npy``."""
    result, config = run.result, run.config
    state, (x_test, y_test) = result.state, run.splits.test
    batch = config.train.eval_batch_size
    test = fc.evaluate(state, x_test, y_test, batch_size=batch)
    predictions = fc.predict_logits(state.apply_fn, state.variables, x_test, batch_size=batch).argmax(-1)
    np.save(run.workdir / PREDICTIONS_FILE, predictions.astype(np.int32))
    entry = {
        "seed": config.seed, "test_acc": float(np.mean(predictions == y_test)),
        f"val_{config.train.select}": float(result.history[f"val_{config.train.select}"][result.best_epoch - 1]),
        "best_epoch": result.best_epoch, "epochs_run": result.epochs_run, "epochs": config.train.epochs,
        "steps": int(result.last_state.step), "train_rows": len(run.splits.train[0]),
        "compile_s": result.compile_s, "train_s": result.train_s,
    }
    if config.model.kind == "image_flow":
        entry["test_bits_per_dim"] = test["bits_per_dim"]  # −log p(x | y), the loss's metric
        entry["test_marginal_bits_per_dim"] = test["marginal_bits_per_dim"]  # −log p(x)
    if fresh is not None:
        x_fresh, y_fresh, _ = fresh
        logits = fc.predict_logits(state.apply_fn, state.variables, x_fresh, batch_size=batch)
        entry["fresh_acc"] = float(np.mean(logits.argmax(-1) == y_fresh))
    return entry


def summarize(config: ExperimentConfig, results: dict[str, list[dict]], shown: dict, fresh) -> dict:
    """Mean ± std over seeds of every score, per model, and the gain of the unlabelled data."""
    run = config.run
    summary: dict[str, Any] = {
        "dataset": run.data.dataset, "noise": run.data.noise if run.data.dataset == "moons" else None,
        "num_labels": run.data.num_labels, "seeds": list(config.seeds),
        "models_order": list(config.models),
        "rows": {name: shown[name].splits.train[0].shape[0] for name in config.models},
        "time_budget_s": run.train.time_budget_s, "models": {},
    }
    score = "fresh_acc" if fresh is not None else "test_acc"
    for name, per_seed in results.items():
        model: dict[str, Any] = {"per_seed": per_seed}
        for key in ("test_acc", "fresh_acc", "test_bits_per_dim", "test_marginal_bits_per_dim", "epochs_run",
                    "steps", "train_s"):
            if key in per_seed[0]:
                values = np.asarray([entry[key] for entry in per_seed], float)
                model[key] = float(values.mean())
                model[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        summary["models"][name] = model
    summary["score"] = score
    baseline = summary["models"][BASELINE][score]
    summary["gain_points"] = {name: 100 * (summary["models"][name][score] - baseline)
                              for name in config.models if name != BASELINE}
    if fresh is not None:
        summary["bayes_fresh_acc"] = float(np.mean(fresh[2] == fresh[1]))
        summary["fresh_size"] = config.fresh_size
    return summary


def table(s: dict) -> str:
    """The summary as Markdown: one row per model (images) or one row for the noise level (moons)."""
    def pct(model: dict, key: str) -> str:
        spread = f" ± {100 * model[key + '_std']:.2f}" if len(s["seeds"]) > 1 else ""
        return f"{100 * model[key]:.2f}{spread}"

    names = s["models_order"]
    title = {name: name.replace("_", " ") for name in names}
    seeds = f"{'mean ± std over ' if len(s['seeds']) > 1 else ''}seeds {s['seeds']}"
    if s["dataset"] == "moons":
        gains = [name for name in names if name != BASELINE]
        return "\n".join([
            f"Two moons, noise {s['noise']:g}, {s['num_labels']} labels (balanced), the rest unlabelled; accuracy (%) "
            f"on {s['fresh_size']:,} fresh points, {seeds}.", "",
            "| noise | " + " | ".join(title[n] for n in names) + " | " + " | ".join(f"gain of {title[n]} (points)"
                                                                           for n in gains) + " | Bayes |",
            "|---" * (2 + len(names) + len(gains)) + "|",
            f"| {s['noise']:g} | " + " | ".join(pct(s["models"][n], "fresh_acc") for n in names) + " | "
            + " | ".join(f"{s['gain_points'][n]:+.2f}" for n in gains) + f" | {100 * s['bayes_fresh_acc']:.2f} |",
        ]) + "\n"
    budget = "" if s["time_budget_s"] is None else f", {s['time_budget_s'] / 60:g} min per model"
    lines = [f"{s['dataset']}, {s['num_labels']} labels (balanced), {seeds}{budget}.", "",
             "| model | test acc (%) | gain (points) | bits/dim p(x \\| y) | bits/dim p(x) | epochs | steps "
             "| train s |",
             "|---|---|---|---|---|---|---|---|"]
    for name in names:
        m = s["models"][name]
        gain = f"{s['gain_points'][name]:+.2f}" if name != BASELINE else "—"
        lines.append(f"| {title[name]} | {pct(m, 'test_acc')} | {gain} | {m['test_bits_per_dim']:.3f} | "
                     f"{m['test_marginal_bits_per_dim']:.3f} | {m['epochs_run']:.0f} | {m['steps']:.0f} | "
                     f"{m['train_s']:.0f} |")
    return "\n".join(lines) + "\n"


def save_moons_figure(config: ExperimentConfig, shown: dict, out: Path) -> None:
    """``decision_boundaries.png``: every model of the first seed, the labelled points as stars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flowclass.plotting import plot_decision_regions

    noise = config.run.data.noise
    x_show, y_show = make_moons(1500, noise, 1)
    fig, axes = plt.subplots(1, len(config.models), figsize=(5.5 * len(config.models), 4.3), constrained_layout=True)
    for ax, name in zip(axes, config.models, strict=True):
        run = shown[name]
        state = run.result.state
        x, y = run.splits.train
        labelled, index = np.unique(x[y != UNLABELLED], axis=0, return_index=True)
        labels = y[y != UNLABELLED][index]
        proba = lambda pts, s=state: jax.nn.softmax(fc.predict_logits(s.apply_fn, s.variables, pts))  # noqa: E731
        plot_decision_regions(ax, proba, x_show, y_show, title=f"noise {noise:g}: {name.replace('_', ' ')}")
        ax.scatter(labelled[:, 0], labelled[:, 1], c=np.where(labels == 0, "tab:blue", "tab:orange"), s=140,
                   marker="*", edgecolors="k", linewidths=1.0, label="labelled", zorder=5)
        ax.legend(loc="lower left", fontsize=8)
    fig.suptitle(f"{config.run.data.num_labels} labels (stars), decision boundary p = 0.5 (black); "
                 f"seed {config.run.seed}")
    fig.savefig(out / "decision_boundaries.png", dpi=110)
    plt.close(fig)


def save_image_figures(config: ExperimentConfig, shown: dict, out: Path) -> None:
    """``prototypes_<model>.png`` (decoded class means over class samples at T = 0.7) and
    ``interpolations_<model>.png`` (latent paths between test images), for the first seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flowclass.generation import class_samples, image_grid, interpolate, prototypes

    save_assignment_figure(config, shown, out)
    for name in config.models:
        run = shown[name]
        model, v = run.model, run.result.state.variables
        x_test, y_test = run.splits.test
        rows = [np.asarray(prototypes(model, v))[None]]
        samples = class_samples(model, v, jax.random.key(config.run.seed), 6, temperature=0.7)
        rows.append(np.asarray(samples).swapaxes(0, 1))
        fig, ax = plt.subplots(figsize=(8, 6), constrained_layout=True)
        ax.imshow(np.clip(image_grid(np.concatenate(rows)), 0, 1), cmap="gray")
        ax.set_axis_off()
        ax.set_title(f"{name.replace('_', ' ')}: top row prototypes f⁻¹(μ_k), k = 0..9; below, samples at T = 0.7")
        fig.savefig(out / f"prototypes_{name}.png", dpi=110)
        pairs = [(int(np.flatnonzero(y_test == a)[0]), int(np.flatnonzero(y_test == b)[0]))
                 for a, b in ((0, 6), (1, 7), (3, 8), (4, 9), (2, 5)) if np.any(y_test == a) and np.any(y_test == b)]
        if pairs:
            a, b = (np.stack([x_test[i] for i in idx]) for idx in zip(*pairs, strict=True))
            path = np.asarray(interpolate(model, v, a, b, 10))
            fig, ax = plt.subplots(figsize=(8, 0.9 * len(pairs) + 0.6), constrained_layout=True)
            ax.imshow(np.clip(image_grid(path), 0, 1), cmap="gray")
            ax.set_axis_off()
            ax.set_title(f"{name.replace('_', ' ')}: latent interpolations between test images")
            fig.savefig(out / f"interpolations_{name}.png", dpi=110)
        plt.close("all")


def save_assignment_figure(config: ExperimentConfig, shown: dict, out: Path) -> None:
    """``assignment.png`` for the first seed's runs (see :func:`plot_assignment`)."""
    histories = {name: (run.result.history, len(run.splits.train[0]) // run.config.train.batch_size)
                 for name, run in shown.items()}
    plot_assignment(config, histories, out / ASSIGNMENT_FIGURE)


def plot_assignment(config: ExperimentConfig, histories: dict[str, tuple[Mapping[str, Any], int]], path: Path) -> None:
    """Per model (``{name: (history, steps per epoch)}``), over the optimiser steps at the ends of
    its epochs, the fraction of held-out validation images put into the Gaussian of their
    (hidden) class, and the share put into each Gaussian (a class the mixture marginal starves
    or floods shows as a line far from 1/K)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = config.run.model.num_classes
    names = [name for name in config.models if "val_hidden_accuracy" in histories[name][0]]
    if not names:  # runs trained before the diagnostic existed (e.g. resumed)
        return
    fig, axes = plt.subplots(1, 1 + len(names), figsize=(4.6 * (1 + len(names)), 3.8), constrained_layout=True)
    for name in names:
        history, per_epoch = histories[name]
        steps = per_epoch * np.arange(1, len(history["val_hidden_accuracy"]) + 1)
        axes[0].plot(steps, 100 * np.asarray(history["val_hidden_accuracy"]), marker="o", label=name.replace("_", " "))
    axes[0].set(xlabel="optimiser step", ylabel="validation images in their class's Gaussian (%)",
                title="assignment accuracy (hidden labels)")
    axes[0].legend(fontsize=8)
    for ax, name in zip(axes[1:], names, strict=True):
        history, per_epoch = histories[name]
        steps = per_epoch * np.arange(1, len(history["val_hidden_accuracy"]) + 1)
        for c in range(k):
            ax.plot(steps, 100 * np.asarray(history[f"val_assigned_share_{c}"]), marker=".", label=str(c))
        ax.axhline(100 / k, color="k", lw=0.8, ls="--")
        ax.set(xlabel="optimiser step", ylabel="share of validation images (%)",
               title=f"{name.replace('_', ' ')}: per Gaussian")
        ax.legend(fontsize=7, ncol=2, title="Gaussian")
    fig.suptitle(f"{config.run.data.dataset}, {config.run.data.num_labels} labels, seed {config.run.seed}: how "
                 "held-out images settle into the class Gaussians")
    fig.savefig(path, dpi=110)
    plt.close(fig)
