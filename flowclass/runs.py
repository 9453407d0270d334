"""Runs: a config and a workdir in, a reloadable model out.

    config = RunConfig(...)                                  # flowclass.config
    run = train(config, "results/moons")                     # config.json + checkpoints/ in the workdir
    model, variables, config = load_run("results/moons")     # any time later, in a fresh process
    model.apply(variables, x, method="predict")

A workdir belongs to one run. :func:`train` writes the config there (``config.json``, atomically)
before training and Orbax checkpoints after every epoch (``checkpoints/``); experiments add
their ``results.json`` and figures. What is refused, always before any training:

* a workdir that holds another run, unless ``resume=True`` (continue it) or ``overwrite=True``
  (delete its ``config.json``, ``checkpoints/`` and ``results.json`` first);
* a resume whose config differs from the stored one (the first difference is named; only
  :data:`~flowclass.config.RESUMABLE_FIELDS` may differ);
* a workdir that is not a directory, not writable, or without room for a checkpoint.

Everything a run needs is built from its config here, in one place: the model
(:func:`build_model`), the loss (:func:`build_loss`), the optimiser schedule
(:func:`flowclass.optim.make_optimizer`), the data and what the model sees of it
(:func:`load_splits`, :func:`flowclass.data.pixels.image_pipeline`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence, TypeVar, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flowclass import nets
from flowclass._validation import check_inputs
from flowclass.checkpoint import Checkpointer
from flowclass.config import RESUMABLE_FIELDS, RunConfig, differences, from_dict
from flowclass.data.labels import UNLABELLED, balanced_label_subset
from flowclass.data.mnist import load_image_dataset
from flowclass.data.moons import moons_splits
from flowclass.data.noise import GaussianNoise
from flowclass.data.pixels import ImagePipeline, image_pipeline
from flowclass.data.split import train_val_split
from flowclass.distributions import Covariance
from flowclass.flows import image_realnvp, tabular_realnvp
from flowclass.invariance import decision_rule_metrics
from flowclass.losses import LossFn, cross_entropy, make_flow_loss, make_semi_supervised_loss
from flowclass.optim import make_optimizer
from flowclass.training import FitResult, TrainState, check_data, create_train_state, fit, restore_selected

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
RESULTS_FILE = "results.json"

Split = tuple[np.ndarray, np.ndarray]
C = TypeVar("C")


class RunExistsError(FileExistsError):
    """The workdir holds another run; resume it, choose another workdir, or overwrite it."""


class Splits(NamedTuple):
    """``(x, y)`` pairs as a run sees them: inputs after the evaluation pipeline (e.g. pixels at bin
    centres for image flows), labels ``int32`` (``-1``: unlabelled).

    Example:
      >>> from flowclass.config import RunConfig
      >>> splits = load_splits(RunConfig())
      >>> [len(x) for x, _ in splits]
      [7650, 850, 1500]
    """

    train: Split
    val: Split
    test: Split


class Run(NamedTuple):
    """What :func:`train` returns: the config, the model, the selected state (``result.state``) and
    the whole :class:`~flowclass.FitResult`, the splits it trained on, and its workdir.

    Example: see :func:`train`.

    >>> Run._fields
    ('config', 'model', 'result', 'splits', 'workdir')
    """

    config: RunConfig
    model: nn.Module
    result: FitResult
    splits: Splits
    workdir: Path


class LoadedRun(NamedTuple):
    """What :func:`load_run` returns: ``model.apply(variables, x, method=...)`` works at once.

    Example: see :func:`train`.

    >>> LoadedRun._fields
    ('model', 'variables', 'config')
    """

    model: nn.Module
    variables: dict
    config: RunConfig


def build_model(config: RunConfig) -> nn.Module:
    """The untrained model ``config.model`` describes.

    Example:
      >>> from flowclass.config import RunConfig
      >>> type(build_model(RunConfig())).__name__
      'FlowClassifier'
    """
    m = config.model
    covariance = cast(Covariance, m.covariance)
    if m.kind == "tabular_flow":
        return tabular_realnvp(m.input_shape[0], m.num_classes, num_couplings=m.num_couplings, hidden=m.hidden,
                               means=m.means, mean_scale=m.mean_scale, trainable_means=m.trainable_means,
                               covariance=covariance, trainable_weights=m.trainable_weights)
    if m.kind == "image_flow":
        return image_realnvp(m.preset, input_shape=m.input_shape, num_classes=m.num_classes, means=m.means,
                             mean_scale=m.mean_scale, trainable_means=m.trainable_means, covariance=covariance,
                             trainable_weights=m.trainable_weights)
    if m.kind == "fnn":
        return nets.FNN(num_classes=m.num_classes, hidden=m.hidden)
    return nets.CNN(num_classes=m.num_classes)


def build_loss(config: RunConfig) -> LossFn:
    """The objective ``config.loss`` describes.

    >>> from flowclass.config import LossConfig, RunConfig
    >>> build_loss(RunConfig(loss=LossConfig(kind="semi_supervised"))).accepts_unlabelled
    True
    """
    loss = config.loss
    if loss.kind == "cross_entropy":
        return cross_entropy
    if loss.kind == "semi_supervised":
        perturb = None
        if loss.consistency_weight:  # the second copy: the run's augmentation again, or noise on tabular data
            view = pipeline(config)
            perturb = view.augment if view is not None else GaussianNoise(loss.consistency_noise)
        return make_semi_supervised_loss(unlabelled_weight=loss.unlabelled_weight,
                                         labelled_weight=loss.labelled_weight,
                                         cross_entropy_weight=loss.cross_entropy_weight,
                                         nll_unit=loss.nll_unit, num_bins=loss.num_bins,
                                         consistency_weight=loss.consistency_weight,
                                         consistency_rampup_steps=loss.consistency_rampup_steps, perturb=perturb,
                                         unlabelled_rampup_steps=loss.unlabelled_rampup_steps,
                                         consistency_start_step=loss.consistency_start_step,
                                         consistency_target=loss.consistency_target)
    return make_flow_loss(cross_entropy_weight=loss.cross_entropy_weight, nll_unit=loss.nll_unit,
                          num_bins=loss.num_bins, posterior_temperature=loss.posterior_temperature)


def pipeline(config: RunConfig) -> ImagePipeline | None:
    """What an image model sees (``None`` for tabular data): flows train on dequantised pixels and
    are scored at bin centres, discriminative nets see the pixels as they are; both get the
    configured random translation, rotation and scaling.

    Example:
      >>> from flowclass.config import DataConfig, LossConfig, ModelConfig, RunConfig
      >>> image_flow = RunConfig(model=ModelConfig(kind="image_flow", input_shape=(28, 28, 1), num_classes=10),
      ...                        data=DataConfig(dataset="mnist", shift=2))
      >>> pipeline(image_flow).dequantise, pipeline(RunConfig()) is None
      (True, True)
    """
    if config.data.dataset == "moons":
        return None
    d = config.data
    return image_pipeline(dequantise=config.model.is_flow, shift=d.shift, degrees=d.rotate, scale=d.scale)


def load_splits(config: RunConfig, *, data_dir: str | Path | None = None) -> Splits:
    """The train, validation and test splits ``config.data`` describes, as the model sees them.

    Moons: the slides' split (8,500 train / 1,500 test); images: the dataset's test set, and
    ``data.val_size`` training examples held out (by ``config.seed``) for model selection. With
    ``data.num_labels``, a class-balanced subset of that many training labels (chosen by
    ``config.seed``) is kept and repeated to about ``data.labelled_share`` of the training rows,
    the other training examples are unlabelled (``-1``), and the validation labels are hidden
    (selection sees no labels beyond the ``num_labels``); ``data.labelled_only`` keeps only the
    repeated labelled rows (the labelled-only baseline).

    Raises:
      ValueError: ``val_size`` or a subset does not fit the data.
      flowclass.data.DataNotFoundError: no local copy of an image dataset (see ``data_dir``).

    Example:
      >>> from flowclass.config import DataConfig, LossConfig, RunConfig
      >>> few = RunConfig(loss=LossConfig(kind="semi_supervised"), data=DataConfig(noise=0.1, num_labels=10))
      >>> (x, y), (x_val, y_val), _ = load_splits(few)
      >>> int((y >= 0).sum()) // 10, int((y_val >= 0).sum())  # 10 labels, each repeated; validation unlabelled
      (85, 0)
    """
    d = config.data
    if d.dataset == "moons":
        (x, y), test = moons_splits(d.noise)
    else:
        loaded = load_image_dataset(d.dataset, data_dir=data_dir)
        (x, y), test = loaded["train"], loaded["test"]
    if d.train_subset:
        x, y = x[: d.train_subset], y[: d.train_subset]
    if d.test_subset:
        test = (test[0][: d.test_subset], test[1][: d.test_subset])
    if not d.val_size < len(x):
        raise ValueError(f"data.val_size must be < the {len(x)} training examples; got {d.val_size}.")
    train, val = train_val_split(x, y, val_fraction=d.val_size / len(x), seed=config.seed)
    if d.num_labels is not None:
        train, val = _few_labels(train, val, config)
    view = pipeline(config)
    if view is not None:
        train, val, test = ((view.evaluate(a), b) for a, b in (train, val, test))
    return Splits(train, val, test)


def _few_labels(train: Split, val: Split, config: RunConfig) -> tuple[Split, Split]:
    d = config.data
    x, y = train
    assert d.num_labels is not None  # checked by the caller
    keep = balanced_label_subset(y, d.num_labels, seed=config.seed, num_classes=config.model.num_classes)
    unlabelled = np.setdiff1d(np.arange(len(x)), keep)
    repeats = max(1, round(d.labelled_share * len(unlabelled) / ((1.0 - d.labelled_share) * len(keep))))
    x_lab, y_lab = np.repeat(x[keep], repeats, axis=0), np.repeat(y[keep], repeats, axis=0)
    hidden_val = (val[0], np.full(len(val[1]), UNLABELLED, np.int32))
    if d.labelled_only:
        return (x_lab, y_lab), hidden_val
    return (np.concatenate([x_lab, x[unlabelled]]),
            np.concatenate([y_lab, np.full(len(unlabelled), UNLABELLED, np.int32)])), hidden_val


def create_state(config: RunConfig, sample_x: np.ndarray, *, steps_per_epoch: int, key: jax.Array) -> TrainState:
    """A fresh train state for ``config``: the model initialised on ``sample_x`` (a representative
    batch: ActNorm initialises on it) and the optimiser whose schedule spans ``train.epochs``
    epochs of ``steps_per_epoch`` steps (or ``optim.schedule_steps``).

    Example:
      >>> import jax, numpy as np
      >>> from flowclass.config import RunConfig
      >>> state = create_state(RunConfig(), np.zeros((1, 2), np.float32), steps_per_epoch=60, key=jax.random.key(0))
      >>> int(state.step)
      0
    """
    o = config.optim
    total = o.schedule_steps or max(1, config.train.epochs * steps_per_epoch)
    tx = make_optimizer(o.learning_rate, schedule=o.schedule, total_steps=total, warmup_steps=o.warmup_steps,
                        clip_norm=o.clip_norm, ema_decay=o.ema_decay)
    return create_train_state(build_model(config), key, jnp.asarray(sample_x), tx, build_loss(config))


def train(
    config: RunConfig,
    workdir: str | Path,
    *,
    splits: Splits | None = None,
    data_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    extra_val_metrics: Callable[[TrainState], Mapping[str, float]] | None = None,
    progress: bool = True,
) -> Run:
    """Trains the run ``config`` describes in ``workdir`` (see the module docstring).

    Args:
      splits: the data, if already loaded (as :func:`load_splits` gives it); else loaded here.
      data_dir: where image datasets are found (:func:`flowclass.data.load_image_dataset`).
      resume: continue the run stored in ``workdir`` from its newest checkpoint (or start it
        when the workdir holds no run yet).
      overwrite: delete the run stored in ``workdir`` first.
      extra_val_metrics: as in :func:`flowclass.fit`; with ``config.decision_rules`` including
        ``'shift_marginal'``, the decision-rule metrics are added here.

    Raises:
      TypeError: ``config`` not a :class:`~flowclass.config.RunConfig`, ``workdir`` not a path, a
        flag not a bool, ``splits`` not three ``(x, y)`` pairs, ``extra_val_metrics`` not callable.
      RunExistsError: ``workdir`` holds another run and neither ``resume`` nor ``overwrite``.
      ValueError: ``resume`` with a config that differs from the stored one (named), or both flags;
        ``splits`` whose examples do not have ``config.model.input_shape``; anything
        :func:`~flowclass.fit` refuses (labels out of range, NaN inputs, pixels outside [0, 1]).
      OSError: ``workdir`` is not a writable directory with room for a checkpoint.

    Example:
      >>> import tempfile
      >>> from flowclass.config import RunConfig, TrainConfig
      >>> config = RunConfig(train=TrainConfig(epochs=2))
      >>> workdir = tempfile.mkdtemp()
      >>> run = train(config, workdir, progress=False)
      >>> model, variables, stored = load_run(workdir)
      >>> stored == config, model.apply(variables, run.splits.test[0][:3], method="predict").shape
      (True, (3,))
    """
    if not isinstance(config, RunConfig):
        raise TypeError(f"config must be a flowclass.RunConfig; got {type(config).__name__} (build one with "
                        "RunConfig(...) or RunConfig.from_dict).")
    _check_flag(progress, "progress")
    if extra_val_metrics is not None and not callable(extra_val_metrics):
        raise TypeError(f"extra_val_metrics must be a function state -> {{name: value}} or None; "
                        f"got {type(extra_val_metrics).__name__}.")
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"data_dir must be a path or None; got {type(data_dir).__name__}.")
    if splits is not None:
        splits = _check_splits(splits, config)
    splits = load_splits(config, data_dir=data_dir) if splits is None else splits
    train_split, val_split, _ = splits
    for name, (x, _) in (("splits.train", train_split), ("splits.val", val_split)):
        check_inputs(x, config.model.input_shape, name=f"{name} x")
        if config.model.kind == "image_flow" and (float(np.min(x)) < 0.0 or float(np.max(x)) > 1.0):
            raise ValueError(f"{name} x must hold pixels in [0, 1] for an image flow; got values in "
                             f"[{float(np.min(x)):g}, {float(np.max(x)):g}].")
    if config.train.batch_size > len(train_split[0]):
        raise ValueError(f"train.batch_size must be at most the {len(train_split[0])} training examples; got "
                         f"{config.train.batch_size}.")
    steps_per_epoch = len(train_split[0]) // config.train.batch_size
    init_key, fit_key = jax.random.split(jax.random.key(config.seed))
    sample = np.random.default_rng(config.seed).permutation(len(train_split[0]))[:512]  # e.g. for ActNorm
    state = create_state(config, train_split[0][np.sort(sample)], steps_per_epoch=steps_per_epoch, key=init_key)
    for name, (x, y) in (("splits.train", train_split), ("splits.val", val_split)):
        check_data(state, x, y, name=name)  # bad data is refused before the workdir is touched
    workdir = prepare_workdir(config, workdir, resume=resume, overwrite=overwrite)
    if "shift_marginal" in config.decision_rules:
        rules = decision_rule_metrics(*val_split, from_step=config.train.epochs // 2 * steps_per_epoch)
        extra_val_metrics = _merge(extra_val_metrics, rules)
    view = pipeline(config)
    result = fit(state, train_split, val_split, key=fit_key, config=config.train,
                 augment=view.augment if view is not None else None,
                 checkpoint_dir=workdir / CHECKPOINT_DIR, resume=resume, extra_val_metrics=extra_val_metrics,
                 progress=progress, desc=workdir.name)
    return Run(config, build_model(config), result, splits, workdir)


def _check_flag(value: Any, name: str) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {type(value).__name__} {value!r}.")


def _check_splits(splits: Any, config: RunConfig) -> Splits:
    """``splits`` as :class:`Splits`: three ``(x, y)`` pairs whose examples have the model's input shape
    (labels and values are checked by :func:`~flowclass.fit` and the model)."""
    if not isinstance(splits, (tuple, list)) or len(splits) != 3:
        length = f" of length {len(splits)}" if isinstance(splits, (tuple, list)) else ""
        raise TypeError(f"splits must be Splits(train, val, test), three (x, y) pairs; got "
                        f"{type(splits).__name__}{length}.")
    pairs = []
    for name, pair in zip(Splits._fields, splits, strict=True):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"splits.{name} must be a pair (x, y); got {type(pair).__name__}.")
        x, y = (a if isinstance(a, (np.ndarray, jax.Array)) else np.asarray(a) for a in pair)
        if tuple(np.shape(x)[1:]) != tuple(config.model.input_shape):
            raise ValueError(f"splits.{name} x has examples of shape {tuple(np.shape(x)[1:])}; "
                             f"config.model.input_shape is {tuple(config.model.input_shape)}.")
        if np.ndim(y) != 1 or len(y) != len(x):
            raise ValueError(f"splits.{name} y must hold one label per example: shape ({len(x)},); got shape "
                             f"{np.shape(y)}.")
        pairs.append((x, y))
    return Splits(*pairs)  # type: ignore[arg-type]  # each pair checked above: (x, y) arrays


def _merge(first, second):
    if first is None:
        return second
    return lambda state: {**first(state), **second(state)}


def prepare_workdir(config: Any, workdir: str | Path, *, resume: bool = False, overwrite: bool = False,
                    config_file: str = CONFIG_FILE, owned: Sequence[str] = ()) -> Path:
    """Checks ``workdir`` for ``config`` and stores the config there; returns the absolute path.

    See the module docstring for what is refused. Called by :func:`train` for a run (a
    :class:`~flowclass.config.RunConfig` in ``config.json``, checkpoints in ``checkpoints/``), and by
    experiments for their own config (any frozen config dataclass, stored as ``config_file``, e.g.
    ``experiment.json``). ``owned`` names the other files and folders of ``workdir`` that belong to
    the stored run (sub-runs, tables, figures): they also mark it occupied, and ``overwrite`` deletes
    them with the config, ``results.json`` and ``checkpoints/``; nothing else is touched. On resume,
    fields ending in one of :data:`~flowclass.config.RESUMABLE_FIELDS` may differ.

    Raises:
      TypeError: ``config`` is not a dataclass instance, ``workdir`` not a path, a flag not a bool.
      RunExistsError: ``workdir`` holds another run and neither ``resume`` nor ``overwrite``.
      ValueError: ``resume`` with a config that differs from the stored one (the first difference
        is named), or ``resume`` and ``overwrite`` together.
      OSError: ``workdir`` is not a directory or cannot be written.

    Example:
      >>> import tempfile
      >>> from flowclass.config import RunConfig
      >>> workdir = prepare_workdir(RunConfig(), tempfile.mkdtemp())
      >>> read_config(workdir) == RunConfig()
      True
      >>> prepare_workdir(RunConfig(seed=1), workdir)
      Traceback (most recent call last):
      flowclass.runs.RunExistsError: workdir ... holds another run (a tabular_flow model, no checkpoint yet). ...
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config must be a config dataclass (e.g. flowclass.RunConfig); got {type(config).__name__}.")
    if not isinstance(workdir, (str, os.PathLike)):
        raise TypeError(f"workdir must be a path (str or pathlib.Path); got {type(workdir).__name__} {workdir!r}.")
    _check_flag(resume, "resume")
    _check_flag(overwrite, "overwrite")
    if resume and overwrite:
        raise ValueError("resume=True and overwrite=True exclude each other: continue the stored run, or delete it.")
    workdir = Path(workdir).absolute()
    if workdir.exists() and not workdir.is_dir():
        raise NotADirectoryError(f"workdir {workdir} exists and is not a directory.")
    stored_path = workdir / config_file
    held = [name for name in (config_file, CHECKPOINT_DIR, *owned) if (workdir / name).exists()]
    if held and overwrite:
        for name in (config_file, RESULTS_FILE, CHECKPOINT_DIR, *owned):
            path = workdir / name
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    elif held and resume and stored_path.exists():
        stored = from_dict(type(config), json.loads(stored_path.read_text()))
        changed = [d for d in differences(stored, config) if not d[0].endswith(RESUMABLE_FIELDS)]
        if changed:
            field, old, new = changed[0]
            raise ValueError(f"cannot resume the run in {workdir}: its config has {field}={old!r}, this one "
                             f"{field}={new!r} ({len(changed)} difference(s)). Resume with the stored "
                             f"config ({stored_path}), or start a new workdir.")
    elif held:
        what = _describe_run(workdir) if config_file == CONFIG_FILE else f"{', '.join(held)}"
        raise RunExistsError(f"workdir {workdir} holds another run ({what}). Resume it "
                             "(resume=True, --resume), choose a new workdir, or delete it first "
                             "(overwrite=True, --overwrite).")
    text = json.dumps(dataclasses.asdict(config), indent=2, sort_keys=True) + "\n"
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        _write_atomic(stored_path, text)
    except OSError as error:
        raise OSError(error.errno, f"workdir {workdir} cannot be written: {error.strerror or error}") from error
    return workdir


