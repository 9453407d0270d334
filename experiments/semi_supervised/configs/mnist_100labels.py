"""MNIST with 100 balanced labels, one seed, 15 minutes per model.

The fast image flow with class means N(0, I); FlowGMM's loss with the NLL in bits/dim (8-bit data)
and β = 3 times the labelled examples' cross-entropy; Adam at peak 1e-3 with warm-up and cosine
decay over 15 epochs of the semi-supervised set, gradients clipped at norm 10, batch 128; ±2-pixel
shifts, dequantised pixels in training, bin centres in evaluation; the labelled images repeated to
10 % of the training rows; 5,000 held-out training images, labels hidden, select the epoch by the
marginal NLL.

Formerly ``python experiments/semi_supervised.py --dataset mnist --labels 100 --epochs 15
--time-budget 15 --data-dir DIR``.
"""

from flowclass.config import DataConfig, LossConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig

from ..train import ExperimentConfig


def get_config() -> ExperimentConfig:
    run = RunConfig(
        model=ModelConfig(kind="image_flow", preset="fast", input_shape=(28, 28, 1), num_classes=10),
        loss=LossConfig(kind="semi_supervised", unlabelled_weight=1.0, cross_entropy_weight=3.0,
                        nll_unit="bits_per_dim", num_bins=256),
        optim=OptimConfig(learning_rate=1e-3, schedule="warmup_cosine", clip_norm=10.0),
        data=DataConfig(dataset="mnist", val_size=5000, num_labels=100, labelled_share=0.1, shift=2),
        train=TrainConfig(epochs=15, batch_size=128, eval_batch_size=500, time_budget_s=15 * 60.0,
                          select="marginal_nll"),
        seed=0,
    )
    return ExperimentConfig(run=run, num_seeds=1)
