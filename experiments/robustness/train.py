"""Measures finished MNIST / Fashion-MNIST runs: robust accuracy, likelihood detection, calibration, OOD.

:func:`train_and_evaluate` is the whole experiment; it trains nothing. It reloads every run of
``config.runs`` with :func:`flowclass.load_run` and its data with :func:`flowclass.runs.load_splits`
(the run's own validation split and test set, as the model sees them: a flow's pixels at bin
centres), then, on the first run's dataset:

1. robust accuracy under white-box FGSM and PGD (``L∞``, margin loss, random restarts) for every
   ε, on the first ``num_attack`` test images (:mod:`flowclass.robustness`);
2. the gradient-masking sanity checks per model (:func:`flowclass.robustness.sanity_checks`) at
   ``sanity_eps``, or where PGD leaves robust accuracy nearest 50 %;
3. the flow's marginal ``−log p(x)`` as a detector of adversarial inputs: attacks on the flow
   itself, transfer attacks from the CNN, and an adaptive attack that knows the detector; AUROC
   and detection rate at 5 % false positives on the clean test set;
4. calibration: ECE before and after a temperature fitted on the run's validation split;
5. out-of-distribution (``ood``): each flow scoring the other dataset's test images by
   ``−log p(x)``, ``1 − max posterior`` and typicality, next to the CNN's max softmax.

Every score is taken on what the model sees (the run's evaluation pipeline,
:func:`flowclass.runs.pipeline`): a flow scores an adversarial image at its bin centres, i.e.
rounded to the 8-bit grid. Bits/dim come from the library only: a flow's class-conditional test
bits/dim from its ``bits_per_dim`` method, the mixture's per image from the semi-supervised loss's
``marginal_bits_per_dim`` metric (:func:`marginal_bits_per_dim`). The workdir holds
``experiment.json`` (the config), ``results.json``, ``table.md`` and :data:`~.report.FIGURES`.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import flowclass as fc
from flowclass import calibration, metrics, robustness, runs
from flowclass.config import RunConfig
from flowclass.data import UNLABELLED, load_image_dataset
from flowclass.losses import make_semi_supervised_loss

from . import report
from .configs import RobustnessConfig

EXPERIMENT_FILE = "experiment.json"
TABLE_FILE = "table.md"
PIXEL_LEVELS = 256  # 8-bit images: bits/dim include log2(256), as the runs' losses do
OTHER = {"mnist": "fashion_mnist", "fashion_mnist": "mnist"}
LI_ET_AL_2019 = ("Li, Bradshaw & Sharma (2019), VAE-based generative classifiers on MNIST: "
                 "PGD robust accuracy 7.7-32.5 % at ε = 0.3; 84-95 % of successful attacks detected")


class Model(NamedTuple):
    """A reloaded run: its name (the workdir's), config, model, selected weights and data."""

    name: str
    workdir: Path
    config: RunConfig
    model: Any
    variables: dict
    splits: runs.Splits

    @property
    def is_flow(self) -> bool:
        return self.config.model.is_flow

    @property
    def dataset(self) -> str:
        return self.config.data.dataset

    def view(self, x: np.ndarray) -> np.ndarray:
        """``x`` as the model sees it in evaluation (idempotent: bin centres stay bin centres)."""
        return runs.pipeline(self.config).evaluate(x)


def train_and_evaluate(
    config: RobustnessConfig,
    workdir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    data_dir: str | Path | None = None,
    progress: bool = True,
    figures: bool = True,
) -> dict:
    """Runs the evaluation ``config`` in ``workdir``; returns the summary it writes to ``results.json``.

    Args:
      resume: evaluate again into the workdir of an earlier evaluation with the same config.
      overwrite: delete the evaluation stored in ``workdir`` first.
      data_dir: where MNIST is found (and Fashion-MNIST, unless ``config.fashion_data_dir``).
      figures: write :data:`~.report.FIGURES`.

    Raises:
      flowclass.runs.RunExistsError: ``workdir`` holds an evaluation, and neither ``resume`` nor
        ``overwrite``.
      FileNotFoundError: a workdir of ``config.runs`` holds no finished run (named).
      ValueError: runs the experiment cannot measure (named), ``resume`` with another config, or
        both flags.
      flowclass.data.DataNotFoundError: a dataset is not found.
    """
    start = time.perf_counter()
    plan = check_runs(config)
    dirs = {"mnist": data_dir, "fashion_mnist": config.fashion_data_dir or data_dir}
    models = [load(path, dirs[run_config.data.dataset]) for path, run_config in plan]
    primary = [m for m in models if m.dataset == models[0].dataset]
    flow = next(m for m in primary if m.is_flow)
    n = min(config.num_attack, *(len(m.splits.test[0]) for m in primary))
    attacked = {m.name: (m.splits.test[0][:n], m.splits.test[1][:n]) for m in primary}
    y_att = attacked[flow.name][1]
    if any(not np.array_equal(y, y_att) for _, y in attacked.values()):
        raise ValueError(f"runs: the runs on {models[0].dataset} must share their test set; "
                         f"{[m.name for m in primary]} differ in it (data.test_subset?).")
    other_tests = load_other_test_sets(models, dirs) if config.ood else {}
    workdir = prepare_workdir(config, workdir, resume=resume, overwrite=overwrite)
    key = jax.random.key(config.seed)

    summary: dict = {
        "devices": jax.device_count(), "platform": jax.devices()[0].platform, "dataset": models[0].dataset,
        "runs": {m.name: describe(m, config.batch_size) for m in models}, "settings": dataclasses.asdict(config),
        "images_attacked": n,
    }
    robust, adversarial = robust_accuracy(primary, attacked, config, key, progress)
    summary["robust_accuracy"] = robust
    summary["sanity_checks"] = sanity(primary, attacked, robust, config, key)
    clean_correct = {m.name: np.argmax(scores(m, attacked[m.name][0], config.batch_size), -1) == y_att
                     for m in primary}
    summary["detection"] = detection(flow, primary, attacked, adversarial, clean_correct, config, progress)
    reliability: dict = {}
    summary["calibration"] = {m.name: calibrate(m, config.batch_size, reliability) for m in primary}
    histograms: dict = {}
    summary["ood"] = out_of_distribution(models, other_tests, config.batch_size, histograms) if config.ood else {}
    summary["published"] = LI_ET_AL_2019
    if figures:
        bits = functools.partial(marginal_bits_per_dim, flow, batch_size=config.batch_size)
        report.save_figures(workdir, summary, primary, flow, adversarial, attacked[flow.name], reliability,
                            histograms, bits, functools.partial(scores, batch_size=config.batch_size))
    summary["wall_s"] = time.perf_counter() - start
    (workdir / TABLE_FILE).write_text(report.markdown(summary))
    runs.write_results(workdir, summary)
    return summary


# --- the runs -------------------------------------------------------------------------------


def check_runs(config: RobustnessConfig) -> list[tuple[Path, RunConfig]]:
    """The stored config of every run of ``config.runs``, checked before anything is loaded.

    Raises:
      FileNotFoundError: a workdir holds no run (named by its index in ``runs``).
      ValueError: a run that is not an image flow or a CNN, a few-label run, two flows or two
        CNNs on one dataset, no flow on the first run's dataset, or two runs of the same name.
    """
    plan, roles = [], {}
    for i, path in enumerate(config.runs):
        try:
            run_config = runs.read_config(path)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"runs[{i}] = {path!r} holds no finished run: {error}") from error
        kind, dataset = run_config.model.kind, run_config.data.dataset
        if kind not in ("image_flow", "cnn"):
            raise ValueError(f"runs[{i}] = {path!r} is a {kind} run; this experiment measures image_flow and cnn runs "
                             "(python -m experiments.mnist.main).")
        if run_config.data.num_labels is not None:
            raise ValueError(f"runs[{i}] = {path!r} is a few-label run (data.num_labels): its validation labels are "
                             "hidden, so its temperature cannot be fitted.")
        if (dataset, kind) in roles:
            raise ValueError(f"runs[{i}] = {path!r} is a second {kind} run on {dataset} (the first: "
                             f"{roles[dataset, kind]!r}); give at most one flow and one CNN per dataset.")
        roles[dataset, kind] = path
        plan.append((Path(path), run_config))
    first = plan[0][1].data.dataset
    if (first, "image_flow") not in roles:
        raise ValueError(f"runs must include an image_flow run on {first}, the first run's dataset (the one attacked); "
                         f"got {list(config.runs)}.")
    names = [p.name for p, _ in plan]
    if len(set(names)) != len(names):
        raise ValueError(f"runs must have distinct workdir names (they name the rows); got {names}.")
    return plan


