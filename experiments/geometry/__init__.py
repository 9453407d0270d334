"""Where to put the class means: a flow classifier's accuracy and likelihood vs its latent geometry.

    python -m experiments.geometry.main --config default --workdir results/geometry/default

On the slides' two moons and flow (as experiments/moons/), the two class Gaussians sit at
``±(d/2) u`` for each distance ``d`` and direction ``u`` (along x, along y, diagonal) of the
config; each placement and seed is one run, scored by its accuracy on 200,000 fresh points and its
test NLL ``−log p(x | y)`` and ``−log p(x)``. Configs: ``configs/``; results: ``README.md``.
"""
