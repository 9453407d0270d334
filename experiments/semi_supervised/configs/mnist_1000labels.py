"""MNIST with 1,000 balanced labels, FlowGMM-cons: 5 label draws (seeds 0-4), 1,686 steps per model.

The fast image flow with class means N(0, I); FlowGMM's loss with the NLL in bits/dim (8-bit
data), β = 3 times the labelled examples' cross-entropy (FlowGMM's ``label_weight``) and a
consistency term of weight 1, off for the first epoch (843 steps: the labelled and marginal terms
train the classifier it copies) and then ramped up over 200 steps, with FixMatch's direction
(``consistency_target='input'``: the class of the trainer's copy is the target of a second copy,
the run's augmentation applied again); the labelled images repeated to half of the training rows, as
FlowGMM's batches are half labelled; Adam at peak 1e-3 with warm-up and cosine decay over 2
epochs of the semi-supervised set, gradients clipped at norm 10, batch 128; ±2-pixel shifts,
dequantised pixels in training, bin centres in evaluation; 5,000 held-out training images,
labels hidden, select the epoch by their marginal NLL. The experiment also trains the run
without the consistency term and the labelled-only baseline, each for the same optimiser steps
on a schedule of the same length (steps, not minutes, are fixed: a shared CPU cannot then change
the result; on a 2-core CPU a model takes 7-13 minutes). ``num_seeds=1`` runs one label draw.
"""

from flowclass.config import DataConfig, LossConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig

from ..train import ExperimentConfig


def get_config() -> ExperimentConfig:
    run = RunConfig(
        model=ModelConfig(kind="image_flow", preset="fast", input_shape=(28, 28, 1), num_classes=10),
        loss=LossConfig(kind="semi_supervised", unlabelled_weight=1.0, cross_entropy_weight=3.0,
                        nll_unit="bits_per_dim", num_bins=256, consistency_weight=1.0, consistency_start_step=843,
                        consistency_rampup_steps=200, consistency_target="input"),
        optim=OptimConfig(learning_rate=1e-3, schedule="warmup_cosine", clip_norm=10.0),
        data=DataConfig(dataset="mnist", val_size=5000, num_labels=1000, labelled_share=0.5, shift=2),
        train=TrainConfig(epochs=2, batch_size=128, eval_batch_size=500, select="marginal_nll"),
        seed=0,
    )
    return ExperimentConfig(run=run, num_seeds=5)
