"""MNIST with 100 balanced labels, FlowGMM-cons: 5 label draws (seeds 0-4); otherwise as
``mnist_1000labels.py`` (the 100 labels are repeated to half of the rows: 2 epochs are 1,714 steps, so
the consistency term starts after the first 857)."""

from flowclass.config import override

from ..train import ExperimentConfig
from . import mnist_1000labels


def get_config() -> ExperimentConfig:
    return override(mnist_1000labels.get_config(), ["run.data.num_labels=100", "run.loss.consistency_start_step=857"])