def _describe_run(workdir: Path) -> str:
    try:
        stored: RunConfig = read_config(workdir)
        m = stored.model
        what = f"a {m.kind} model" + (f" ({m.preset})" if m.kind == "image_flow" else "")
    except (OSError, ValueError):
        what = "checkpoints without a readable config.json"
    if not (workdir / CHECKPOINT_DIR).is_dir():
        return f"{what}, no checkpoint yet"
    try:
        with Checkpointer(workdir / CHECKPOINT_DIR, create=False) as checkpointer:
            steps = checkpointer.steps
        return f"{what}, checkpoints of epochs {steps}" if steps else f"{what}, no checkpoint yet"
    except (OSError, ValueError):
        return what


def _write_atomic(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(f.name, path)


def write_results(workdir: str | Path, results: Mapping[str, Any]) -> Path:
    """Writes ``results`` (JSON-able; NumPy scalars and arrays are converted) to ``workdir/results.json``
    atomically; returns the path.

    Example:
      >>> import tempfile, numpy as np
      >>> write_results(tempfile.mkdtemp(), {"accuracy": np.float32(0.5)}).name
      'results.json'
    """
    path = Path(workdir) / RESULTS_FILE
    _write_atomic(path, json.dumps(results, indent=2, default=_json_default) + "\n")
    return path


def _json_default(value: Any):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def read_config(workdir: str | Path, cls: type[C] = RunConfig, *, config_file: str = CONFIG_FILE) -> C:  # type: ignore[assignment]
    """The config stored in ``workdir``: a run's :class:`~flowclass.config.RunConfig`, or an
    experiment's config dataclass ``cls`` stored as ``config_file``.

    Raises:
      FileNotFoundError: ``workdir`` holds no run (nothing is created).
      ValueError: the stored file is not a valid config of ``cls``.

    Example:
      >>> read_config("no/such/workdir")
      Traceback (most recent call last):
      FileNotFoundError: no/such/workdir/config.json not found: no/such/workdir holds no run ...
    """
    path = Path(workdir) / config_file
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {Path(workdir)} holds no run (train one with flowclass.runs.train "
                                "or an experiment's --workdir).")
    try:
        return from_dict(cls, json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as error:
        raise ValueError(f"{path} is not a valid config: {error}") from error


def load_run(workdir: str | Path) -> LoadedRun:
    """``(model, variables, config)`` of the run in ``workdir``: the model rebuilt from the stored
    config, with the weights of the selected epoch (no data is needed, nothing is trained).

    Raises:
      FileNotFoundError: ``workdir`` holds no run or no checkpoint (nothing is created).
      ValueError: the checkpoints do not fit the stored config.

    Example (see :func:`train` for a trained one):
      >>> load_run("no/such/workdir")
      Traceback (most recent call last):
      FileNotFoundError: no/such/workdir/config.json not found: no/such/workdir holds no run ...
    """
    config: RunConfig = read_config(workdir)
    model = build_model(config)
    sample = np.zeros((1, *config.model.input_shape), np.float32)
    shapes = dict(jax.eval_shape(model.init, jax.random.key(0), sample))
    params = shapes.pop("params", {})
    weights, _ = restore_selected(Path(workdir) / CHECKPOINT_DIR, {"params": params, "collections": shapes})
    return LoadedRun(model, {"params": weights["params"], **weights["collections"]}, config)
