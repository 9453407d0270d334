"""Kills at random moments (SIGKILL: no cleanup runs) leave every listed checkpoint restorable, and
the run resumed after them ends where an uninterrupted run ends.

A tiny run saves a checkpoint after every epoch (a few milliseconds of training, then the save,
in which Orbax writes the new step and renames the oldest into ``.deleted`` before it is removed),
so most kills land inside saves and deletions; the child reports when it enters and leaves each
save, and the test checks that kills landed in both places.
"""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

import flowclass as fc
from flowclass import runs

pytestmark = pytest.mark.slow  # end-to-end: CI runs it; `-m 'not slow'` skips it

EPOCHS = 100
KILLS = 12  # each kill starts a fresh child process: with 20 the test took 89 s of the suite
CHILD = textwrap.dedent(f"""
    import sys
    import jax
    import numpy as np
    import flowclass as fc
    from flowclass import runs
    from flowclass.checkpoint import Checkpointer

    original = Checkpointer.save

    def reporting_save(self, step, items, metadata):
        print(f"saving {{step}}", flush=True)
        original(self, step, items, metadata)
        print(f"saved {{step}}", flush=True)

    Checkpointer.save = reporting_save
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    splits = runs.Splits((x[:128], y[:128]), (x[128:], y[128:]), (x[:8], y[:8]))
    config = fc.RunConfig(model=fc.ModelConfig(num_couplings=2, hidden=(8,), means=((-4.0, 0.0), (4.0, 0.0))),
                          data=fc.DataConfig(val_size=32), train=fc.TrainConfig(epochs={EPOCHS}, batch_size=64,
                                                             checkpoint_every_s=0.0))
    run = runs.train(config, sys.argv[1], splits=splits, resume=True, progress=False)
    np.savez(sys.argv[1] + "/final.npz", *[np.asarray(a) for a in jax.tree.leaves(run.result.last_state.params)])
    print("done", flush=True)
""")


def _start(workdir):
    return subprocess.Popen([sys.executable, "-c", CHILD, str(workdir)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, bufsize=1)


def _run_to_end(workdir):
    child = _start(workdir)
    out, _ = child.communicate(timeout=600)
    assert child.returncode == 0 and "done" in out, out[-2000:]
    with np.load(workdir / "final.npz") as saved:
        return [saved[k] for k in sorted(saved.files, key=lambda k: int(k.split("_")[1]))]


def _templates(config):
    state = runs.create_state(config, np.zeros((1, 2), np.float32), steps_per_epoch=2, key=jax.random.key(0))
    weights = {"params": state.params, "collections": state.collections}
    return {"state": {"step": state.step, "opt_state": state.opt_state, **weights}, "best": weights}


def _kill_during_run(workdir, rng):
    """Starts the child and kills it at a random moment once it trains (or, one time in five, at a
    random moment of its start); returns the last line it printed before the kill."""
    child = _start(workdir)
    last = ""
    if rng.random() < 0.2:
        time.sleep(rng.uniform(0.0, 4.0))
    else:
        for line in child.stdout:  # wait until it trains (or it finishes)
            last = line.strip()
            if last.startswith("saved") or last == "done":
                break
        deadline = time.monotonic() + rng.uniform(0.0, 0.4)
        os.set_blocking(child.stdout.fileno(), False)
        while time.monotonic() < deadline:
            line = child.stdout.readline()
            last = line.strip() or last
    child.send_signal(signal.SIGKILL)
    child.wait()
    if child.stdout is not None:
        try:
            for line in child.stdout:
                last = line.strip() or last
        except (OSError, TypeError):
            pass
    return last


def test_random_kills_leave_restorable_checkpoints_and_the_same_result(tmp_path):
    reference = _run_to_end(tmp_path / "uninterrupted")
    workdir = tmp_path / "killed"
    rng = random.Random(0)
    where = []
    for _ in range(KILLS):
        where.append(_kill_during_run(workdir, rng))
        if not (workdir / "config.json").exists():
            continue  # killed before the run was stored
        templates = _templates(runs.read_config(workdir))
        with fc.Checkpointer(workdir / "checkpoints", create=False) as checkpointer:
            for step in checkpointer.steps:  # every listed step restores completely
                items, meta = checkpointer.restore(templates, step=step)
                assert meta["epoch"] == step and int(items["state"]["step"]) == 2 * step
                assert len(meta["history"]) == step
        assert not any(p.name.startswith(".write-test") for p in workdir.rglob("*"))
    assert sum(line.startswith("saving") for line in where) >= 5, where  # inside saves (writes and deletions)
    resumed = _run_to_end(workdir)
    assert len(resumed) == len(reference)
    for a, b in zip(resumed, reference, strict=True):
        np.testing.assert_array_equal(a, b)
