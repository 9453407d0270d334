"""Two moons: the slides' flow classifier vs their 3-layer FNN, both against the exact Bayes limit.

    python -m experiments.moons.main --config noise0p5 --workdir results/moons/noise0p5
    python experiments/moons.py --noise 0.5          # the original command, a thin entry over this package

The flow (5 affine couplings, latent means (±4, 0)) and the FNN train on the slides' two moons
(8,500 points, 850 of them held out for selection) and are scored on the slides' 1,500 test
points and on 200,000 fresh points, next to the Bayes-optimal classifier of the true densities
(:func:`flowclass.data.bayes_labels`). Configs: ``configs/``; results: ``README.md``.
"""
