"""Two moons at noise 0.1, 10 balanced labels, 5 seeds (label draws); otherwise as ``default.py``."""

from flowclass.config import override

from ..train import ExperimentConfig
from . import default


def get_config() -> ExperimentConfig:
    return override(default.get_config(), ["run.data.noise=0.1", "num_seeds=5"])
