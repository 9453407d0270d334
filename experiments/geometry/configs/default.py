"""The README's moons geometry result: noise 0.25, d ∈ {0.5, 1, 2, 4, 8, 16} along x, y and the
diagonal, 40 epochs per run, seeds 0, 1, 2 (54 runs)."""

from . import GeometryConfig, flow_run


def get_config() -> GeometryConfig:
    return GeometryConfig(run=flow_run(0.25, epochs=40), distances=(0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
                          directions=("x", "y", "diagonal"), seeds=(0, 1, 2))