def load(path: Path, data_dir) -> Model:
    """The run in ``path`` with its weights (:func:`flowclass.load_run`) and its splits."""
    model, variables, config = runs.load_run(path)
    splits = runs.load_splits(config, data_dir=data_dir)
    x, y = splits.train
    empty = (np.empty((0, *x.shape[1:]), x.dtype), np.empty((0,), y.dtype))  # only val and test are used
    return Model(path.name, path, config, model, variables, splits._replace(train=empty))


def load_other_test_sets(models: list[Model], dirs: dict) -> dict[str, np.ndarray]:
    """The test images of the dataset each flow did not see (pixels as stored), by dataset.

    Raises:
      ValueError: both datasets load the same images (a ``--data-dir`` holding MNIST's files
        directly is found for Fashion-MNIST too; set ``fashion_data_dir``).
    """
    wanted = {OTHER[m.dataset] for m in models if m.is_flow} | {m.dataset for m in models if m.is_flow}
    tests = {d: load_image_dataset(d, data_dir=dirs[d])["test"][0] for d in sorted(wanted)}
    if len(tests) == 2:
        a, b = tests.values()
        if a.shape == b.shape and np.array_equal(a, b):
            raise ValueError(f"MNIST and Fashion-MNIST loaded the same test images (from {dirs}): point "
                             "fashion_data_dir at Fashion-MNIST's files.")
    return {d: x for d, x in tests.items() if d in {OTHER[m.dataset] for m in models if m.is_flow}}


