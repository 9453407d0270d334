"""Attacks on two moons, measured against the true data density: does an attack through a flow's
latent space stay on the data manifold, as the slides claim?

    python -m experiments.moons_attack.main --config default --workdir results/moons_attack/default
    python -m experiments.moons_attack.main --config quick --workdir results/moons_attack/quick   # seconds

Three runs on the slides' moons (noise 0.1): the FNN, the flow classifier and an unconditional
flow; then the confidence attack on the FNN, the class-likelihood attack on the flow, the latent
attack through the unconditional flow (and the confidence attack on the flow), from a grid, the
test points and the slides' four start points, with on-manifold statistics from the true density
(:mod:`flowclass.manifold`) and Bayes-optimal labels (:func:`flowclass.data.bayes_labels`).
Configs: ``configs/``; results: ``README.md``.
"""
