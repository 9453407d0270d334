"""Configs of the moons attack experiment: every module's ``get_config()`` returns a :class:`MoonsAttackConfig`.

The three runs are built by :func:`fnn_run`, :func:`flow_classifier_run` and
:func:`unconditional_flow_run` (the slides' settings at a given noise and length); a config
module picks the noise, the training length and the size of the attack study.
"""

from __future__ import annotations

import dataclasses

from flowclass.config import DataConfig, LossConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig

MODELS = ("fnn", "flow_classifier", "unconditional_flow")
LATENT_MEANS = ((-4.0, 0.0), (4.0, 0.0))


def _shared(noise: float, epochs: int) -> dict:
    """Every model: Adam 1e-3, batch 128; 850 of the slides' 8,500 training points held out, the
    epoch with the lowest validation loss kept."""
    return {"optim": OptimConfig(learning_rate=1e-3), "data": DataConfig(dataset="moons", noise=noise, val_size=850),
            "train": TrainConfig(epochs=epochs, batch_size=128, select="loss")}


def fnn_run(noise: float = 0.1, epochs: int = 100) -> RunConfig:
    """The slides' FNN, 2 → 100 → 100 → 2 with cross-entropy: the confidence and latent attacks' target."""
    return RunConfig(model=ModelConfig(kind="fnn", input_shape=(2,), num_classes=2, hidden=(100, 100)),
                     loss=LossConfig(kind="cross_entropy"), **_shared(noise, epochs))


def flow_classifier_run(noise: float = 0.1, epochs: int = 100) -> RunConfig:
    """The slides' flow classifier: 5 affine couplings (MLP conditioners 2 → 100 → 100 → 4), one
    identity-covariance Gaussian per class at (±4, 0), class-conditional NLL."""
    return RunConfig(model=ModelConfig(kind="tabular_flow", input_shape=(2,), num_classes=2, num_couplings=5,
                                       hidden=(100, 100), means=LATENT_MEANS),
                     loss=LossConfig(kind="flow"), **_shared(noise, epochs))


def unconditional_flow_run(noise: float = 0.1, epochs: int = 100) -> RunConfig:
    """The latent attack's flow: the same architecture with one standard Gaussian base (one
    "class"; every label is 0), trained by maximum likelihood."""
    return RunConfig(model=ModelConfig(kind="tabular_flow", input_shape=(2,), num_classes=1, num_couplings=5,
                                       hidden=(100, 100), means=((0.0, 0.0),)),
                     loss=LossConfig(kind="flow"), **_shared(noise, epochs))


def _require(condition: bool, field: str, expected: str, got) -> None:
    if not condition:
        raise ValueError(f"{field} must be {expected}; got {got!r}.")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class MoonsAttackConfig:
    """The experiment: three runs on the same moons, then the attacks from every start point.

    Attributes:
      fnn, flow_classifier, unconditional_flow: the three runs (:mod:`flowclass.config`); all
        see the same data (``data`` equal), whose ``data.noise`` is the experiment's noise. Their
        ``seed`` stays 0: each run takes its seed from ``seed``.
      seed: initialisation, shuffling and the validation split of all three runs.
      grid: ``grid × grid`` start points over the data's bounding box plus 0.5, each attacked
        towards both classes.
      test_starts: the first this many of the 1,500 test points are also start points, each
        attacked towards the class it does not belong to.
      max_steps: the step limit of the confidence and latent attacks (they stop at success).
      likelihood_steps: the likelihood attack's steps (it never stops early; the slides: 20).
      attack_lr: the Adam learning rate of every attack (the slides: 0.1).
      threshold: success is ``p(target | x) > threshold``.
      percentile: a point is on the manifold when its true log-density exceeds this percentile
        of the test points' (:func:`flowclass.manifold.manifold_threshold`).

    Raises:
      ValueError: naming the field, for a config the experiment cannot run.
    """

    fnn: RunConfig = fnn_run()
    flow_classifier: RunConfig = flow_classifier_run()
    unconditional_flow: RunConfig = unconditional_flow_run()
    seed: int = 0
    grid: int = 40
    test_starts: int = 1500
    max_steps: int = 500
    likelihood_steps: int = 20
    attack_lr: float = 0.1
    threshold: float = 0.99
    percentile: float = 1.0

    def __post_init__(self):
        kinds = {"fnn": ("fnn", 2), "flow_classifier": ("tabular_flow", 2), "unconditional_flow": ("tabular_flow", 1)}
        for name, (kind, classes) in kinds.items():
            run = getattr(self, name)
            _require(run.model.kind == kind, f"{name}.model.kind", repr(kind), run.model.kind)
            _require(run.model.num_classes == classes, f"{name}.model.num_classes", str(classes),
                     run.model.num_classes)
            _require(run.data.dataset == "moons", f"{name}.data.dataset", "'moons'", run.data.dataset)
            _require(run.seed == 0, f"{name}.seed", "0 (each run's seed comes from seed, e.g. seed=3)", run.seed)
            if name != "fnn":
                _require(run.loss.kind == "flow", f"{name}.loss.kind", "'flow'", run.loss.kind)
                data = [d for d in run.differences(self.fnn) if d[0].startswith("data.")]
                if data:
                    field, mine, theirs = data[0]
                    raise ValueError(f"{name}.{field} must equal fnn.{field}: the three models see the same data; "
                                     f"got {name}.{field}={mine!r}, fnn.{field}={theirs!r}.")
        _require(_is_int(self.seed) and self.seed >= 0, "seed", "an integer >= 0", self.seed)
        _require(_is_int(self.grid) and self.grid >= 2, "grid", "an integer >= 2", self.grid)
        for name in ("test_starts", "max_steps", "likelihood_steps"):
            value = getattr(self, name)
            _require(_is_int(value) and value >= 1, name, "an integer >= 1", value)
        _require(self.attack_lr > 0, "attack_lr", "> 0", self.attack_lr)
        _require(0 < self.threshold < 1, "threshold", "in (0, 1)", self.threshold)
        _require(0 <= self.percentile <= 100, "percentile", "in [0, 100]", self.percentile)

    @property
    def noise(self) -> float:
        return self.fnn.data.noise

    def run(self, name: str) -> RunConfig:
        """The run ``name`` (one of :data:`MODELS`) as trained: its config with the experiment's ``seed``."""
        return dataclasses.replace(getattr(self, name), seed=self.seed)