def describe(m: Model, batch_size: int) -> dict:
    """The run as the summary lists it: where, what, and its clean test accuracy (and bits/dim)."""
    x, y = m.splits.test
    row = {"workdir": str(m.workdir), "kind": m.config.model.kind, "dataset": m.dataset,
           "test_acc": metrics.accuracy(scores(m, x, batch_size), y)}
    if m.is_flow:
        row["test_bits_per_dim"] = float(np.mean(_batched(_bits_per_dim, m, x, y, batch_size=batch_size)))
    return row


# --- scores ---------------------------------------------------------------------------------


def scores(m: Model, x: np.ndarray, batch_size: int, method: str | None = None) -> np.ndarray:
    """``model.apply(variables, view(x), method=method)`` in batches (logits by default)."""
    return fc.predict_logits(m.model.apply, m.variables, m.view(x), batch_size=batch_size, method=method)


_MIXTURE_LOSS = make_semi_supervised_loss(num_bins=PIXEL_LEVELS)


@functools.partial(jax.jit, static_argnames=("apply_fn",))
def _marginal_bits(apply_fn, variables, x):
    unlabelled = jnp.full((1,), UNLABELLED, jnp.int32)
    return jax.vmap(lambda xi: _MIXTURE_LOSS(apply_fn, variables, xi[None], unlabelled)[1]["marginal_bits_per_dim"])(x)


@functools.partial(jax.jit, static_argnames=("apply_fn",))
def _bits_per_dim(apply_fn, variables, x, y):
    return apply_fn(variables, x, y, num_bins=PIXEL_LEVELS, method="bits_per_dim")


