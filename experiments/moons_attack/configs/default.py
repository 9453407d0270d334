"""The study the README reports: noise 0.1, 100 epochs per model, a 40 × 40 grid and all 1,500 test
points as start points, 500 steps for the confidence and latent attacks, 20 for the likelihood attack."""

from . import MoonsAttackConfig


def get_config() -> MoonsAttackConfig:
    return MoonsAttackConfig()
