"""Trust on images, flow vs CNN: adversarial robustness, likelihood detection, calibration, OOD.

    python experiments/robustness.py --data-dir DIR \\
        --flow-run RUNS/mnist-flow --cnn-run RUNS/mnist-cnn \\
        --fashion-flow-run RUNS/fashion-flow --fashion-cnn-run RUNS/fashion-cnn

Takes the runs of ``experiments/mnist.py`` (their ``results.json`` and checkpoints) and measures,
on the real MNIST test set:

1. robust accuracy under white-box FGSM and PGD (L∞, margin loss, random restarts) for every ε,
   on the first ``--num-attack`` test images;
2. gradient-masking sanity checks per model (:func:`flowclass.robustness.sanity_checks`) at the
   ε where PGD leaves robust accuracy nearest 50 %;
3. the flow's ``−log p(x)`` (mixture marginal) as a detector of adversarial inputs: attacks on
   the flow itself and transfer attacks from the CNN, AUROC and detection rate at 5 % false
   positives on the clean test set;
4. calibration: ECE before and after a temperature fitted on the validation split the runs
   held out (never the test set);
5. out-of-distribution: the MNIST models scoring Fashion-MNIST test images and, with the
   Fashion runs, the other way round, by ``−log p(x)``, ``1 − max posterior`` and typicality
   ``|−log p(x) − mean −log p(validation)|``.

Writes ``results.json``, ``table.md`` and figures into ``--out``.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path

_START = time.perf_counter()
LI_ET_AL_2019 = ("Li, Bradshaw & Sharma (2019), VAE-based generative classifiers on MNIST: "
                 "PGD robust accuracy 7.7-32.5 % at ε = 0.3; 84-95 % of successful attacks detected")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None, help="MNIST location (IDX files or mnist.pkl.gz); "
                   "Fashion-MNIST comes from $FLOWCLASS_DATA_DIR / system locations")
    p.add_argument("--fashion-data-dir", default=None)
    p.add_argument("--flow-run", type=Path, required=True, help="output directory of an MNIST flow run")
    p.add_argument("--cnn-run", type=Path, required=True, help="output directory of an MNIST CNN run")
    p.add_argument("--fashion-flow-run", type=Path, default=None, help="for OOD the other way round")
    p.add_argument("--fashion-cnn-run", type=Path, default=None)
    p.add_argument("--eps", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.3])
    p.add_argument("--num-attack", type=int, default=1000, help="test images attacked")
    p.add_argument("--steps", type=int, default=40, help="PGD steps")
    p.add_argument("--restarts", type=int, default=3, help="PGD random restarts")
    p.add_argument("--sanity-eps", type=float, default=None,
                   help="ε of the sanity checks (default: per model, the ε whose PGD accuracy is nearest 50 %%)")
    p.add_argument("--sanity-size", type=int, default=200, help="test images for the sanity checks")
    p.add_argument("--queries", type=int, default=1000, help="random-search queries per image")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--host-devices", type=int, default=min(os.cpu_count() or 1, 8))
    p.add_argument("--out", type=Path, default=Path("results/robustness"))
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from flowclass.runtime import use_fast_codegen, use_host_devices

    from mnist import load_run

    use_host_devices(args.host_devices)
    use_fast_codegen()  # XLA CPU flags measured in benchmarks/
    import json

    import jax
    import numpy as np

    from flowclass import calibration, metrics, robustness
    from flowclass.data import load_image_dataset, train_val_split
    from flowclass.data.pixels import bin_centres

    def log(message):
        print(f"[{time.perf_counter() - _START:6.0f} s] {message}", file=sys.stderr, flush=True)

    def held_out(dataset, data_dir, summary):
        """The validation split the run selected on, and the test set."""
        splits = load_image_dataset(dataset, data_dir=data_dir)
        x, y = splits["train"]
        val_size = int(summary["args"]["val_size"])
        _, val = train_val_split(x, y, val_fraction=val_size / len(x), seed=int(summary["args"]["seed"]))
        return val, splits["test"]

    def load(run, sample):
        model, variables, summary = load_run(run, sample)
        is_flow = summary["model"] == "flow"
        prepare = (lambda a: np.asarray(bin_centres(a))) if is_flow else (lambda a: a)  # as in training
        return {"model": model, "variables": variables, "summary": summary, "flow": is_flow, "prepare": prepare,
                "logits_fn": functools.partial(model.apply, variables), "name": run.name}

    def scores(entry, x, method=None):
        import flowclass as fc

        return fc.predict_logits(entry["model"].apply, entry["variables"], entry["prepare"](x),
                                 batch_size=args.batch_size, method=method)

    sample = np.zeros((8, 28, 28, 1), np.float32)
    flow, cnn = load(args.flow_run, sample), load(args.cnn_run, sample)
    if not flow["flow"] or cnn["flow"]:
        raise SystemExit("--flow-run must be a flow run and --cnn-run a CNN run of experiments/mnist.py.")
    (x_val, y_val), (x_test, y_test) = held_out("mnist", args.data_dir, flow["summary"])
    dims = int(np.prod(x_test.shape[1:]))

    def bits_per_dim(log_p):  # of the 8-bit images: −log p / (D ln 2) + log2(256)
        return -np.asarray(log_p) / (dims * np.log(2)) + 8

    report: dict = {"devices": jax.device_count(), "platform": jax.devices()[0].platform,
                    "runs": {m["name"]: {k: m["summary"][k] for k in ("model", "test_acc", "test_bits_per_dim")}
                             for m in (flow, cnn)}, "settings": {k: str(v) for k, v in vars(args).items()}}
    key = jax.random.key(args.seed)

    # 1. robust accuracy ------------------------------------------------------------------------
    n = min(args.num_attack, len(x_test))
    x_att, y_att = x_test[:n], y_test[:n]
    robust: dict = {}
    adversarial: dict = {}
    for m in (flow, cnn):
        x0 = m["prepare"](x_att)
        rows = {"clean": robustness.clean_accuracy(m["logits_fn"], x0, y_att, batch_size=args.batch_size)}
        for eps in args.eps:
            start = time.perf_counter()
            fgsm = robustness.fgsm_robust_accuracy(m["logits_fn"], x0, y_att, eps=eps, batch_size=args.batch_size)
            pgd = robustness.pgd_robust_accuracy(m["logits_fn"], x0, y_att, eps=eps, steps=args.steps,
                                                 restarts=args.restarts, key=jax.random.fold_in(key, int(1000 * eps)),
                                                 batch_size=args.batch_size, progress=not args.quiet)
            rows[f"fgsm {eps:g}"], rows[f"pgd {eps:g}"] = fgsm.robust_accuracy, pgd.robust_accuracy
            adversarial[(m["name"], eps)] = pgd
            log(f"{m['name']}: ε={eps:g} FGSM {100 * fgsm.robust_accuracy:.1f} %, "
                f"PGD-{args.steps}×{args.restarts} {100 * pgd.robust_accuracy:.1f} % "
                f"({time.perf_counter() - start:.0f} s)")
        robust[m["name"]] = rows
    report["robust_accuracy"] = robust

    # 2. sanity checks, where a masked gradient would show most ----------------------------------
    sanity = {}
    for m in (flow, cnn):
        eps = args.sanity_eps or min(args.eps, key=lambda e: abs(robust[m["name"]][f"pgd {e:g}"] - 0.5))
        k = min(args.sanity_size, n)
        start = time.perf_counter()
        result = robustness.sanity_checks(m["logits_fn"], m["prepare"](x_att[:k]), y_att[:k], eps=eps,
                                          key=jax.random.fold_in(key, 7), steps=args.steps, restarts=1,
                                          queries=args.queries, batch_size=min(args.batch_size, k))
        sanity[m["name"]] = {"eps": eps, "images": k, "accuracy": result.accuracy, "checks": result.checks,
                             "passed": result.passed}
        log(f"{m['name']}: sanity checks at ε={eps:g} {'passed' if result.passed else 'FAILED'}: "
            f"{result.accuracy} ({time.perf_counter() - start:.0f} s)")
    report["sanity_checks"] = sanity

    # 3. likelihood-based detection ---------------------------------------------------------------
    clean_nll = -scores(flow, x_test, "marginal_log_prob")
    detection = {}
    clean_correct = {m["name"]: np.argmax(scores(m, x_att), -1) == y_att for m in (flow, cnn)}
    for source in (flow, cnn):
        for eps in args.eps:
            result = adversarial[(source["name"], eps)]
            turned = clean_correct[source["name"]] & ~result.correct  # successful: right before, wrong after
            adv_x = result.adversarial[turned]
            row = {"attack_success": float(np.mean(turned))}
            if source is not flow and len(adv_x):
                flow_pred = np.argmax(scores(flow, adv_x), -1)  # transfer: does it fool the flow too?
                row["transfer_success_on_flow"] = float(np.mean(flow_pred != y_att[turned]))
            if len(adv_x) >= 2:
                adv_nll = -scores(flow, adv_x, "marginal_log_prob")
                s = np.concatenate([clean_nll, adv_nll])
                positive = np.r_[np.zeros(len(clean_nll), bool), np.ones(len(adv_nll), bool)]
                row.update(auroc=metrics.auroc(s, positive), tpr_at_5_fpr=metrics.tpr_at_fpr(s, positive, 0.05),
                           median_adv_bits_per_dim=float(np.median(bits_per_dim(-adv_nll))))
            detection[f"{source['name']} ε={eps:g}"] = row
    # an attacker who knows the detector: PGD on the margin minus λ · max(0, −log p(x) − τ), τ the detector's
    # threshold at 5 % false positives, on the flow's joint log-likelihoods log p(x, k) (same argmax and margin)
    threshold = float(np.percentile(clean_nll, 95))
    log_weights = np.asarray(flow["model"].apply(flow["variables"], method="log_weights"))
    penalty = functools.partial(_likelihood_penalty, log_weights=log_weights, threshold=threshold, weight=1.0)
    joint_fn = functools.partial(flow["model"].apply, flow["variables"], method="class_log_likelihoods")
    undetected = np.zeros(n, bool)  # per image: an undetected adversarial found within some ε' ≤ ε so far
    for eps in sorted(args.eps):
        # from x_0, not a random start: uniform noise in the ball alone lifts −log p far above τ
        result = robustness.pgd_robust_accuracy(joint_fn, flow["prepare"](x_att), y_att, eps=eps, steps=args.steps,
                                                random_start=False, penalty=penalty, batch_size=args.batch_size,
                                                progress=not args.quiet)
        turned = clean_correct[flow["name"]] & ~result.correct
        adv_nll = -scores(flow, result.adversarial, "marginal_log_prob")
        undetected |= turned & (adv_nll <= threshold)  # a smaller ball's adversarial is also one at ε
        row = {"attack_success": float(np.mean(turned)),
               "undetected_success_this_eps": float(np.mean(turned & (adv_nll <= threshold))),
               "undetected_success": float(np.mean(undetected))}
        if turned.sum() >= 2:
            s = np.concatenate([clean_nll, adv_nll[turned]])
            positive = np.r_[np.zeros(len(clean_nll), bool), np.ones(int(turned.sum()), bool)]
            row.update(auroc=metrics.auroc(s, positive), tpr_at_5_fpr=metrics.tpr_at_fpr(s, positive, 0.05),
                       median_adv_bits_per_dim=float(np.median(bits_per_dim(-adv_nll[turned]))))
        detection[f"adaptive ε={eps:g}"] = row
        log(f"adaptive attack ε={eps:g}: {row}")
    report["detection"] = {"clean_median_bits_per_dim": float(np.median(bits_per_dim(-clean_nll))),
                           "threshold_bits_per_dim_at_5_fpr": float(bits_per_dim(-threshold)), **detection}
    log("detection done")

    # 4. calibration --------------------------------------------------------------------------------
    calib = {}
    reliability = {}
    for m in (flow, cnn):
        val_logits, test_logits = scores(m, x_val), scores(m, x_test)
        t = calibration.fit_temperature(val_logits, y_val)
        row = {"temperature": t, "test_acc": metrics.accuracy(test_logits, y_test)}
        for tag, logits in (("before", test_logits), ("after", test_logits / t)):
            row[f"ece_{tag}"] = metrics.expected_calibration_error(logits, y_test)
            row[f"ece_mass_{tag}"] = metrics.expected_calibration_error(logits, y_test, binning="mass")
            row[f"nll_{tag}"] = metrics.negative_log_likelihood(logits, y_test)
            reliability[(m["name"], tag)] = metrics.reliability(logits, y_test)
        calib[m["name"]] = row
    report["calibration"] = calib
    log("calibration done")

    # 5. out-of-distribution --------------------------------------------------------------------------
    fashion_summary = {"args": {"val_size": flow["summary"]["args"]["val_size"], "seed": "0"}}
    fashion_runs = {}
    if args.fashion_flow_run is not None:
        fashion_runs["flow"] = load(args.fashion_flow_run, sample)
        fashion_summary = fashion_runs["flow"]["summary"]
    if args.fashion_cnn_run is not None:
        fashion_runs["cnn"] = load(args.fashion_cnn_run, sample)
    (xf_val, _), (xf_test, _) = held_out("fashion_mnist", args.fashion_data_dir, fashion_summary)
    ood = {}
    histograms = {}
    directions = [("MNIST → Fashion-MNIST", flow, cnn, x_val, x_test, xf_test)]
    if "flow" in fashion_runs:
        directions.append(("Fashion-MNIST → MNIST", fashion_runs["flow"], fashion_runs.get("cnn"), xf_val, xf_test,
                           x_test))
    for name, density, classifier, val_in, test_in, test_out in directions:
        nll_in = -scores(density, test_in, "marginal_log_prob")
        nll_out = -scores(density, test_out, "marginal_log_prob")
        nll_val = -scores(density, val_in, "marginal_log_prob")
        positive = np.r_[np.zeros(len(nll_in), bool), np.ones(len(nll_out), bool)]
        typical = np.mean(nll_val)
        row = {
            "flow -log p(x)": metrics.auroc(np.r_[nll_in, nll_out], positive),
            "flow typicality": metrics.auroc(np.abs(np.r_[nll_in, nll_out] - typical), positive),
            "flow 1 - max posterior": metrics.auroc(
                1 - np.r_[_max_softmax(scores(density, test_in)), _max_softmax(scores(density, test_out))], positive),
            "median bits/dim in / out": (float(np.median(bits_per_dim(-nll_in))),
                                         float(np.median(bits_per_dim(-nll_out)))),
            "share of OOD with higher log p than the median in-distribution image":
                float(np.mean(nll_out < np.median(nll_in))),
        }
        if classifier is not None:
            row["CNN 1 - max softmax"] = metrics.auroc(
                1 - np.r_[_max_softmax(scores(classifier, test_in)), _max_softmax(scores(classifier, test_out))],
                positive)
        row["flow -log p(x) TPR at 5 % FPR"] = metrics.tpr_at_fpr(np.r_[nll_in, nll_out], positive, 0.05)
        ood[name] = row
        histograms[name] = (bits_per_dim(-nll_in), bits_per_dim(-nll_out))
        log(f"OOD {name}: {row}")
    report["ood"] = ood
    report["published"] = LI_ET_AL_2019
    report["wall_s"] = time.perf_counter() - _START

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (args.out / "table.md").write_text(markdown(report, flow["name"], cnn["name"], args))
    if not args.no_figures:
        save_figures(args, report, flow, cnn, adversarial, x_att, y_att, reliability, histograms, scores,
                     bits_per_dim)
    log(f"wrote {args.out}/table.md, results.json and figures")
    print((args.out / "table.md").read_text())
    return report


def _undetected(row, pct) -> str:
    if "undetected_success" not in row:
        return "–"
    return f"{pct(row['undetected_success'])} ({pct(row['undetected_success_this_eps'])})"


def _likelihood_penalty(joint, *, log_weights, threshold, weight):
    """``λ · max(0, −log p(x) − τ)`` with ``log p(x) = logsumexp_k(log p(x | k) + log π_k)``."""
    import jax
    import jax.numpy as jnp

    return weight * jax.nn.relu(-jax.scipy.special.logsumexp(joint + jnp.asarray(log_weights), axis=-1) - threshold)


def _max_softmax(logits):
    import numpy as np

    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z)
    return (p / p.sum(1, keepdims=True)).max(1)


def markdown(report, flow_name, cnn_name, args) -> str:
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    lines = [f"# Trust on MNIST: {flow_name} (flow) vs {cnn_name} (CNN)", "",
             f"{args.num_attack} test images attacked; PGD: L∞, margin loss, {args.steps} steps of 2.5 ε / steps, "
             f"{args.restarts} random restarts, strongest iterate kept; FGSM: one step of ε. "
             f"{report['devices']} {report['platform']} device(s); {report['wall_s']:.0f} s.", "",
             "## Robust accuracy (%)", "",
             "| model | clean | " + " | ".join(f"FGSM {e:g} | PGD {e:g}" for e in args.eps) + " |",
             "|---|---:|" + "---:|---:|" * len(args.eps)]
    for name, rows in report["robust_accuracy"].items():
        lines.append(f"| {name} | {pct(rows['clean'])} | "
                     + " | ".join(f"{pct(rows[f'fgsm {e:g}'])} | {pct(rows[f'pgd {e:g}'])}" for e in args.eps) + " |")
    lines += ["", f"Published for comparison: {report['published']}.", "",
              "## Gradient-masking sanity checks", "",
              "| model | ε | images | clean | FGSM | PGD | PGD 5× steps | PGD 5× restarts | PGD ε=1 | random search "
              "| all checks |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, s in report["sanity_checks"].items():
        a = s["accuracy"]
        failed = [k for k, ok in s["checks"].items() if not ok]
        lines.append(f"| {name} | {s['eps']:g} | {s['images']} | {pct(a['clean'])} | {pct(a['fgsm'])} | "
                     f"{pct(a['pgd'])} | {pct(a['pgd_more_steps'])} | {pct(a['pgd_more_restarts'])} | "
                     f"{pct(a['pgd_eps_1'])} | {pct(a['random_search'])} | "
                     f"{'pass' if not failed else 'FAIL: ' + ', '.join(failed)} |")
    det = report["detection"]
    lines += ["", "## The flow's −log p(x) as an adversarial detector", "",
              f"Negatives: the 10,000 clean test images (median {det['clean_median_bits_per_dim']:.2f} bits/dim); "
              "positives: the successful PGD adversarials (right before the attack, wrong after).", "",
              "Adaptive: PGD on the margin minus max(0, −log p(x) − τ) (nats), τ the detector's threshold at 5 % "
              f"false positives ({det['threshold_bits_per_dim_at_5_fpr']:.2f} bits/dim), from x_0; its undetected "
              "success counts adversarials that are misclassified *and* below the threshold, found at this ε or "
              "any smaller one (a smaller ball lies inside; this run's own share in brackets).", "",
              "| attack | ε | attack success % | undetected success % | transfer to flow % | AUROC | "
              "detected at 5 % FPR | median adv bits/dim |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, row in det.items():
        if not isinstance(row, dict):
            continue
        source, eps = name.rsplit(" ε=", 1)
        kind = {flow_name: "on the flow", "adaptive": "adaptive, on the flow"}.get(source, f"transfer from {source}")
        lines.append(f"| {kind} | {eps} | {pct(row['attack_success'])} | "
                     f"{_undetected(row, pct)} | "
                     f"{pct(row['transfer_success_on_flow']) if 'transfer_success_on_flow' in row else '–'} | "
                     f"{row.get('auroc', float('nan')):.3f} | {pct(row.get('tpr_at_5_fpr', float('nan')))} | "
                     f"{row.get('median_adv_bits_per_dim', float('nan')):.2f} |")
    lines += ["", "## Calibration on the MNIST test set (15 bins; temperature fitted on the validation split)", "",
              "| model | T | ECE before % | ECE after % | equal-mass ECE before / after % | NLL before / after |",
              "|---|---:|---:|---:|---:|---:|"]
    for name, c in report["calibration"].items():
        lines.append(f"| {name} | {c['temperature']:.3g} | {100 * c['ece_before']:.2f} | {100 * c['ece_after']:.2f} | "
                     f"{100 * c['ece_mass_before']:.2f} / {100 * c['ece_mass_after']:.2f} | "
                     f"{c['nll_before']:.4f} / {c['nll_after']:.4f} |")
    lines += ["", "## Out-of-distribution detection (AUROC; OOD = positive)", ""]
    for name, row in report["ood"].items():
        lines += [f"**{name}** (model trained on the first, scoring the second's test set)", "",
                  "| score | value |", "|---|---:|"]
        for k, v in row.items():
            value = " / ".join(f"{x:.2f}" for x in v) if isinstance(v, (tuple, list)) else f"{v:.3f}"
            lines.append(f"| {k} | {value} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def save_figures(args, report, flow, cnn, adversarial, x_att, y_att, reliability, histograms, scores,
                 bits_per_dim) -> None:
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4), constrained_layout=True)
    for name, rows in report["robust_accuracy"].items():
        for attack, style in (("pgd", "-o"), ("fgsm", "--s")):
            ax.plot([0] + list(args.eps), [100 * rows["clean"]] + [100 * rows[f"{attack} {e:g}"] for e in args.eps],
                    style, label=f"{name} {attack.upper()}")
    ax.set_xlabel("ε (L∞)")
    ax.set_ylabel("robust accuracy (%)")
    ax.legend(fontsize=8)
    fig.savefig(args.out / "robust_accuracy.png", dpi=110)

    shown = 6
    fig, axes = plt.subplots(2 * len(args.eps) + 1, shown, figsize=(1.6 * shown, 1.7 * (2 * len(args.eps) + 1)),
                             constrained_layout=True)
    clean_bpd = bits_per_dim(scores(flow, x_att[:shown], "marginal_log_prob"))
    for j in range(shown):
        axes[0, j].imshow(x_att[j, ..., 0], cmap="gray", vmin=0, vmax=1)
        axes[0, j].set_title(f"clean {y_att[j]}\n{clean_bpd[j]:.2f} b/d", fontsize=7)
    for i, eps in enumerate(args.eps):
        for r, m in enumerate((flow, cnn)):
            result = adversarial[(m["name"], eps)]
            images = result.adversarial[:shown]
            bpd = bits_per_dim(scores(flow, images, "marginal_log_prob"))
            predicted = np.argmax(scores(m, images), -1)
            for j in range(shown):
                ax = axes[1 + 2 * i + r, j]
                ax.imshow(images[j, ..., 0], cmap="gray", vmin=0, vmax=1)
                ax.set_title(f"{'flow' if m is flow else 'CNN'} ε={eps:g}: {predicted[j]}\n{bpd[j]:.2f} b/d",
                             fontsize=7)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle("PGD adversarials (title: attacked model's prediction; the flow's bits/dim)", fontsize=9)
    fig.savefig(args.out / "adversarial_examples.png", dpi=110)

    fig, axes = plt.subplots(1, 2, figsize=(9, 4), constrained_layout=True)
    for ax, m in zip(axes, (flow, cnn), strict=True):
        for tag, color in (("before", "tab:red"), ("after", "tab:blue")):
            r = reliability[(m["name"], tag)]
            filled = r.counts > 0
            ax.plot(r.confidence[filled], r.accuracy[filled], "o-", color=color,
                    label=f"{tag} (ECE {100 * r.ece:.2f} %)")
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{m['name']}: reliability (test)")
        ax.legend(fontsize=8)
    fig.savefig(args.out / "reliability.png", dpi=110)

    fig, axes = plt.subplots(1, len(histograms), figsize=(5 * len(histograms), 3.5), constrained_layout=True,
                             squeeze=False)
    for ax, (name, (inside, outside)) in zip(axes[0], histograms.items(), strict=True):
        first, second = name.split(" → ")
        bins = np.linspace(min(inside.min(), outside.min()), np.percentile(np.r_[inside, outside], 99.5), 80)
        ax.hist(inside, bins, alpha=0.6, density=True, label=f"{first} test (in)")
        ax.hist(outside, bins, alpha=0.6, density=True, label=f"{second} test (OOD)")
        ax.set_xlabel(f"bits/dim under the {first} flow")
        ax.legend(fontsize=8)
    fig.savefig(args.out / "ood_histograms.png", dpi=110)
    plt.close("all")


if __name__ == "__main__":
    from flowclass.runtime import restart_with_tcmalloc

    restart_with_tcmalloc()  # XLA's per-step buffers: 1.5x faster image-flow steps than glibc malloc
    main()
