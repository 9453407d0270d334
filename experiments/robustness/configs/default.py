"""The runs of ``experiments.mnist``'s default configs (the fast flow, 27 epochs; the CNN; their
Fashion-MNIST twins ``fashion`` and ``fashion_cnn``) in their default workdirs, attacked at
ε = 0.05, 0.1, 0.2, 0.3 (the former script's defaults). Train them first:

    python -m experiments.mnist.main --config default --data-dir DIR      # and cnn, fashion, fashion_cnn
"""

from . import RobustnessConfig


def get_config() -> RobustnessConfig:
    return RobustnessConfig()
