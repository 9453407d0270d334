"""Fashion-MNIST with 1,000 balanced labels, FlowGMM (no consistency term: on MNIST it cost
accuracy at this budget) against the labelled-only baseline: 5 label draws (seeds 0-4);
otherwise as ``mnist_1000labels.py``.

The images come from ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``) or
``--data-dir``.
"""

from flowclass.config import override

from ..train import ExperimentConfig
from . import mnist_1000labels


def get_config() -> ExperimentConfig:
    return override(mnist_1000labels.get_config(), ["run.data.dataset=fashion_mnist", "run.loss.consistency_weight=0.0",
                                                    "run.loss.consistency_rampup_steps=0",
                                                    "run.loss.consistency_start_step=0"])
