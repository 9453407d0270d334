"""Trains one image classifier on MNIST or Fashion-MNIST and scores it on the test set.

:func:`train_and_evaluate` is the whole experiment: the run (:func:`flowclass.runs.train`, in the
workdir itself), then the test accuracy with the decision rule selected on validation, the test
bits/dim (the loss's own metric), ``results.json``, ``test_predictions.npy`` and the figures.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import flowclass as fc
from flowclass import runs
from flowclass.config import RunConfig
from flowclass.invariance import rule_logits, selected_rule

PREDICTIONS_FILE = "test_predictions.npy"
FIGURES = ("training_curves.png", "confusion_matrix.png", "samples.png")
SAMPLE_TEMPERATURE = 0.7


def check_config(config: RunConfig) -> None:
    """What this experiment asks of a :class:`~flowclass.config.RunConfig` beyond its own checks.

    Raises:
      ValueError: naming the field: not an image model, or few labels (another experiment).
    """
    if config.model.kind not in ("image_flow", "cnn"):
        raise ValueError(f"model.kind must be 'image_flow' or 'cnn' for the MNIST experiment; "
                         f"got {config.model.kind!r}.")
    if config.data.num_labels is not None:
        raise ValueError(f"data.num_labels must be None here (all labels); got {config.data.num_labels}. "
                         "Few-label runs are experiments.semi_supervised.")


def train_and_evaluate(
    config: RunConfig,
    workdir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    data_dir: str | Path | None = None,
    progress: bool = True,
    figures: bool = True,
) -> dict:
    """Trains ``config`` in ``workdir`` and returns the summary it writes to ``workdir/results.json``.

    The workdir then holds the run (``config.json``, ``checkpoints/``: ``flowclass.load_run(workdir)``
    reloads the selected model), the summary, ``test_predictions.npy`` (the selected rule's test
    predictions) and, with ``figures``, :data:`FIGURES` (class samples for flows only).

    Raises:
      ValueError: a config this experiment does not run (:func:`check_config`), before training.
      flowclass.runs.RunExistsError, OSError: as :func:`flowclass.runs.train`, before training.
    """
    start = time.perf_counter()
    check_config(config)
    run = runs.train(config, workdir, data_dir=data_dir, resume=resume, overwrite=overwrite, progress=progress)
    result, (x_test, y_test) = run.result, run.splits.test
    state = result.state
    batch = config.train.eval_batch_size
    test = fc.evaluate(state, x_test, y_test, batch_size=batch)
    at_best = {name: float(values[result.best_epoch - 1]) for name, values in result.history.items()}
    if config.model.is_flow:
        logits = rule_logits(state.apply_fn, state.variables, x_test, rules=config.decision_rules, batch_size=batch)
        rule = selected_rule(at_best) if "shift_marginal" in config.decision_rules else "plain"
    else:
        logits, rule = {"plain": fc.predict_logits(state.apply_fn, state.variables, x_test, batch_size=batch)}, "plain"
    predictions = np.argmax(logits[rule], -1)
    np.save(run.workdir / PREDICTIONS_FILE, predictions.astype(np.int32))
    summary = {
        "dataset": config.data.dataset,
        "model": config.model.kind,
        "preset": config.model.preset if config.model.is_flow else None,
        "parameters": sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params)),
        "devices": jax.device_count(),
        "platform": jax.devices()[0].platform,
        "test_acc": float(np.mean(predictions == y_test)),
        "rule": rule,
        "test_acc_by_rule": {name: float(np.mean(np.argmax(v, -1) == y_test)) for name, v in logits.items()},
        "test_bits_per_dim": test.get("bits_per_dim"),  # the loss's metric: includes log2(num_bins)
        "val_acc": at_best["val_shift_marginal_accuracy" if rule == "shift_marginal" else "val_accuracy"],
        "select": config.train.select,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "epochs_scheduled": config.train.epochs,
        "time_budget_s": config.train.time_budget_s,
        "compile_s": result.compile_s,
        "train_s": result.train_s,
        "train_images_per_s": result.train_samples_per_s,
        "history": {name: values.tolist() for name, values in result.history.items()},
    }
    if figures:
        save_figures(run, predictions)
    summary["wall_s"] = time.perf_counter() - start
    runs.write_results(run.workdir, summary)
    return summary


def table(summary: dict, config_name: str) -> str:
    """The summary as a Markdown table row under its header (the README's columns)."""
    bpd = summary["test_bits_per_dim"]
    rules = summary["test_acc_by_rule"]
    other = "".join(f"; {name} {100 * acc:.2f}" for name, acc in rules.items() if name != summary["rule"])
    return "\n".join([
        "| config | dataset | model | test accuracy (%) | test bits/dim | epochs (best) | train images/s | wall (s) |",
        "|---|---|---|---|---|---|---|---|",
        f"| `{config_name}` | {summary['dataset']} | {summary['model']}"
        f"{' ' + summary['preset'] if summary['preset'] else ''} | {100 * summary['test_acc']:.2f} "
        f"({summary['rule']} rule{other}) | {'–' if bpd is None else f'{bpd:.2f}'} | {summary['epochs_run']} of "
        f"{summary['epochs_scheduled']} ({summary['best_epoch']}) | {summary['train_images_per_s']:.0f} | "
        f"{summary['wall_s']:.0f} |",
    ]) + "\n"


def save_figures(run: runs.Run, predictions: np.ndarray) -> None:
    """Training curves, the test confusion matrix and, for flows, class-conditional samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flowclass.generation import image_grid

    config, history, out = run.config, run.result.history, run.workdir
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), constrained_layout=True)
    for split in ("train", "val"):
        axes[0].plot(epochs, history[f"{split}_loss"], label=f"{split} loss")
        axes[1].plot(epochs, 100 * history[f"{split}_accuracy"], label=split)
    axes[0].set_xlabel("epoch")
    axes[0].legend()
    axes[1].set(xlabel="epoch", ylabel="accuracy (%)")
    axes[1].legend()
    fig.savefig(out / FIGURES[0], dpi=110)

    k = config.model.num_classes
    y_test = run.splits.test[1]
    confusion = np.zeros((k, k), int)
    np.add.at(confusion, (y_test, predictions), 1)
    fig, ax = plt.subplots(figsize=(5.5, 5), constrained_layout=True)
    ax.imshow(np.log1p(confusion), cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, confusion[i, j], ha="center", va="center", fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=f"{config.data.dataset} {config.model.kind}: test confusion matrix")
    fig.savefig(out / FIGURES[1], dpi=110)

    if config.model.is_flow:
        samples = class_samples(run.model, run.result.state.variables, jax.random.key(config.seed), 8)
        fig, ax = plt.subplots(figsize=(6, 7.5), constrained_layout=True)
        ax.imshow(np.clip(image_grid(samples), 0, 1), cmap="gray")
        ax.set_axis_off()
        ax.set_title(f"class-conditional samples (rows: classes 0-{k - 1}, temperature {SAMPLE_TEMPERATURE})")
        fig.savefig(out / FIGURES[2], dpi=110)
    plt.close("all")


def class_samples(model, variables, key: jax.Array, n: int) -> np.ndarray:
    """:func:`flowclass.generation.class_samples` at :data:`SAMPLE_TEMPERATURE` (the same samples:
    the same keys), as one compiled, class-vectorised call: 4x faster to compile than the
    library's one model call per class."""
    classes = jnp.arange(model.num_classes)

    @jax.jit
    def sample(variables, keys):
        return jax.vmap(lambda k, key: model.apply(variables, key, k, n, SAMPLE_TEMPERATURE, method="sample"))(
            classes, keys)

    return np.asarray(sample(variables, jax.random.split(key, model.num_classes)))
