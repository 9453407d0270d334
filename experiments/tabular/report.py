"""Tables (markdown, one per task) and the figure of the tabular benchmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TABLE_FILE = "table.md"
FIGURE_FILE = "tabular.png"


def _ms(values, scale: float = 1.0, digits: int = 2) -> str:
    values = np.asarray(values, dtype=float) * scale
    return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"


def _bold_best(cells: list[str], means: list[float], higher: bool) -> list[str]:
    best = max(means) if higher else min(means)
    return [f"**{c}**" if m == best else c for c, m in zip(cells, means, strict=True)]


def classification_tables(results: dict) -> str:
    datasets = list(results)
    models = list(results[datasets[0]])
    lines = []
    for metric, scale, higher, title in (("accuracy", 100.0, True, "accuracy, %"), ("log_loss", 1.0, False,
                                         "log-loss, nats"), ("ece", 100.0, False, "ECE, %")):
        lines += [f"**Classification — {title}** (mean ± std over the outer folds; best mean in bold)", "",
                  "| model | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
        columns = []
        for d in datasets:
            means = [float(np.mean(results[d][m][metric])) for m in models]
            cells = [_ms(results[d][m][metric], scale, 2 if metric != "log_loss" else 3) for m in models]
            columns.append(_bold_best(cells, means, higher))
        for i, m in enumerate(models):
            lines.append(f"| {m} | " + " | ".join(col[i] for col in columns) + " |")
        lines.append("")
    return "\n".join(lines)


def novelty_table(results: dict) -> str:
    datasets = list(results)
    models = list(results[datasets[0]])
    lines = ["**Novelty detection — AUROC, %** (each class held out of training in turn; mean ± std over the "
             "held-out classes)", "", "| detector | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
    columns = [_bold_best([_ms(results[d][m], 100.0, 1) for m in models],
                          [float(np.mean(results[d][m])) for m in models], True) for d in datasets]
    lines += [f"| {m} | " + " | ".join(col[i] for col in columns) + " |" for i, m in enumerate(models)]
    return "\n".join(lines + [""])


def few_label_table(results: dict) -> str:
    lines = ["**Few labels — test accuracy, %** (labels per class, the other training rows unlabelled; mean ± "
             "std over the label draws)", ""]
    header = [(d, n) for d in results for n in results[d]]
    models = list(results[header[0][0]][header[0][1]])
    lines += ["| model | " + " | ".join(f"{d}, {n}/class" for d, n in header) + " |",
              "|---|" + "---|" * len(header)]
    columns = [_bold_best([_ms(results[d][n][m], 100.0, 1) for m in models],
                          [float(np.mean(results[d][n][m])) for m in models], True) for d, n in header]
    lines += [f"| {m} | " + " | ".join(col[i] for col in columns) + " |" for i, m in enumerate(models)]
    return "\n".join(lines + [""])


def timing_table(results: dict) -> str:
    rows = next(iter(results.values()))["rows"]
    lines = [f"**Wall time** (default hyper-parameters; `fit` on digits, 1,797 × 64; `predict_proba` on {rows:,} "
             "rows after one warm-up call)", "", "| model | fit, s | predict_proba, ms |", "|---|---|---|"]
    lines += [f"| {m} | {r['fit_s']:.2f} | {1e3 * r['predict_proba_s']:.1f} |" for m, r in results.items()]
    return "\n".join(lines + [""])


def tables(results: dict, config) -> str:
    parts = []
    if "classification" in results:
        parts.append(classification_tables(results["classification"]))
    if "novelty" in results:
        parts.append(novelty_table(results["novelty"]))
    if "few_labels" in results:
        parts.append(few_label_table(results["few_labels"]))
    if "timing" in results:
        parts.append(timing_table(results["timing"]))
    header = (f"Folds {config.folds} (grid search inside, {config.inner_folds} folds), seed {config.seed}, "
              f"flow {config.flow_steps} steps.\n")
    return header + "\n" + "\n".join(parts)


def summary(results: dict) -> dict:
    """Mean figures per task, model and data set (what results.json keeps beside the per-task files)."""
    out: dict = {}
    for d, models in results.get("classification", {}).items():
        for m, r in models.items():
            out.setdefault("classification", {}).setdefault(d, {})[m] = {
                k: float(np.mean(r[k])) for k in ("accuracy", "log_loss", "ece", "fit_s")}
    for d, models in results.get("novelty", {}).items():
        out.setdefault("novelty_auroc", {})[d] = {m: float(np.mean(v)) for m, v in models.items()}
    for d, budgets in results.get("few_labels", {}).items():
        out.setdefault("few_labels_accuracy", {})[d] = {
            n: {m: float(np.mean(v)) for m, v in models.items()} for n, models in budgets.items()}
    if "timing" in results:
        out["timing"] = results["timing"]
    return out


def figure(results: dict, path: Path) -> None:
    """Three panels: log-loss per data set, novelty AUROC, few-label accuracy against labels per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [t for t in ("classification", "novelty", "few_labels") if t in results]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, task in zip(axes[0], panels, strict=False):
        data = results[task]
        if task == "few_labels":
            for d, budgets in data.items():
                ns = [int(n) for n in budgets]
                for m in next(iter(budgets.values())):
                    means = [100 * np.mean(budgets[str(n)][m]) for n in ns]
                    ax.plot(ns, means, marker="o", label=f"{d}: {m.replace(' (flowclass)', '')}")
            ax.set(xscale="log", xlabel="labels per class", ylabel="test accuracy, %", title="few labels")
            ax.legend(fontsize=6)
            continue
        datasets = list(data)
        models = list(data[datasets[0]])
        width = 0.8 / len(models)
        for i, m in enumerate(models):
            values = [np.mean(data[d][m]["log_loss"]) if task == "classification" else 100 * np.mean(data[d][m])
                      for d in datasets]
            ax.bar(np.arange(len(datasets)) + i * width, values, width, label=m.replace(" (flowclass)", ""))
        ax.set_xticks(np.arange(len(datasets)) + 0.4 - width / 2, datasets, rotation=30)
        ax.set(ylabel="log-loss, nats (lower is better)" if task == "classification" else "AUROC, %",
               title="classification" if task == "classification" else "novelty detection")
        if task == "classification":
            ax.set_yscale("log")
        else:
            ax.set_ylim(50, 100)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
