"""The robustness experiment's table (``table.md``) and figures, from its summary and results."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

FIGURES = ("robust_accuracy.png", "adversarial_examples.png", "reliability.png", "ood_histograms.png")
TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}


def _pct(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def _num(v, spec: str) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def markdown(s: dict) -> str:
    """The summary as ``table.md``: robust accuracy, sanity checks, detection, calibration, OOD."""
    settings, eps = s["settings"], s["settings"]["eps"]
    primary = list(s["robust_accuracy"])
    flow_name = next(name for name in primary if s["runs"][name]["kind"] == "image_flow")
    lines = [f"# Trust on {TITLES[s['dataset']]}: " + " vs ".join(f"{n} ({s['runs'][n]['kind']})" for n in primary), "",
             f"{s['images_attacked']} test images attacked; PGD: L∞, margin loss, {settings['steps']} steps of "
             f"2.5 ε / steps, {settings['restarts']} random restart(s), strongest iterate kept; FGSM: one step of ε. "
             f"{s['devices']} {s['platform']} device(s); {s['wall_s']:.0f} s.", "",
             "| run | workdir | test accuracy % | test bits/dim |", "|---|---|---:|---:|"]
    for name, run in s["runs"].items():
        lines.append(f"| {name} | `{run['workdir']}` | {100 * run['test_acc']:.2f} | "
                     f"{_num(run.get('test_bits_per_dim'), '.2f')} |")
    lines += ["", "## Robust accuracy (%)", "",
              "| model | clean | " + " | ".join(f"FGSM {e:g} | PGD {e:g}" for e in eps) + " |",
              "|---|---:|" + "---:|---:|" * len(eps)]
    for name, rows in s["robust_accuracy"].items():
        lines.append(f"| {name} | {_pct(rows['clean'])} | "
                     + " | ".join(f"{_pct(rows[f'fgsm {e:g}'])} | {_pct(rows[f'pgd {e:g}'])}" for e in eps) + " |")
    lines += ["", f"Published for comparison: {s['published']}.", "",
              "## Gradient-masking sanity checks", "",
              "| model | ε | images | clean | FGSM | PGD | PGD 5× steps | PGD 5× restarts | PGD ε=1 | random search "
              "| all checks |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, c in s["sanity_checks"].items():
        a = c["accuracy"]
        failed = [k for k, ok in c["checks"].items() if not ok]
        lines.append(f"| {name} | {c['eps']:g} | {c['images']} | {_pct(a['clean'])} | {_pct(a['fgsm'])} | "
                     f"{_pct(a['pgd'])} | {_pct(a['pgd_more_steps'])} | {_pct(a['pgd_more_restarts'])} | "
                     f"{_pct(a['pgd_eps_1'])} | {_pct(a['random_search'])} | "
                     f"{'pass' if not failed else 'FAIL: ' + ', '.join(failed)} |")
    det = s["detection"]
    lines += ["", "## The flow's −log p(x) as an adversarial detector", "",
              f"Negatives: the clean test images (median {det['clean_median_bits_per_dim']:.2f} bits/dim); "
              "positives: the successful PGD adversarials (right before the attack, wrong after), scored at the "
              "flow's bin centres.", "",
              "Adaptive: PGD on the margin minus max(0, −log p(x) − τ) (nats), τ the detector's threshold at 5 % "
              f"false positives ({det['threshold_bits_per_dim_at_5_fpr']:.2f} bits/dim), from x_0; its undetected "
              "success counts adversarials that are misclassified *and* below the threshold, found at this ε or "
              "any smaller one (a smaller ball lies inside; this run's own share in brackets).", "",
              "| attack | ε | attack success % | undetected success % | transfer to flow % | AUROC | "
              "detected at 5 % FPR | median adv bits/dim |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, row in det.items():
        if not isinstance(row, dict):
            continue
        source, e = name.rsplit(" ε=", 1)
        kind = {flow_name: "on the flow", "adaptive": "adaptive, on the flow"}.get(source, f"transfer from {source}")
        undetected = (f"{_pct(row['undetected_success'])} ({_pct(row['undetected_success_this_eps'])})"
                      if "undetected_success" in row else "–")
        lines.append(f"| {kind} | {e} | {_pct(row['attack_success'])} | {undetected} | "
                     f"{_pct(row.get('transfer_success_on_flow'))} | {_num(row.get('auroc'), '.3f')} | "
                     f"{_pct(row.get('tpr_at_5_fpr'))} | {_num(row.get('median_adv_bits_per_dim'), '.2f')} |")
    lines += ["", "## Calibration on the test set (15 bins; temperature fitted on the run's validation split)", "",
              "| model | T | ECE before % | ECE after % | equal-mass ECE before / after % | NLL before / after |",
              "|---|---:|---:|---:|---:|---:|"]
    for name, c in s["calibration"].items():
        lines.append(f"| {name} | {c['temperature']:.3g} | {100 * c['ece_before']:.2f} | {100 * c['ece_after']:.2f} | "
                     f"{100 * c['ece_mass_before']:.2f} / {100 * c['ece_mass_after']:.2f} | "
                     f"{c['nll_before']:.4f} / {c['nll_after']:.4f} |")
    if s["ood"]:
        lines += ["", "## Out-of-distribution detection (AUROC; OOD = positive)", ""]
    for name, row in s["ood"].items():
        lines += [f"**{name}** (the flow trained on the first, scoring the second's test set)", "",
                  "| score | value |", "|---|---:|"]
        for k, v in row.items():
            value = " / ".join(f"{x:.2f}" for x in v) if isinstance(v, (tuple, list)) else f"{v:.3f}"
            lines.append(f"| {k} | {value} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def save_figures(workdir: Path, s: dict, primary, flow, adversarial, attacked, reliability, histograms, bits,
                 scores) -> None:
    """Writes :data:`FIGURES` into ``workdir`` (the last only with OOD results): robust accuracy
    against ε, PGD adversarials with the attacked model's prediction and the flow's bits/dim,
    reliability diagrams before and after the temperature, and the OOD bits/dim histograms.

    ``bits(x)`` is the flow's marginal bits/dim per image, ``scores(model, x)`` a model's logits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eps = s["settings"]["eps"]
    fig, ax = plt.subplots(figsize=(5.5, 4), constrained_layout=True)
    for name, rows in s["robust_accuracy"].items():
        for attack, style in (("pgd", "-o"), ("fgsm", "--s")):
            ax.plot([0, *eps], [100 * rows["clean"]] + [100 * rows[f"{attack} {e:g}"] for e in eps],
                    style, label=f"{name} {attack.upper()}")
    ax.set_xlabel("ε (L∞)")
    ax.set_ylabel("robust accuracy (%)")
    ax.legend(fontsize=8)
    fig.savefig(workdir / FIGURES[0], dpi=110)

    x_att, y_att = attacked  # scored whole and then cut: the attacks' compiled shapes serve again
    shown = min(6, len(x_att))
    rows = 1 + len(eps) * len(primary)
    fig, axes = plt.subplots(rows, shown, figsize=(1.6 * shown, 1.7 * rows), constrained_layout=True, squeeze=False)
    clean_bpd = bits(x_att)
    for j in range(shown):
        axes[0, j].imshow(x_att[j, ..., 0], cmap="gray", vmin=0, vmax=1)
        axes[0, j].set_title(f"clean {y_att[j]}\n{clean_bpd[j]:.2f} b/d", fontsize=7)
    for i, e in enumerate(eps):
        for r, m in enumerate(primary):
            images = adversarial[m.name, e].adversarial
            bpd, predicted = bits(images), np.argmax(scores(m, images), -1)
            for j in range(shown):
                ax = axes[1 + len(primary) * i + r, j]
                ax.imshow(images[j, ..., 0], cmap="gray", vmin=0, vmax=1)
                ax.set_title(f"{m.name} ε={e:g}: {predicted[j]}\n{bpd[j]:.2f} b/d", fontsize=7)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle(f"PGD adversarials (title: attacked model's prediction; {flow.name}'s bits/dim)", fontsize=9)
    fig.savefig(workdir / FIGURES[1], dpi=110)

    fig, axes = plt.subplots(1, len(primary), figsize=(4.5 * len(primary), 4), constrained_layout=True, squeeze=False)
    for ax, m in zip(axes[0], primary, strict=True):
        for tag, color in (("before", "tab:red"), ("after", "tab:blue")):
            r = reliability[m.name, tag]
            filled = r.counts > 0
            ax.plot(r.confidence[filled], r.accuracy[filled], "o-", color=color,
                    label=f"{tag} (ECE {100 * r.ece:.2f} %)")
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{m.name}: reliability (test)")
        ax.legend(fontsize=8)
    fig.savefig(workdir / FIGURES[2], dpi=110)

    if histograms:
        fig, axes = plt.subplots(1, len(histograms), figsize=(5 * len(histograms), 3.5), constrained_layout=True,
                                 squeeze=False)
        for ax, (name, (inside, outside)) in zip(axes[0], histograms.items(), strict=True):
            first, second = name.split(" → ")
            bins = np.linspace(min(inside.min(), outside.min()), np.percentile(np.r_[inside, outside], 99.5), 80)
            ax.hist(inside, bins, alpha=0.6, density=True, label=f"{first} test (in)")
            ax.hist(outside, bins, alpha=0.6, density=True, label=f"{second} test (OOD)")
            ax.set_xlabel(f"bits/dim under the {first} flow")
            ax.legend(fontsize=8)
        fig.savefig(workdir / FIGURES[3], dpi=110)
    plt.close("all")
