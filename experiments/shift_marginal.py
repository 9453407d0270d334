"""Scores finished MNIST flow runs with the class likelihood marginalised over small shifts.

    python experiments/shift_marginal.py RUN_DIR [RUN_DIR ...] --data-dir DIR

The flows are trained on images translated by up to ±2 pixels. Treating the translation ``s``
as a latent variable of the generative model gives the class likelihood

    log p(x | k) = log (1/|S|) Σ_{s ∈ S} p_θ(shift_s(x) | k)

(a translation of a digit with empty borders only permutes pixels: unit Jacobian), and Bayes'
rule over it. This scores the plain rule and three shift sets ``S`` on the run's validation
split and on the test set; writes ``RUN_DIR/shift_marginal.json``. Choose a rule on the validation
accuracy only, and mind that the run's epoch was selected on the plain rule's validation accuracy,
which favours the plain rule on that split; ``experiments/mnist.py --shift-marginal`` selects the
epoch and the rule together instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from mnist import load_run, load_splits, read_run  # noqa: E402  (the sibling experiment script)

SHIFT_SETS: dict[str, tuple[tuple[int, int], ...]] = {
    "none": ((0, 0),),
    "cross1": ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)),
    "grid3": tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)),
    "grid5": tuple((dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)),
}


def marginal_accuracies(per_shift: dict, y: np.ndarray) -> dict[str, float]:
    """Accuracy of the shift-marginal rule for every shift set ``S`` (``per_shift[s]``: logits of shift ``s``)."""
    from flowclass.invariance import marginalise_shifts

    return {name: float(np.mean(marginalise_shifts(np.stack([per_shift[s] for s in shifts])).argmax(-1) == y))
            for name, shifts in SHIFT_SETS.items()}


def score_run(run_dir: Path, data_dir: str | None, batch_size: int = 500) -> dict:
    """``{'val': {set: accuracy}, 'test': {...}}`` for a finished ``experiments/mnist.py`` flow run."""
    from flowclass.invariance import shift_logits

    args, _ = read_run(run_dir)
    if args.model != "flow":
        raise ValueError(f"{run_dir} is a {args.model} run; the shift-marginal rule needs a flow's likelihoods.")
    args.data_dir = data_dir
    (x_train, _), (x_val, y_val), (x_test, y_test) = load_splits(args, bin_centred=True)
    model, variables, _ = load_run(run_dir, x_train[:512])
    all_shifts = sorted({s for shifts in SHIFT_SETS.values() for s in shifts})
    scores = {}
    for split, x, y in (("val", x_val, y_val), ("test", x_test, y_test)):
        logits = shift_logits(model.apply, variables, x, all_shifts, batch_size=batch_size)
        scores[split] = marginal_accuracies(dict(zip(all_shifts, logits, strict=True)), y)
    return scores


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="output directories of experiments/mnist.py flow runs")
    p.add_argument("--data-dir", default=None, help="as for experiments/mnist.py")
    p.add_argument("--host-devices", type=int, default=2)
    args = p.parse_args(argv)
    from flowclass.runtime import use_fast_codegen, use_host_devices

    use_host_devices(args.host_devices)
    use_fast_codegen()  # XLA CPU flags measured in benchmarks/
    results = {}
    for run in args.runs:
        results[str(run)] = scores = score_run(run, args.data_dir)
        (run / "shift_marginal.json").write_text(json.dumps(scores, indent=2) + "\n")
        for split, accuracy in scores.items():
            print(f"{run} {split}: " + ", ".join(f"{name} {100 * a:.2f} %" for name, a in accuracy.items()))
    return results


if __name__ == "__main__":
    from flowclass.runtime import restart_with_tcmalloc

    restart_with_tcmalloc()
    main()