def _batched(fn, m: Model, x: np.ndarray, *rest: np.ndarray, batch_size: int) -> np.ndarray:
    x = m.view(x)
    return np.concatenate([np.asarray(fn(m.model.apply, m.variables, x[i : i + batch_size],
                                         *(r[i : i + batch_size] for r in rest)))
                           for i in range(0, len(x), batch_size)])


def marginal_bits_per_dim(flow: Model, x: np.ndarray, *, batch_size: int) -> np.ndarray:
    """The flow's ``−log p(x)`` (the mixture over classes) per image in bits/dim of the 8-bit data:
    the semi-supervised loss's ``marginal_bits_per_dim`` metric, one image at a time (``vmap``)."""
    return _batched(_marginal_bits, flow, x, batch_size=batch_size)


def _likelihood_penalty(joint, *, log_weights, threshold, weight):
    """``λ · max(0, −log p(x) − τ)`` with ``log p(x) = logsumexp_k(log p(x | k) + log π_k)`` (nats)."""
    return weight * jax.nn.relu(-jax.scipy.special.logsumexp(joint + jnp.asarray(log_weights), axis=-1) - threshold)


def _max_softmax(logits: np.ndarray) -> np.ndarray:
    return np.asarray(jax.nn.softmax(jnp.asarray(logits), axis=-1).max(-1))


def _log(start: float, message: str) -> None:
    print(f"[{time.perf_counter() - start:6.0f} s] {message}", file=sys.stderr, flush=True)


# --- 1. robust accuracy, 2. sanity checks ---------------------------------------------------


def robust_accuracy(primary: list[Model], attacked: dict, config: RobustnessConfig, key, progress: bool):
    """``{name: {'clean': a, 'fgsm ε': a, 'pgd ε': a}}`` and the PGD results by ``(name, ε)``."""
    table, adversarial = {}, {}
    for m in primary:
        x0, y = attacked[m.name]
        fn = functools.partial(m.model.apply, m.variables)
        rows = {"clean": robustness.clean_accuracy(fn, x0, y, batch_size=config.batch_size)}
        for eps in config.eps:
            start = time.perf_counter()
            fgsm = robustness.fgsm_robust_accuracy(fn, x0, y, eps=eps, batch_size=config.batch_size)
            pgd = robustness.pgd_robust_accuracy(fn, x0, y, eps=eps, steps=config.steps, restarts=config.restarts,
                                                 key=jax.random.fold_in(key, int(1000 * eps)),
                                                 batch_size=config.batch_size, progress=progress)
            rows[f"fgsm {eps:g}"], rows[f"pgd {eps:g}"] = fgsm.robust_accuracy, pgd.robust_accuracy
            adversarial[m.name, eps] = pgd
            _log(start, f"{m.name}: ε={eps:g} FGSM {100 * fgsm.robust_accuracy:.1f} %, "
                        f"PGD-{config.steps}×{config.restarts} {100 * pgd.robust_accuracy:.1f} %")
        table[m.name] = rows
    return table, adversarial


def sanity(primary: list[Model], attacked: dict, robust: dict, config: RobustnessConfig, key) -> dict:
    """The sanity checks per model at ``sanity_eps`` or where PGD leaves accuracy nearest 50 %."""
    found = {}
    for m in primary:
        eps = config.sanity_eps or min(config.eps, key=lambda e: abs(robust[m.name][f"pgd {e:g}"] - 0.5))
        x0, y = attacked[m.name]
        k = min(config.sanity_size, len(x0))
        start = time.perf_counter()
        result = robustness.sanity_checks(functools.partial(m.model.apply, m.variables), x0[:k], y[:k], eps=eps,
                                          key=jax.random.fold_in(key, 7), steps=config.steps, restarts=1,
                                          queries=config.queries, batch_size=min(config.batch_size, k))
        found[m.name] = {"eps": eps, "images": k, "accuracy": result.accuracy, "checks": result.checks,
                         "passed": result.passed}
        _log(start, f"{m.name}: sanity checks at ε={eps:g} {'passed' if result.passed else 'FAILED'}")
    return found


