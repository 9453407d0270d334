"""The README's row for noise 0.25: both models at the slides' settings, seeds 0, 1, 2."""

from . import MoonsConfig, flow_run, fnn_run


def get_config() -> MoonsConfig:
    return MoonsConfig(flow=flow_run(0.25), fnn=fnn_run(0.25), seeds=(0, 1, 2))
