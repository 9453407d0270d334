"""Noise 0.5, one seed: what ``python experiments/moons.py --noise 0.5`` runs (about 10 s on a 2-core CPU)."""

from . import MoonsConfig, flow_run, fnn_run


def get_config() -> MoonsConfig:
    return MoonsConfig(flow=flow_run(0.5), fnn=fnn_run(0.5), seeds=(0,))