# --- 3. detection ---------------------------------------------------------------------------


def _detected(clean_bits: np.ndarray, adv_bits: np.ndarray) -> dict:
    scores_ = np.concatenate([clean_bits, adv_bits])
    positive = np.r_[np.zeros(len(clean_bits), bool), np.ones(len(adv_bits), bool)]
    return {"auroc": metrics.auroc(scores_, positive), "tpr_at_5_fpr": metrics.tpr_at_fpr(scores_, positive, 0.05),
            "median_adv_bits_per_dim": float(np.median(adv_bits))}


def detection(flow: Model, primary: list[Model], attacked: dict, adversarial: dict, clean_correct: dict,
              config: RobustnessConfig, progress: bool) -> dict:
    """The flow's ``−log p(x)`` against the clean test set: PGD on each model (transfer to the flow
    for the others), and an adaptive PGD on the flow that stays below the detector's threshold."""
    batch = config.batch_size
    x_test = flow.splits.test[0]
    clean_bits = marginal_bits_per_dim(flow, x_test, batch_size=batch)
    rows: dict = {}
    for source in primary:
        for eps in config.eps:
            result = adversarial[source.name, eps]
            turned = clean_correct[source.name] & ~result.correct  # successful: right before, wrong after
            row = {"attack_success": float(np.mean(turned))}
            # scored on all attacked images, then selected: one compiled shape, however many were turned
            if source is not flow and turned.any():
                fooled = np.argmax(scores(flow, result.adversarial, batch), -1) != attacked[source.name][1]
                row["transfer_success_on_flow"] = float(np.mean(fooled[turned]))
            if turned.sum() >= 2:
                adv_bits = marginal_bits_per_dim(flow, result.adversarial, batch_size=batch)
                row.update(_detected(clean_bits, adv_bits[turned]))
            rows[f"{source.name} ε={eps:g}"] = row
    # an attacker who knows the detector: PGD on the margin minus λ · max(0, −log p(x) − τ), τ the detector's
    # threshold at 5 % false positives (nats), on the flow's class log-likelihoods log p(x | k) (same argmax)
    threshold = float(np.percentile(-scores(flow, x_test, batch, "marginal_log_prob"), 95))
    threshold_bits = float(np.percentile(clean_bits, 95))
    log_weights = np.asarray(flow.model.apply(flow.variables, method="log_weights"))
    penalty = functools.partial(_likelihood_penalty, log_weights=log_weights, threshold=threshold, weight=1.0)
    joint_fn = functools.partial(flow.model.apply, flow.variables, method="class_log_likelihoods")
    x0, y = attacked[flow.name]
    undetected = np.zeros(len(x0), bool)  # per image: an undetected adversarial found within some ε' ≤ ε so far
    for eps in sorted(config.eps):
        start = time.perf_counter()
        # from x_0, not a random start: uniform noise in the ball alone lifts −log p far above τ
        result = robustness.pgd_robust_accuracy(joint_fn, x0, y, eps=eps, steps=config.steps, random_start=False,
                                                penalty=penalty, batch_size=batch, progress=progress)
        turned = clean_correct[flow.name] & ~result.correct
        adv_bits = marginal_bits_per_dim(flow, result.adversarial, batch_size=batch)
        hidden = turned & (adv_bits <= threshold_bits)
        undetected |= hidden  # a smaller ball's adversarial is also one at ε
        row = {"attack_success": float(np.mean(turned)), "undetected_success_this_eps": float(np.mean(hidden)),
               "undetected_success": float(np.mean(undetected))}
        if turned.sum() >= 2:
            row.update(_detected(clean_bits, adv_bits[turned]))
        rows[f"adaptive ε={eps:g}"] = row
        _log(start, f"adaptive attack ε={eps:g}: undetected success {100 * row['undetected_success']:.1f} %")
    return {"clean_median_bits_per_dim": float(np.median(clean_bits)),
            "threshold_bits_per_dim_at_5_fpr": threshold_bits, **rows}


