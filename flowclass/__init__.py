"""flowclass: normalizing flows as classifiers, in pure JAX.

A flow ``z = f_θ(x)`` and one Gaussian per class in ``z`` give exact class-conditional
likelihoods ``log p(x | k) = log N(f_θ(x); μ_k, Σ_k) + log|det ∂f_θ/∂x|``; Bayes' rule turns
them into a classifier.
"""

__version__ = "0.1.0"

from flowclass import bijectors, data, runtime, sharding
from flowclass.averaging import params_ema
from flowclass.bijectors import AffineCoupling, Bijector, Chain
from flowclass.checkpoint import Checkpointer
from flowclass.classifier import FlowClassifier
from flowclass.config import DataConfig, LossConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from flowclass.distributions import ClassGaussians, as_means
from flowclass.flows import image_realnvp, tabular_realnvp
from flowclass.losses import (
    Mean,
    SemiSupervisedLoss,
    cross_entropy,
    flow_nll,
    make_flow_loss,
    make_semi_supervised_loss,
    needs_key,
)
from flowclass.nets import CNN, FNN, MLP, Conv, ConvNet, GatedConvNet
from flowclass.training import (
    EpochRunner,
    FitCheckpoint,
    FitResult,
    NonFiniteLossError,
    Selection,
    TrainState,
    accepts_unlabelled,
    averaged,
    create_train_state,
    eval_step,
    evaluate,
    fit,
    predict_logits,
    restore_best,
    restore_selected,
    train_step,
)

__all__ = [
    "AffineCoupling",
    "Bijector",
    "DataConfig",
    "EpochRunner",
    "FitCheckpoint",
    "LossConfig",
    "Mean",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "Selection",
    "SemiSupervisedLoss",
    "TrainConfig",
    "accepts_unlabelled",
    "restore_selected",
    "CNN",
    "Chain",
    "Checkpointer",
    "Conv",
    "ConvNet",
    "ClassGaussians",
    "FNN",
    "FitResult",
    "FlowClassifier",
    "GatedConvNet",
    "MLP",
    "NonFiniteLossError",
    "TrainState",
    "__version__",
    "as_means",
    "averaged",
    "bijectors",
    "create_train_state",
    "cross_entropy",
    "data",
    "eval_step",
    "evaluate",
    "fit",
    "flow_nll",
    "image_realnvp",
    "make_flow_loss",
    "make_semi_supervised_loss",
    "needs_key",
    "params_ema",
    "predict_logits",
    "restore_best",
    "runtime",
    "sharding",
    "tabular_realnvp",
    "train_step",
]

from flowclass import (  # noqa: E402
    attacks,
    calibration,
    cli,
    config,
    generation,
    invariance,
    manifold,
    metrics,
    optim,
    robustness,
    runs,
)
from flowclass.runs import load_run  # noqa: E402

__all__ += ["attacks", "calibration", "cli", "config", "generation", "invariance", "load_run", "manifold", "metrics",
            "optim", "robustness", "runs"]
