"""Configs of the geometry experiment: every module's ``get_config()`` returns a :class:`GeometryConfig`."""

from __future__ import annotations

import dataclasses
import math

from flowclass.config import DataConfig, LossConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig

DIRECTIONS = {"x": (1.0, 0.0), "y": (0.0, 1.0), "diagonal": (math.sqrt(0.5), math.sqrt(0.5))}


def flow_run(noise: float, *, epochs: int = 40) -> RunConfig:
    """The slides' moons flow (5 affine couplings, MLP conditioners 2 → 100 → 100 → 4, identity
    covariance, class-conditional NLL), Adam 1e-3, batch 128, 850 of the 8,500 training points
    held out and the epoch with the lowest validation loss kept. Its means are set per placement."""
    return RunConfig(
        model=ModelConfig(kind="tabular_flow", input_shape=(2,), num_classes=2, num_couplings=5, hidden=(100, 100),
                          means=((-4.0, 0.0), (4.0, 0.0))),
        loss=LossConfig(kind="flow"),
        optim=OptimConfig(learning_rate=1e-3),
        data=DataConfig(dataset="moons", noise=noise, val_size=850),
        train=TrainConfig(epochs=epochs, batch_size=128, select="loss"),
    )


@dataclasses.dataclass(frozen=True)
class GeometryConfig:
    """The sweep: one run of ``run`` per direction, distance and seed.

    Attributes:
      run: the flow every placement trains; its ``model.means`` is replaced by ``±(d/2) u`` and its
        ``seed`` (left at 0) by each of ``seeds``. The noise is ``run.data.noise``.
      distances: the distances ``d > 0`` between the two means (the slides used 8 along x).
      directions: names of the unit vectors ``u``: ``'x'``, ``'y'``, ``'diagonal'``.
      seeds: repetitions (initialisation, shuffling, the validation split); mean ± std over them.
      fresh_size, fresh_random_state: the fresh points the accuracy is measured on.

    Raises:
      ValueError: naming the field, for a config the experiment cannot run.
    """

    run: RunConfig = flow_run(0.25)
    distances: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
    directions: tuple[str, ...] = ("x", "y", "diagonal")
    seeds: tuple[int, ...] = (0, 1, 2)
    fresh_size: int = 200_000
    fresh_random_state: int = 20_260_101

    def __post_init__(self):
        m = self.run.model
        if m.kind != "tabular_flow" or m.input_shape != (2,) or m.num_classes != 2 or self.run.loss.kind != "flow":
            raise ValueError("run must be a two-class tabular flow on 2-D inputs with loss.kind='flow'; got "
                             f"run.model.kind={m.kind!r}, run.model.input_shape={m.input_shape}, "
                             f"run.model.num_classes={m.num_classes}, run.loss.kind={self.run.loss.kind!r}.")
        if self.run.seed != 0:
            raise ValueError(f"run.seed must be 0: each run's seed comes from seeds; got {self.run.seed}.")
        if not self.distances or not all(d > 0 for d in self.distances) or len(set(self.distances)) != len(
                self.distances):
            raise ValueError(f"distances must be distinct numbers > 0, at least one; got {self.distances!r}.")
        if not self.directions or not set(self.directions) <= set(DIRECTIONS) or len(set(self.directions)) != len(
                self.directions):
            raise ValueError(f"directions must be distinct names from {tuple(DIRECTIONS)}, at least one; "
                             f"got {self.directions!r}.")
        if (not self.seeds or len(set(self.seeds)) != len(self.seeds)
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in self.seeds)):
            raise ValueError(f"seeds must be distinct integers >= 0, at least one; got {self.seeds!r}.")
        if isinstance(self.fresh_size, bool) or not isinstance(self.fresh_size, int) or self.fresh_size < 1:
            raise ValueError(f"fresh_size must be an integer >= 1; got {self.fresh_size!r}.")
        if not 0 <= self.fresh_random_state < 2**32:
            raise ValueError(f"fresh_random_state must be in [0, 2**32); got {self.fresh_random_state!r}.")

    @property
    def noise(self) -> float:
        return self.run.data.noise

    def means(self, direction: str, distance: float) -> tuple[tuple[float, float], tuple[float, float]]:
        """The class means ``-(d/2) u`` and ``+(d/2) u``."""
        u = DIRECTIONS[direction]
        return (-0.5 * distance * u[0], -0.5 * distance * u[1]), (0.5 * distance * u[0], 0.5 * distance * u[1])