# --- 4. calibration, 5. out-of-distribution -------------------------------------------------


def calibrate(m: Model, batch_size: int, reliability: dict) -> dict:
    """ECE and NLL on the test set before and after a temperature fitted on the run's validation split."""
    (x_val, y_val), (x_test, y_test) = m.splits.val, m.splits.test
    val_logits, test_logits = scores(m, x_val, batch_size), scores(m, x_test, batch_size)
    t = calibration.fit_temperature(val_logits, y_val)
    row = {"temperature": t, "test_acc": metrics.accuracy(test_logits, y_test)}
    for tag, logits in (("before", test_logits), ("after", test_logits / t)):
        row[f"ece_{tag}"] = metrics.expected_calibration_error(logits, y_test)
        row[f"ece_mass_{tag}"] = metrics.expected_calibration_error(logits, y_test, binning="mass")
        row[f"nll_{tag}"] = metrics.negative_log_likelihood(logits, y_test)
        reliability[m.name, tag] = metrics.reliability(logits, y_test)
    return row


def out_of_distribution(models: list[Model], other_tests: dict, batch_size: int, histograms: dict) -> dict:
    """Per dataset with a flow: that flow (and the CNN of the dataset) telling its test set from the
    other dataset's; AUROC with the other dataset positive."""
    found = {}
    for flow in (m for m in models if m.is_flow):
        classifier = next((m for m in models if m.dataset == flow.dataset and not m.is_flow), None)
        test_in, test_out = flow.splits.test[0], other_tests[OTHER[flow.dataset]]
        bits_in, bits_out, bits_val = (marginal_bits_per_dim(flow, x, batch_size=batch_size)
                                       for x in (test_in, test_out, flow.splits.val[0]))
        both = np.r_[bits_in, bits_out]
        positive = np.r_[np.zeros(len(bits_in), bool), np.ones(len(bits_out), bool)]
        posterior = np.r_[_max_softmax(scores(flow, test_in, batch_size)), _max_softmax(scores(flow, test_out,
                                                                                             batch_size))]
        row = {
            "flow -log p(x)": metrics.auroc(both, positive),
            "flow typicality": metrics.auroc(np.abs(both - np.mean(bits_val)), positive),
            "flow 1 - max posterior": metrics.auroc(1 - posterior, positive),
            "median bits/dim in / out": (float(np.median(bits_in)), float(np.median(bits_out))),
            "share of OOD with higher log p than the median in-distribution image":
                float(np.mean(bits_out < np.median(bits_in))),
        }
        if classifier is not None:
            softmax = np.r_[_max_softmax(scores(classifier, test_in, batch_size)),
                            _max_softmax(scores(classifier, test_out, batch_size))]
            row["CNN 1 - max softmax"] = metrics.auroc(1 - softmax, positive)
        row["flow -log p(x) TPR at 5 % FPR"] = metrics.tpr_at_fpr(both, positive, 0.05)
        name = f"{report.TITLES[flow.dataset]} → {report.TITLES[OTHER[flow.dataset]]}"
        found[name] = row
        histograms[name] = (bits_in, bits_out)
    return found


# --- the workdir ----------------------------------------------------------------------------


def prepare_workdir(config: RobustnessConfig, workdir: str | Path, *, resume: bool = False,
                    overwrite: bool = False) -> Path:
    """Checks ``workdir`` and stores ``config`` there (``experiment.json``), before any evaluation
    (:func:`flowclass.runs.prepare_workdir`; the summary, table and figures belong to it); ``resume``
    with the same config evaluates again."""
    return runs.prepare_workdir(config, workdir, resume=resume, overwrite=overwrite, config_file=EXPERIMENT_FILE,
                                owned=(TABLE_FILE, *report.FIGURES))
