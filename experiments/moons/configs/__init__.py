"""Configs of the two-moons experiment: every module's ``get_config()`` returns a :class:`MoonsConfig`.

The two runs are built by :func:`flow_run` and :func:`fnn_run` (the slides' settings at a given
noise); a config module picks the noise and the seeds.
"""

from __future__ import annotations

import dataclasses

from flowclass.config import DataConfig, LossConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig

LATENT_MEANS = ((-4.0, 0.0), (4.0, 0.0))


def _shared(noise: float) -> dict:
    """Both models: Adam 1e-3, batch 128, 100 epochs; 850 of the slides' 8,500 training points held
    out, the epoch with the lowest validation loss kept."""
    return {"optim": OptimConfig(learning_rate=1e-3), "data": DataConfig(dataset="moons", noise=noise, val_size=850),
            "train": TrainConfig(epochs=100, batch_size=128, select="loss")}


def flow_run(noise: float) -> RunConfig:
    """The slides' flow: 5 affine couplings with MLP conditioners 2 → 100 → 100 → 4, one
    identity-covariance Gaussian per class at (±4, 0), class-conditional NLL."""
    return RunConfig(model=ModelConfig(kind="tabular_flow", input_shape=(2,), num_classes=2, num_couplings=5,
                                       hidden=(100, 100), means=LATENT_MEANS),
                     loss=LossConfig(kind="flow"), **_shared(noise))


def fnn_run(noise: float) -> RunConfig:
    """The slides' FNN: 2 → 100 → 100 → 2 with cross-entropy."""
    return RunConfig(model=ModelConfig(kind="fnn", input_shape=(2,), num_classes=2, hidden=(100, 100)),
                     loss=LossConfig(kind="cross_entropy"), **_shared(noise))


@dataclasses.dataclass(frozen=True)
class MoonsConfig:
    """The experiment: the two runs, repeated for each seed, and the fresh test set.

    Attributes:
      flow, fnn: the two runs; the noise is each run's ``data.noise``, and both see the same
        data (``flow.data == fnn.data``). Their ``seed`` stays 0: each repetition's runs take
        their seed from ``seeds``.
      seeds: one repetition per seed (initialisation, shuffling, the validation split); the
        summary gives mean ± std over them.
      fresh_size, fresh_random_state: the fresh points ``make_moons(fresh_size, noise,
        fresh_random_state)`` both models and the Bayes classifier are also scored on.

    Raises:
      ValueError: naming the field, for a config the experiment cannot run.
    """

    flow: RunConfig = flow_run(0.5)
    fnn: RunConfig = fnn_run(0.5)
    seeds: tuple[int, ...] = (0,)
    fresh_size: int = 200_000
    fresh_random_state: int = 20_260_101

    def __post_init__(self):
        if self.flow.model.kind != "tabular_flow" or self.flow.loss.kind != "flow":
            raise ValueError(f"flow must be a tabular flow with loss.kind='flow'; got flow.model.kind="
                             f"{self.flow.model.kind!r}, flow.loss.kind={self.flow.loss.kind!r}.")
        if self.fnn.model.kind != "fnn":
            raise ValueError(f"fnn.model.kind must be 'fnn'; got {self.fnn.model.kind!r}.")
        data = [d for d in self.fnn.differences(self.flow) if d[0].startswith("data.")]
        if data:
            field, mine, theirs = data[0]
            raise ValueError(f"fnn.{field} must equal flow.{field}: both models see the same data; got "
                             f"fnn.{field}={mine!r}, flow.{field}={theirs!r}.")
        for name in ("flow", "fnn"):
            if getattr(self, name).seed != 0:
                raise ValueError(f"{name}.seed must be 0: each run's seed comes from seeds (e.g. seeds=(3,)); "
                                 f"got {getattr(self, name).seed}.")
        if (not self.seeds or len(set(self.seeds)) != len(self.seeds)
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in self.seeds)):
            raise ValueError(f"seeds must be distinct integers >= 0, at least one; got {self.seeds!r}.")
        if isinstance(self.fresh_size, bool) or not isinstance(self.fresh_size, int) or self.fresh_size < 1:
            raise ValueError(f"fresh_size must be an integer >= 1; got {self.fresh_size!r}.")
        if not 0 <= self.fresh_random_state < 2**32:
            raise ValueError(f"fresh_random_state must be in [0, 2**32); got {self.fresh_random_state!r}.")

    @property
    def noise(self) -> float:
        return self.flow.data.noise
