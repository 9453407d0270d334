"""Trust on images, flow vs CNN: adversarial robustness, likelihood detection, calibration and
out-of-distribution detection of finished MNIST / Fashion-MNIST runs.

    python -m experiments.mnist.main --config epochs12 --data-dir DIR      # first, the runs (and cnn, ...)
    python -m experiments.robustness.main --config epochs12_cnn --workdir results/robustness/epochs12_cnn \\
        --data-dir DIR

The runs are named by their workdirs in the config (``runs``) and reloaded with
:func:`flowclass.load_run`; nothing is trained. Configs: ``configs/``; results: ``README.md``.
"""
