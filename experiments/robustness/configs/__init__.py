"""Configs of the robustness experiment: every module's ``get_config()`` returns a :class:`RobustnessConfig`.

The models are finished runs of ``python -m experiments.mnist.main`` (any flowclass run of an
``image_flow`` or ``cnn`` model), named by their workdirs; a config module picks them and the
attack settings.
"""

from __future__ import annotations

import dataclasses


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require(condition: bool, field: str, expected: str, got) -> None:
    if not condition:
        raise ValueError(f"{field} must be {expected}; got {got!r}.")


@dataclasses.dataclass(frozen=True)
class RobustnessConfig:
    """The evaluation: which finished runs, and how hard to attack them.

    Attributes:
      runs: workdirs of finished runs (``flowclass.load_run`` reloads each), e.g. those of
        ``python -m experiments.mnist.main --config <name>`` (``results/mnist/<name>``): at most
        one image flow and one CNN per dataset. The first run's dataset is the one attacked; it
        needs a flow. The flow of the other dataset, if given, scores the first dataset's test
        images for out-of-distribution detection the other way round.
      eps: the ``L∞`` radii (pixels in [0, 1]) of FGSM, PGD and the adaptive attack.
      num_attack: the first this many test images are attacked.
      steps, restarts: PGD's steps (of ``2.5 ε / steps``) and random restarts.
      sanity_eps: the ε of the gradient-masking sanity checks; ``None``: per model, the ε whose
        PGD robust accuracy is nearest 50 %.
      sanity_size: test images for the sanity checks (the first ones).
      queries: model calls per image of the gradient-free random search.
      batch_size: images per jitted attack call.
      seed: the attacks' random starts and searches.
      ood: score the other dataset's test set (out-of-distribution detection).
      fashion_data_dir: where Fashion-MNIST is found; ``None``: ``--data-dir``, then
        ``$FLOWCLASS_DATA_DIR`` and the system locations (MNIST always comes from ``--data-dir``).

    Raises:
      ValueError: naming the field, for a config the experiment cannot run.
    """

    runs: tuple[str, ...] = ("results/mnist/default", "results/mnist/cnn", "results/mnist/fashion",
                             "results/mnist/fashion_cnn")
    eps: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3)
    num_attack: int = 1000
    steps: int = 40
    restarts: int = 3
    sanity_eps: float | None = None
    sanity_size: int = 200
    queries: int = 1000
    batch_size: int = 250
    seed: int = 0
    ood: bool = True
    fashion_data_dir: str | None = None

    def __post_init__(self):
        _require(len(self.runs) >= 1 and all(isinstance(r, str) and r for r in self.runs), "runs",
                 "a non-empty tuple of workdirs", self.runs)
        _require(len(set(self.runs)) == len(self.runs), "runs", "distinct workdirs", self.runs)
        _require(len(self.eps) >= 1 and all(0 < e <= 1 for e in self.eps), "eps", "a non-empty tuple in (0, 1]",
                 self.eps)
        _require(len(set(self.eps)) == len(self.eps), "eps", "distinct radii", self.eps)
        for name in ("num_attack", "steps", "restarts", "sanity_size", "queries", "batch_size"):
            value = getattr(self, name)
            _require(_is_int(value) and value >= 1, name, "an integer >= 1", value)
        _require(self.sanity_eps is None or 0 < self.sanity_eps <= 1, "sanity_eps", "in (0, 1] or None",
                 self.sanity_eps)
        _require(_is_int(self.seed) and self.seed >= 0, "seed", "an integer >= 0", self.seed)
