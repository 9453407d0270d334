"""Two moons at noise 0.25, 10 balanced labels, one seed: the quick look.

The slides' data and flow (5 affine couplings, MLP conditioners 2 → 100 → 100 → 4, class means
(±4, 0), identity covariance), FlowGMM's loss without a cross-entropy term, Adam 1e-3, batch 128,
100 epochs of the semi-supervised set; 850 of the 8,500 training points held out unlabelled for
selection by the marginal NLL; the labelled points repeated to 10 % of the training rows.
"""

from flowclass.config import DataConfig, LossConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig

from ..train import ExperimentConfig


def get_config() -> ExperimentConfig:
    run = RunConfig(
        model=ModelConfig(kind="tabular_flow", input_shape=(2,), num_classes=2, num_couplings=5, hidden=(100, 100),
                          means=((-4.0, 0.0), (4.0, 0.0))),
        loss=LossConfig(kind="semi_supervised", unlabelled_weight=1.0, cross_entropy_weight=0.0),
        optim=OptimConfig(learning_rate=1e-3),
        data=DataConfig(dataset="moons", noise=0.25, val_size=850, num_labels=10, labelled_share=0.1),
        train=TrainConfig(epochs=100, batch_size=128, select="marginal_nll"),
        seed=0,
    )
    return ExperimentConfig(run=run, num_seeds=1, fresh_size=200_000, fresh_random_state=20_260_101)
