"""A smoke run in well under a minute (formerly ``--quick``): 10 epochs per model, a 12 × 12 grid,
100 test start points, at most 60 steps."""

from . import MoonsAttackConfig, flow_classifier_run, fnn_run, unconditional_flow_run


def get_config() -> MoonsAttackConfig:
    return MoonsAttackConfig(fnn=fnn_run(0.1, epochs=10), flow_classifier=flow_classifier_run(0.1, epochs=10),
                             unconditional_flow=unconditional_flow_run(0.1, epochs=10),
                             grid=12, test_starts=100, max_steps=60)
