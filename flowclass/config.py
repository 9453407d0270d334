"""Run configurations: one frozen dataclass tree that fully describes a training run.

A :class:`RunConfig` names the model (architecture and class-conditional base), the loss, the
optimiser schedule, the data pipeline and the training length. It is validated when built
(errors name the field), stored as JSON in a run's workdir (:mod:`flowclass.runs`), compared
field by field when a run is resumed, and overridden from the command line with
``section.field=value`` strings:

    >>> from flowclass.config import RunConfig, override
    >>> config = override(RunConfig(), ["train.epochs=5", "optim.learning_rate=3e-3"])
    >>> config.train.epochs, config.optim.learning_rate
    (5, 0.003)
    >>> RunConfig.from_dict(config.to_dict()) == config
    True

Why dataclasses rather than ``ml_collections.ConfigDict``: frozen dataclasses are immutable
(a run's config cannot drift after it was stored), typed (mypy and the override parser know
each field's type), validated in ``__post_init__`` and hashable, and they need no dependency.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import json
import math
import numbers
import types
import typing
from typing import Any, Literal, TypeVar, Union

T = TypeVar("T")
ModelKind = Literal["tabular_flow", "image_flow", "fnn", "cnn"]
LossKind = Literal["flow", "semi_supervised", "cross_entropy"]
Dataset = Literal["moons", "mnist", "fashion_mnist"]
Schedule = Literal["constant", "warmup_cosine"]

FLOW_KINDS = ("tabular_flow", "image_flow")
IMAGE_DATASETS = ("mnist", "fashion_mnist")


def _require(condition: bool, field: str, expected: str, got: Any) -> None:
    if not condition:
        raise ValueError(f"{field} must be {expected}; got {got!r}.")


def _choice(value: Any, field: str, choices: tuple) -> None:
    _require(value in choices, field, f"one of {choices}", value)


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _normalise(config: Any, section: str) -> None:
    """Checks every field of a config dataclass against its annotation and stores it in its
    canonical JSON-able form (NumPy numbers as Python ones, ints as floats in float fields, lists
    as tuples), so that a config built in Python equals the one read back from JSON.

    Raises:
      TypeError: a value of the wrong type, naming the field (``train.batch_size``).
      ValueError: a value outside a ``Literal``'s choices.
    """
    hints = _hints(type(config))  # type: ignore[arg-type]  # a class is hashable
    for field in dataclasses.fields(config):
        value, kind = getattr(config, field.name), hints[field.name]
        path = f"{section}.{field.name}" if section else field.name
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            if not isinstance(value, kind):
                raise TypeError(f"{path} must be a {kind.__name__}; got {type(value).__name__}.")
            continue
        object.__setattr__(config, field.name, _coerce(value, kind, path))


def _coerce(value: Any, kind: Any, field: str) -> Any:
    """``value`` (parsed from JSON or a command line) as the annotated type ``kind``."""
    origin = typing.get_origin(kind)
    if origin in (Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, field)
            except (TypeError, ValueError) as error:
                errors.append(str(error))
        raise TypeError(f"{field} must be {_describe(kind)}; got {value!r}.")
    if origin is Literal:
        if value not in typing.get_args(kind):
            raise ValueError(f"{field} must be one of {typing.get_args(kind)}; got {value!r}.")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{field} must be a sequence ({_describe(kind)}); got {value!r}.")
        args = typing.get_args(kind)
        item = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        if item is None:
            if len(args) != len(value):
                raise TypeError(f"{field} must have {len(args)} entries; got {value!r}.")
            return tuple(_coerce(v, a, field) for v, a in zip(value, args, strict=True))
        return tuple(_coerce(v, item, field) for v in value)
    if kind is bool:
        if not isinstance(value, (bool, _np_bool())):
            raise TypeError(f"{field} must be true or false; got {value!r}.")
        return bool(value)
    if kind is int:
        if isinstance(value, (bool, _np_bool())) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{field} must be an integer; got {value!r}.")
        return int(value)
    if kind is float:
        if isinstance(value, (bool, _np_bool())) or not isinstance(value, numbers.Real):
            raise TypeError(f"{field} must be a number; got {value!r}.")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise TypeError(f"{field} must be a string; got {value!r}.")
        return value
    raise TypeError(f"{field}: unsupported type {kind!r}.")


def _np_bool() -> type:
    import numpy as np  # numpy is a dependency of the library, not of a config's JSON

    return np.bool_


def _describe(kind: Any) -> str:
    return getattr(kind, "__name__", None) or str(kind).replace("typing.", "")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The model: a flow classifier (architecture + one Gaussian per class) or a baseline net.

    Attributes:
      kind: ``'tabular_flow'`` (:func:`~flowclass.tabular_realnvp`), ``'image_flow'``
        (:func:`~flowclass.image_realnvp`), ``'fnn'`` or ``'cnn'`` (discriminative baselines).
      input_shape: the shape of one input: ``(D,)`` tabular, ``(H, W, C)`` images.
      num_classes: ``K``.
      preset: image flows: ``'fast'`` or ``'multiscale'``.
      num_couplings, hidden: tabular flows: number of affine couplings and the conditioner
        MLP's widths; ``hidden`` is also the FNN's.
      means, mean_scale, trainable_means, covariance, trainable_weights: the class-conditional
        base (:class:`~flowclass.ClassGaussians`); ``means`` is ``'normal'``, ``'uniform'``,
        ``'onehot'`` or explicit ``(K, D)`` means.

    Example:
      >>> ModelConfig(kind="image_flow", input_shape=(28, 28, 1), num_classes=10).is_flow
      True
      >>> ModelConfig(mean_scale=0)
      Traceback (most recent call last):
      ValueError: model.mean_scale must be > 0; got 0.0.
    """

    kind: ModelKind = "tabular_flow"
    input_shape: tuple[int, ...] = (2,)
    num_classes: int = 2
    preset: str = "fast"
    num_couplings: int = 5
    hidden: tuple[int, ...] = (100, 100)
    means: Union[str, tuple[tuple[float, ...], ...]] = "normal"
    mean_scale: float = 1.0
    trainable_means: bool = False
    covariance: str = "identity"
    trainable_weights: bool = False

    def __post_init__(self):
        _normalise(self, "model")
        _choice(self.kind, "model.kind", typing.get_args(ModelKind))
        _require(len(self.input_shape) >= 1 and all(d >= 1 for d in self.input_shape), "model.input_shape",
                 "a non-empty tuple of positive sizes", self.input_shape)
        _require(self.num_classes >= 1, "model.num_classes", ">= 1", self.num_classes)
        _require(self.num_couplings >= 1, "model.num_couplings", ">= 1", self.num_couplings)
        _require(all(h >= 1 for h in self.hidden), "model.hidden", "positive widths", self.hidden)
        _require(self.mean_scale > 0, "model.mean_scale", "> 0", self.mean_scale)
        _choice(self.covariance, "model.covariance", ("identity", "diagonal", "class_diagonal"))
        if isinstance(self.means, str):
            _choice(self.means, "model.means", ("normal", "uniform", "onehot"))
        else:
            rows = {len(row) for row in self.means}
            _require(len(self.means) == self.num_classes and len(rows) == 1 and 0 not in rows, "model.means",
                     f"one mean per class ({self.num_classes} rows of equal length)", self.means)
            _require(all(math.isfinite(v) for row in self.means for v in row), "model.means", "finite", self.means)
        if self.kind == "image_flow":
            _choice(self.preset, "model.preset", ("fast", "multiscale"))
        if self.kind in ("image_flow", "cnn"):
            _require(len(self.input_shape) == 3, "model.input_shape", "(H, W, C) for an image model",
                     self.input_shape)

    @property
    def is_flow(self) -> bool:
        return self.kind in FLOW_KINDS


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """The objective (:mod:`flowclass.losses`).

    Attributes:
      kind: ``'flow'`` (class-conditional NLL, :func:`~flowclass.make_flow_loss`),
        ``'semi_supervised'`` (FlowGMM, :func:`~flowclass.make_semi_supervised_loss`) or
        ``'cross_entropy'`` (discriminative nets).
      cross_entropy_weight: ``β ≥ 0``, the weight of the posterior's cross-entropy.
      nll_unit: ``'nats'`` or ``'bits_per_dim'``.
      num_bins: quantisation levels of the data (256 for 8-bit images; bits/dim add
        ``log2 num_bins``), or ``None``.
      posterior_temperature: ``T > 0`` of the cross-entropy term.
      unlabelled_weight: ``λ ≥ 0`` of the unlabelled examples' marginal NLL (semi-supervised).
      unlabelled_rampup_steps: optimiser steps over which ``λ`` rises linearly from 0 (a warm
        start on the labelled terms; semi-supervised; 0: the full weight from the start).
      labelled_weight: ``α ≥ 0`` of the labelled examples' joint NLL (semi-supervised).
      consistency_weight: ``w ≥ 0`` of FlowGMM-cons's consistency term between the posteriors of
        two perturbed copies of each unlabelled example (semi-supervised; 0: off). The second
        copy is the run's image augmentation applied again (``data.shift``, ``rotate``,
        ``scale``, dequantisation) or, on tabular data, Gaussian noise of std ``consistency_noise``.
      consistency_rampup_steps: optimiser steps over which the weight rises linearly from 0.
      consistency_start_step: the optimiser step at which the term (and its ramp-up) starts: the
        labelled and marginal terms train the classifier without it until then (0: from the
        start, as FlowGMM).
      consistency_target: ``'perturbed'`` (the second copy's posterior is the target, the input's
        is trained) or ``'input'`` (FixMatch's direction: the input's is the target, the further
        perturbed copy's is trained); see :func:`~flowclass.make_semi_supervised_loss`.
      consistency_noise: tabular data: the std of that noise (input units); must be 0 for images.

    Example:
      >>> LossConfig(nll_unit="bits_per_dim", num_bins=256, cross_entropy_weight=3.0).kind
      'flow'
    """

    kind: LossKind = "flow"
    cross_entropy_weight: float = 0.0
    nll_unit: str = "nats"
    num_bins: int | None = None
    posterior_temperature: float = 1.0
    unlabelled_weight: float = 1.0
    labelled_weight: float = 1.0
    consistency_weight: float = 0.0
    consistency_rampup_steps: int = 0
    consistency_noise: float = 0.0
    unlabelled_rampup_steps: int = 0
    consistency_start_step: int = 0
    consistency_target: str = "perturbed"

    def __post_init__(self):
        _normalise(self, "loss")
        _choice(self.kind, "loss.kind", typing.get_args(LossKind))
        _require(self.cross_entropy_weight >= 0, "loss.cross_entropy_weight", ">= 0", self.cross_entropy_weight)
        _choice(self.nll_unit, "loss.nll_unit", ("nats", "bits_per_dim"))
        _require(self.num_bins is None or self.num_bins >= 2, "loss.num_bins", ">= 2 or None", self.num_bins)
        _require(self.posterior_temperature > 0, "loss.posterior_temperature", "> 0", self.posterior_temperature)
        _require(self.unlabelled_weight >= 0, "loss.unlabelled_weight", ">= 0", self.unlabelled_weight)
        _require(0 <= self.labelled_weight < math.inf, "loss.labelled_weight", "finite and >= 0", self.labelled_weight)
        _require(0 <= self.consistency_weight < math.inf, "loss.consistency_weight", "finite and >= 0",
                 self.consistency_weight)
        _require(self.consistency_rampup_steps >= 0, "loss.consistency_rampup_steps", ">= 0",
                 self.consistency_rampup_steps)
        _require(self.consistency_noise >= 0, "loss.consistency_noise", ">= 0", self.consistency_noise)
        _require(self.consistency_start_step >= 0, "loss.consistency_start_step", ">= 0",
                 self.consistency_start_step)
        _choice(self.consistency_target, "loss.consistency_target", ("perturbed", "input"))
        _require(self.unlabelled_rampup_steps >= 0, "loss.unlabelled_rampup_steps", ">= 0",
                 self.unlabelled_rampup_steps)
        semi = self.kind == "semi_supervised"
        _require(semi or (self.consistency_weight == 0 and self.labelled_weight == 1.0
                          and self.unlabelled_rampup_steps == 0),
                 "loss.consistency_weight, loss.labelled_weight and loss.unlabelled_rampup_steps",
                 "0, 1 and 0 unless loss.kind='semi_supervised'",
                 (self.consistency_weight, self.labelled_weight, self.unlabelled_rampup_steps))


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Adam, at a constant rate or with warm-up and cosine decay (:func:`flowclass.optim.make_optimizer`).

    Attributes:
      learning_rate: the (peak) rate, > 0.
      schedule: ``'constant'`` or ``'warmup_cosine'`` (over the run's ``train.epochs``).
      warmup_steps: warm-up length; ``None``: ``min(1000, total_steps // 10)``.
      clip_norm: clip gradients to this global norm first; ``None``: no clipping.
      ema_decay: validate, select and keep a moving average of the parameters with this
        decay (``0``: off).
      schedule_steps: the schedule's length in steps; ``None``: ``train.epochs`` epochs (set it
        to give two runs on different data the same schedule).

    Example:
      >>> OptimConfig(schedule="warmup_cosine", clip_norm=10.0).learning_rate
      0.001
    """

    learning_rate: float = 1e-3
    schedule: Schedule = "constant"
    warmup_steps: int | None = None
    clip_norm: float | None = None
    ema_decay: float = 0.0
    schedule_steps: int | None = None

    def __post_init__(self):
        _normalise(self, "optim")
        _require(self.learning_rate > 0 and math.isfinite(self.learning_rate), "optim.learning_rate", "> 0",
                 self.learning_rate)
        _choice(self.schedule, "optim.schedule", typing.get_args(Schedule))
        _require(self.warmup_steps is None or self.warmup_steps >= 0, "optim.warmup_steps", ">= 0 or None",
                 self.warmup_steps)
        _require(self.clip_norm is None or self.clip_norm > 0, "optim.clip_norm", "> 0 or None", self.clip_norm)
        _require(0 <= self.ema_decay < 1, "optim.ema_decay", "in [0, 1)", self.ema_decay)
        _require(self.schedule_steps is None or self.schedule_steps >= 1, "optim.schedule_steps", ">= 1 or None",
                 self.schedule_steps)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The data and what the model sees of it.

    Attributes:
      dataset: ``'moons'`` (the slides' split of ``make_moons``), ``'mnist'`` or ``'fashion_mnist'``.
      noise: moons: the ``make_moons`` noise, > 0.
      val_size: training examples held out for model selection (never the test set).
      train_subset, test_subset: use only the first this many examples (smoke runs).
      num_labels: keep a class-balanced subset of this many labels and mark the other
        training examples unlabelled (``-1``; semi-supervised); ``None``: all labelled.
      labelled_share: with ``num_labels``, the labelled examples are repeated to about this
        share of the training rows.
      labelled_only: with ``num_labels``, train on the repeated labelled rows alone (the
        labelled-only baseline).
      shift, rotate, scale: images: training-time random translation (pixels), rotation
        (degrees) and scaling (fraction); flows also train on dequantised pixels and are
        scored at bin centres (:func:`flowclass.data.pixels.image_pipeline`).

    Example:
      >>> DataConfig(dataset="mnist", val_size=5000, shift=2).dataset
      'mnist'
    """

    dataset: Dataset = "moons"
    noise: float = 0.5
    val_size: int = 850
    train_subset: int | None = None
    test_subset: int | None = None
    num_labels: int | None = None
    labelled_share: float = 0.1
    labelled_only: bool = False
    shift: int = 0
    rotate: float = 0.0
    scale: float = 0.0

    def __post_init__(self):
        _normalise(self, "data")
        _choice(self.dataset, "data.dataset", typing.get_args(Dataset))
        _require(self.noise > 0, "data.noise", "> 0", self.noise)
        _require(self.val_size >= 1, "data.val_size", ">= 1", self.val_size)
        for name in ("train_subset", "test_subset", "num_labels"):
            value = getattr(self, name)
            _require(value is None or value >= 1, f"data.{name}", ">= 1 or None", value)
        _require(0 < self.labelled_share < 1, "data.labelled_share", "in (0, 1)", self.labelled_share)
        _require(not self.labelled_only or self.num_labels is not None, "data.labelled_only",
                 "False unless data.num_labels is set", self.labelled_only)
        _require(self.shift >= 0, "data.shift", ">= 0", self.shift)
        _require(self.rotate >= 0, "data.rotate", ">= 0", self.rotate)
        _require(0 <= self.scale < 1, "data.scale", "in [0, 1)", self.scale)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The training loop (:func:`flowclass.fit`).

    Attributes:
      epochs: length of the run (and of the learning-rate schedule).
      batch_size: training examples per step (must divide over the devices).
      eval_batch_size: examples per validation batch.
      max_steps_per_call: steps per call of the fit's compiled step loop (one host round trip each).
      time_budget_s: stop after the block in which this much training time (seconds) has
        passed; ``None``: no limit. It may differ when a run is resumed.
      select: the validation metric that selects the kept epoch (lowest, or highest for
        ``'accuracy'`` and names ending in ``'_accuracy'``).
      checkpoint_every_s: with a checkpoint directory, save after the first epoch that ends this
        many seconds after the previous save, and always after the last epoch (``0``: every
        epoch). A kill loses at most this much training. It may differ when a run is resumed.

    Example:
      >>> TrainConfig(epochs=3, batch_size=64).select
      'loss'
    """

    epochs: int = 100
    batch_size: int = 128
    eval_batch_size: int = 4096
    max_steps_per_call: int = 100
    time_budget_s: float | None = None
    select: str = "loss"
    checkpoint_every_s: float = 60.0

    def __post_init__(self):
        _normalise(self, "train")
        for name in ("epochs", "batch_size", "eval_batch_size", "max_steps_per_call"):
            value = getattr(self, name)
            _require(isinstance(value, int) and not isinstance(value, bool) and value >= 1, f"train.{name}",
                     "an integer >= 1", value)
        _require(self.time_budget_s is None or self.time_budget_s > 0, "train.time_budget_s", "> 0 or None",
                 self.time_budget_s)
        _require(isinstance(self.select, str) and bool(self.select), "train.select", "a metric name", self.select)
        _require(self.checkpoint_every_s >= 0, "train.checkpoint_every_s", ">= 0", self.checkpoint_every_s)


RESUMABLE_FIELDS = ("train.time_budget_s", "train.checkpoint_every_s")
"""Fields that may differ between a stored run and its resumption (they limit one invocation)."""

LABEL_FREE_METRICS = ("loss", "marginal_nll", "marginal_bits_per_dim")
"""Validation metrics computed without labels: the ones a few-label run may select on."""


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run; see the module docstring.

    Attributes:
      model, loss, optim, data, train: the sections above.
      seed: initialisation, shuffling, augmentation, the validation split and the label draw.
      decision_rules: ``('plain',)``, or ``('plain', 'shift_marginal')`` to select the epoch and
        the decision rule together on validation (:mod:`flowclass.invariance`; image flows).

    Raises:
      ValueError: a field out of range, or parts that do not fit together (e.g. a flow with
        the cross-entropy loss, an image model on moons, a batch larger than the data).

    Example:
      >>> config = RunConfig(model=ModelConfig(kind="fnn"), loss=LossConfig(kind="cross_entropy"))
      >>> config.differences(RunConfig())[0]
      ('model.kind', 'fnn', 'tabular_flow')
    """

    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    seed: int = 0
    decision_rules: tuple[str, ...] = ("plain",)

    def __post_init__(self):
        _normalise(self, "")
        _require(isinstance(self.seed, int) and self.seed >= 0, "seed", "an integer >= 0", self.seed)
        _require(self.decision_rules in (("plain",), ("plain", "shift_marginal")), "decision_rules",
                 "('plain',) or ('plain', 'shift_marginal')", self.decision_rules)
        flow_loss = self.loss.kind in ("flow", "semi_supervised")
        if self.model.is_flow != flow_loss:
            raise ValueError(f"loss.kind {self.loss.kind!r} does not fit model.kind {self.model.kind!r}: flows take "
                             "'flow' or 'semi_supervised', fnn and cnn take 'cross_entropy'.")
        image_model = self.model.kind in ("image_flow", "cnn")
        if image_model != (self.data.dataset in IMAGE_DATASETS):
            raise ValueError(f"data.dataset {self.data.dataset!r} does not fit model.kind {self.model.kind!r}.")
        if self.data.num_labels is not None and self.loss.kind != "semi_supervised":
            raise ValueError("data.num_labels (unlabelled training examples) needs loss.kind='semi_supervised'.")
        if image_model and self.loss.consistency_noise:
            raise ValueError(f"loss.consistency_noise must be 0 for images (the second copy is the run's image "
                             f"augmentation applied again; noise would leave [0, 1]); got "
                             f"{self.loss.consistency_noise}.")
        if not image_model and self.loss.consistency_weight and not self.loss.consistency_noise:
            raise ValueError("loss.consistency_weight > 0 on tabular data needs loss.consistency_noise > 0 (the std of "
                             "the Gaussian noise that draws the second copy); got 0.")
        if self.data.num_labels is not None and self.train.select not in LABEL_FREE_METRICS:
            raise ValueError(f"with data.num_labels the validation labels are hidden: train.select must be one of "
                             f"{LABEL_FREE_METRICS}; got {self.train.select!r}.")
        if "shift_marginal" in self.decision_rules and self.model.kind != "image_flow":
            raise ValueError("decision_rules with 'shift_marginal' needs model.kind='image_flow'.")
        if "shift_marginal" in self.decision_rules and self.train.select != "best_rule_accuracy":
            raise ValueError("decision_rules with 'shift_marginal' selects the epoch and the rule together: "
                             f"train.select must be 'best_rule_accuracy'; got {self.train.select!r}.")
        if "shift_marginal" not in self.decision_rules and self.train.select == "best_rule_accuracy":
            raise ValueError("train.select='best_rule_accuracy' needs decision_rules=('plain', 'shift_marginal').")

    def to_dict(self) -> dict:
        """A JSON-able dict (tuples become lists)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        """The config stored by :meth:`to_dict`; unknown or missing sections/fields raise ValueError."""
        return _build(cls, data, "")

    def differences(self, other: RunConfig) -> list[tuple[str, Any, Any]]:
        """``(field, self's value, other's value)`` for every field that differs, in field order."""
        return differences(self, other)


def differences(config: Any, other: Any) -> list[tuple[str, Any, Any]]:
    """``(field, config's value, other's value)`` for every field of two config dataclass trees of
    the same type that differs, in field order, with dotted field names.

    Example:
      >>> differences(TrainConfig(), TrainConfig(epochs=5))
      [('epochs', 100, 5)]
    """
    mine, theirs = _flatten(dataclasses.asdict(config)), _flatten(dataclasses.asdict(other))
    return [(k, mine[k], theirs.get(k)) for k in mine if mine[k] != theirs.get(k)]


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _build(cls, data: Any, path: str):
    if not isinstance(data, dict):
        raise ValueError(f"config section {path or 'root'!r} must be a mapping; got {data!r}.")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown config field(s) {[path + k for k in unknown]}; "
                         f"{path or 'the config'} has {sorted(names)}.")
    values = {}
    try:
        for name, raw in data.items():
            kind = hints[name]
            if dataclasses.is_dataclass(kind):
                values[name] = _build(kind, raw, f"{path}{name}.")
            else:
                values[name] = _coerce(raw, kind, f"{path}{name}")
        return cls(**values)
    except (ValueError, TypeError) as error:
        if cls is not RunConfig or not path:
            raise
        # a RunConfig inside an experiment's config: its messages name "section.field"; add where it sits
        message = str(error)
        first = message.split(" ", 1)[0].split("=", 1)[0]
        named = any(first.startswith(f"{field.name}.") or first == field.name for field in dataclasses.fields(cls))
        raise type(error)(f"{path}{message}" if named else f"{path[:-1]}: {message}") from error


def from_dict(cls: type[T], data: dict) -> T:
    """A config dataclass ``cls`` (any frozen dataclass tree of these field types) from a dict such
    as :func:`dataclasses.asdict` gives; unknown or mistyped fields raise ValueError/TypeError.

    Example:
      >>> from_dict(TrainConfig, {"epochs": 3, "time_budget_s": None}).epochs
      3
    """
    return _build(cls, data, "")


def override(config: T, assignments: list[str] | tuple[str, ...]) -> T:
    """``config`` with ``'section.field=value'`` (or top-level ``'field=value'``) assignments applied,
    in order; ``config`` is a :class:`RunConfig` or any frozen dataclass tree (an experiment's).

    Values are Python literals (``3``, ``1e-3``, ``None``, ``True``, ``(64, 64)``, ``'fast'``);
    anything that is not a literal is taken as a string (``model.preset=fast``). The result is
    validated as a whole.

    Raises:
      ValueError: a malformed assignment, an unknown section or field, or an invalid value.
      TypeError: a value of the wrong type for its field.

    Example:
      >>> override(RunConfig(), ["model.hidden=(64, 64)", "data.noise=0.25"]).model.hidden
      (64, 64)
    """
    tree = dataclasses.asdict(config)  # type: ignore[call-overload]  # T is a dataclass (checked by from_dict)
    for assignment in assignments:
        if not isinstance(assignment, str) or "=" not in assignment:
            raise ValueError(f"an override must read 'section.field=value'; got {assignment!r}.")
        key, text = assignment.split("=", 1)
        parts = key.strip().split(".")
        node = tree
        for depth, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                raise ValueError(f"unknown config section {'.'.join(parts[: depth + 1])!r} in override {assignment!r}; "
                                 f"sections: {sorted(k for k, v in node.items() if isinstance(v, dict))}.")
            node = node[part]
        if parts[-1] not in node or isinstance(node[parts[-1]], dict):
            raise ValueError(f"unknown config field {key.strip()!r} in override {assignment!r}.")
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            value = text.strip()
        node[parts[-1]] = value
    return from_dict(type(config), tree)
