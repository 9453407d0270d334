"""MNIST / Fashion-MNIST: a multi-scale RealNVP classifier or the slides' CNN.

    python experiments/mnist.py --data-dir DIR --model flow --config fast --time-budget 20
    python experiments/mnist.py --data-dir DIR --model cnn --epochs 10
    python experiments/mnist.py --dataset fashion_mnist --model flow   # Debian's dataset-fashion-mnist

5,000 training images are held out for model selection (best validation accuracy);
the test set is only scored at the end. Checkpoints go to ``OUT/checkpoints`` after
every epoch (atomic, Orbax); ``--resume`` continues from the newest. Writes
``results.json`` and figures (training curves, confusion matrix, class-conditional samples).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

_START = time.perf_counter()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=("mnist", "fashion_mnist"), default="mnist")
    p.add_argument("--data-dir", default=None, help="directory with IDX files or mnist.pkl.gz "
                   "(default: $FLOWCLASS_DATA_DIR, system locations, then TFDS)")
    p.add_argument("--model", choices=("flow", "cnn"), default="flow")
    p.add_argument("--config", choices=("fast", "seed"), default="fast", help="flow architecture")
    p.add_argument("--epochs", type=int, default=10, help="length of the learning-rate schedule")
    p.add_argument("--time-budget", type=float, default=None, metavar="MIN", help="stop training after MIN minutes")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3, help="peak Adam learning rate (warm-up, then cosine decay)")
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY", help="validate, select and test a moving "
                   "average of the parameters with this decay, e.g. 0.999 (0 = off)")
    p.add_argument("--beta", type=float, default=3.0, help="flow: weight of the posterior cross-entropy "
                   "next to the NLL in bits/dim (0 = the slides' pure NLL)")
    p.add_argument("--ce-temperature", type=float, default=1.0, metavar="T", help="flow: temperature of the "
                   "posterior in the cross-entropy term (T > 1: a margin loss; prediction unchanged)")
    p.add_argument("--means", choices=("normal", "onehot"), default="normal", help="flow: class means "
                   "mean_scale · N(0, I), or mean_scale · √D · e_k (orthogonal, equidistant)")
    p.add_argument("--mean-scale", type=float, default=1.0, help="flow: scale of the class means")
    p.add_argument("--shift", type=int, default=2, help="random translation augmentation, in pixels (0 = off)")
    p.add_argument("--rotate", type=float, default=0.0, metavar="DEG", help="random rotation augmentation, "
                   "in degrees (0 = off)")
    p.add_argument("--scale", type=float, default=0.0, metavar="FRAC", help="random scaling augmentation by a "
                   "factor in [1 - FRAC, 1 + FRAC] (0 = off)")
    p.add_argument("--shift-marginal", action="store_true", help="flow: also score the validation split with "
                   "the likelihood marginalised over the identity and the 4 one-pixel shifts (flowclass.invariance); "
                   "the epoch and the decision rule are selected together on validation accuracy")
    p.add_argument("--val-size", type=int, default=5000)
    p.add_argument("--train-subset", type=int, default=None, help="use only this many training images (smoke tests)")
    p.add_argument("--test-subset", type=int, default=None, help="score only this many test images (smoke tests)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--host-devices", type=int, default=min(os.cpu_count() or 1, 8),
                   help="on CPU, split the host into this many devices and shard each batch over them")
    p.add_argument("--out", type=Path, default=None, help="output directory (default results/<dataset>/<model>)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUT/checkpoints")
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.shift_marginal and args.model != "flow":
        p.error("--shift-marginal needs --model flow: it marginalises a flow's class likelihoods.")
    if args.out is None:
        name = f"flow-{args.config}-beta{args.beta:g}" if args.model == "flow" else "cnn"
        args.out = Path("results") / args.dataset / name
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    from flowclass.runtime import use_fast_codegen, use_host_devices

    use_host_devices(args.host_devices)
    use_fast_codegen()  # XLA CPU flags measured in benchmarks/
    import json

    import jax
    import numpy as np

    import flowclass as fc

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = load_splits(args, bin_centred=args.model == "flow")

    model, tx, loss_fn, augment = build(args, x_train.shape[1:], len(x_train))
    key_init, key_fit = jax.random.split(jax.random.key(args.seed))
    state = fc.create_train_state(model, key_init, x_train[:512], tx, loss_fn)
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
    print(f"{args.dataset}: {len(x_train)} train / {len(x_val)} val / {len(x_test)} test; {args.model}"
          f"{' ' + args.config if args.model == 'flow' else ''}, {n_params:,} parameters, "
          f"{jax.device_count()} device(s): {jax.devices()[0].platform}", file=sys.stderr)

    steps_per_epoch = len(x_train) // args.batch_size
    rules = rule_metrics(x_val, y_val, from_step=args.epochs // 2 * steps_per_epoch) if args.shift_marginal else None
    result = fc.fit(
        state, (x_train, y_train), (x_val, y_val), key=key_fit, epochs=args.epochs, batch_size=args.batch_size,
        num_classes=10, augment=augment, select="best_rule_accuracy" if args.shift_marginal else "accuracy",
        eval_batch_size=500, extra_val_metrics=rules,
        time_budget_s=None if args.time_budget is None else 60 * args.time_budget,
        checkpoint_dir=args.out / "checkpoints", resume=args.resume, progress=not args.quiet,
        desc=f"{args.model} {args.dataset}",
    )
    test = fc.evaluate(result.state, x_test, y_test, batch_size=500)
    logits_by_rule = rule_logits(result.state, x_test, marginal=args.shift_marginal)
    at_best = {name: values[result.best_epoch - 1] for name, values in result.history.items()}
    marginal_won = args.shift_marginal and at_best["val_shift_marginal_accuracy"] > at_best["val_plain_rule_accuracy"]
    rule = "shift_marginal" if marginal_won else "plain"
    predictions = np.argmax(logits_by_rule[rule], -1)
    flow_options = {"config": args.config, "beta": args.beta, "ce_temperature": args.ce_temperature,
                    "means": args.means, "mean_scale": args.mean_scale}
    summary = {
        "dataset": args.dataset, "model": args.model,
        **{name: value if args.model == "flow" else None for name, value in flow_options.items()},
        "parameters": n_params, "devices": jax.device_count(), "platform": jax.devices()[0].platform,
        "test_acc": float(np.mean(predictions == y_test)), "rule": rule,
        "test_acc_by_rule": {name: float(np.mean(np.argmax(v, -1) == y_test)) for name, v in logits_by_rule.items()},
        "test_bits_per_dim": test.get("bits_per_dim"),
        "val_acc": float(at_best["val_best_rule_accuracy" if args.shift_marginal else "val_accuracy"]),
        "best_epoch": result.best_epoch, "epochs_run": result.epochs_run, "epochs_scheduled": args.epochs,
        "time_budget_min": args.time_budget, "compile_s": result.compile_s, "train_s": result.train_s,
        "train_images_per_s": result.train_samples_per_s,
        "history": {k: v.tolist() for k, v in result.history.items()},
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.no_figures:
        save_figures(args, result, y_test, predictions)
    summary["wall_s"] = time.perf_counter() - _START
    (args.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    bpd = summary["test_bits_per_dim"]
    print(f"{args.dataset} {args.model}: test accuracy {100 * summary['test_acc']:.2f} % ({rule} rule)"
          f"{f', {bpd:.3f} bits/dim' if bpd is not None else ''}; best epoch {result.best_epoch}/"
          f"{result.epochs_run}; {summary['train_images_per_s']:.0f} train images/s; wall {summary['wall_s']:.0f} s")
    return summary


def build(args, input_shape, num_train: int):
    """``(model, optimiser, loss_fn, augment)`` for ``args``: what training and restoring both need."""
    import flowclass as fc

    tx = optimizer(args, num_train, ema=args.ema)
    augment = image_augment(args.shift, dequantise=args.model == "flow", degrees=args.rotate, scale=args.scale)
    if args.model == "flow":
        model = fc.image_realnvp(args.config, input_shape=input_shape, num_classes=10,
                                 means=args.means, mean_scale=args.mean_scale)
        loss_fn = fc.make_flow_loss(cross_entropy_weight=args.beta, nll_unit="bits_per_dim", num_bins=256,
                                    posterior_temperature=args.ce_temperature)
        return model, tx, loss_fn, augment
    return fc.CNN(num_classes=10), tx, fc.cross_entropy, augment


def rule_logits(state, x, *, marginal: bool = True) -> dict:
    """``{'plain': logits}``, and with ``marginal`` also ``'shift_marginal'`` (the likelihood
    marginalised over :data:`flowclass.invariance.ONE_PIXEL_CROSS`), from one set of forward passes."""
    from flowclass.invariance import ONE_PIXEL_CROSS, marginalise_shifts, shift_logits

    shifts = ONE_PIXEL_CROSS if marginal else ((0, 0),)
    per_shift = shift_logits(state.apply_fn, state.variables, x, shifts, batch_size=500)
    logits = {"plain": per_shift[shifts.index((0, 0))]}
    if marginal:
        logits["shift_marginal"] = marginalise_shifts(per_shift)
    return logits


def rule_metrics(x_val, y_val, from_step: int = 0):
    """Validation metrics of the two decision rules, for :func:`flowclass.fit`'s ``extra_val_metrics``:
    the plain and the shift-marginal rule's accuracy (counted from the same logits) and the better
    of the two.

    The shift-marginal rule costs 5 forward passes over the split; before training step ``from_step``
    (the first half of the schedule, long before the best epoch) only the plain rule is scored (the
    shift-marginal accuracy is NaN), so that those epochs can still be selected.
    """
    import numpy as np

    def metrics(state) -> dict[str, float]:
        logits = rule_logits(state, x_val, marginal=int(state.step) >= from_step)
        accuracy = {rule: float(np.mean(ell.argmax(-1) == y_val)) for rule, ell in logits.items()}
        plain, marginal = accuracy["plain"], accuracy.get("shift_marginal", float("nan"))
        return {"plain_rule_accuracy": plain, "shift_marginal_accuracy": marginal,
                "best_rule_accuracy": float(np.fmax(plain, marginal))}

    return metrics


def load_splits(args, *, bin_centred: bool):
    """``(train, validation, test)`` pairs as every MNIST experiment splits them.

    ``args`` carries ``dataset`` (default ``'mnist'``), ``data_dir``, ``val_size``, ``seed`` and the
    optional ``train_subset`` / ``test_subset``; ``bin_centred`` moves pixels to their 8-bit bin
    centres, where flows are evaluated (training re-draws each pixel within its bin).
    """
    import numpy as np

    from flowclass.data import load_image_dataset, train_val_split
    from flowclass.data.pixels import bin_centres

    splits = load_image_dataset(getattr(args, "dataset", "mnist"), data_dir=args.data_dir)
    x, y = splits["train"]
    x_test, y_test = splits["test"]
    if args.train_subset:
        x, y = x[: args.train_subset], y[: args.train_subset]
    if args.test_subset:
        x_test, y_test = x_test[: args.test_subset], y_test[: args.test_subset]
    train, val = train_val_split(x, y, val_fraction=args.val_size / len(x), seed=args.seed)
    test = (x_test, y_test)
    if bin_centred:
        train, val, test = ((np.asarray(bin_centres(a)), b) for a, b in (train, val, test))
    return train, val, test


def optimizer(args, num_train: int, ema: float = 0.0):
    """Adam on a warm-up + cosine schedule over ``args.epochs`` epochs, gradients clipped at norm 10;
    with ``ema`` > 0, a moving average of the parameters with that decay (``fc.params_ema``)."""
    import optax

    import flowclass as fc

    total_steps = max(1, args.epochs * (num_train // args.batch_size))
    schedule = optax.warmup_cosine_decay_schedule(0.0, args.lr, min(1000, total_steps // 10), total_steps)
    parts = [optax.clip_by_global_norm(10.0), optax.adam(schedule)]
    if ema > 0:
        parts.append(fc.params_ema(ema))
    return optax.chain(*parts)


def image_augment(shift: int, *, dequantise: bool, degrees: float = 0.0, scale: float = 0.0):
    """Training-time transforms, in order: a random rotation by up to ``degrees`` and scaling by up
    to ``scale`` (if either is set), uniform dequantisation (for flows), a random translation by up
    to ``shift`` pixels; ``None`` when there is nothing to do."""
    from flowclass.data.pixels import Compose, dequantize, random_affine, random_shift

    transforms = []
    if degrees or scale:
        transforms.append(lambda key, im: random_affine(key, im, degrees, scale))
    if dequantise:
        transforms.append(dequantize)
    if shift:
        transforms.append(lambda key, im: random_shift(key, im, shift))
    return Compose(tuple(transforms)) if transforms else None


def read_run(run_dir: Path) -> tuple[argparse.Namespace, dict]:
    """``(args, summary)`` of a finished run: the parsed arguments it was started with and its
    ``results.json``; ``args.data_dir`` is left unset (``None``): the data may live elsewhere now."""
    import json

    summary_path = Path(run_dir) / "results.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{summary_path} not found: train first with experiments/mnist.py --out {run_dir}.")
    summary = json.loads(summary_path.read_text())
    argv = []
    for name, value in summary["args"].items():
        flag = "--" + name.replace("_", "-")
        if value in ("None", "False") or name in ("out", "data_dir"):
            continue
        argv += [flag] if value == "True" else [flag, value]
    return parse_args(argv + ["--out", str(run_dir)]), summary


def load_run(run_dir: Path, sample_x):
    """Rebuilds a finished run's model from its ``results.json`` and restores the selected weights.

    Returns ``(model, variables, summary)``; ``sample_x`` is a batch of the run's inputs (for shapes).
    """
    import jax

    import flowclass as fc

    args, summary = read_run(run_dir)
    model, tx, loss_fn, _ = build(args, sample_x.shape[1:], num_train=1)
    state = fc.create_train_state(model, jax.random.key(0), sample_x, tx, loss_fn)
    best, _ = fc.restore_best(args.out / "checkpoints", state)
    return model, best.variables, summary


def save_figures(args, result, y_test, predictions) -> None:
    import jax
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = result.history
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), constrained_layout=True)
    epochs = np.arange(1, len(h["train_loss"]) + 1)
    axes[0].plot(epochs, h["train_loss"], label="train loss")
    axes[0].plot(epochs, h["val_loss"], label="validation loss")
    axes[0].set_xlabel("epoch")
    axes[0].legend()
    axes[1].plot(epochs, 100 * h["train_accuracy"], label="train")
    axes[1].plot(epochs, 100 * h["val_accuracy"], label="validation")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("accuracy (%)")
    axes[1].legend()
    fig.savefig(args.out / "training_curves.png", dpi=110)

    confusion = np.zeros((10, 10), int)
    np.add.at(confusion, (y_test, predictions), 1)
    fig, ax = plt.subplots(figsize=(5.5, 5), constrained_layout=True)
    ax.imshow(np.log1p(confusion), cmap="Blues")
    for i in range(10):
        for j in range(10):
            ax.text(j, i, confusion[i, j], ha="center", va="center", fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{args.dataset} {args.model}: test confusion matrix")
    fig.savefig(args.out / "confusion_matrix.png", dpi=110)

    if args.model == "flow":
        state = result.state
        model_apply = state.apply_fn
        rows = [np.asarray(model_apply(state.variables, jax.random.key(k), k, 8, 0.7, method="sample"))
                for k in range(10)]
        grid = np.clip(np.concatenate([np.concatenate(list(r[..., 0]), axis=1) for r in rows], axis=0), 0, 1)
        fig, ax = plt.subplots(figsize=(6, 7.5), constrained_layout=True)
        ax.imshow(grid, cmap="gray")
        ax.set_axis_off()
        ax.set_title("class-conditional samples (rows: classes 0-9, temperature 0.7)")
        fig.savefig(args.out / "samples.png", dpi=110)
    plt.close("all")


if __name__ == "__main__":
    from flowclass.runtime import restart_with_tcmalloc

    restart_with_tcmalloc()  # XLA's per-step buffers: 1.5x faster image-flow steps than glibc malloc
    main()
