"""Kills at random moments (SIGKILL: no cleanup runs) leave every listed checkpoint restorable, and
the run resumed after them ends where an uninterrupted run ends.

A tiny run saves a checkpoint after every epoch (a few milliseconds of training, then the save,
in which Orbax writes the new step and renames the oldest into ``.deleted`` before it is removed),
so most kills land inside saves and deletions; the child reports when it enters and leaves each
save, and the test checks that kills landed in both places.
"""

import collections
import multiprocessing
import pickle
import random
import signal
import time

import jax
import numpy as np
import pytest

import flowclass as fc
from flowclass import runs

pytestmark = pytest.mark.slow  # end-to-end: CI runs it; `-m 'not slow'` skips it

EPOCHS = 100
KILLS = 12
# The children are forked from a server that has imported JAX, Flax, Orbax and flowclass once
# (multiprocessing's forkserver, nothing initialised yet) instead of each starting Python and
# importing them again (1.6 s here): the test took 39 s instead of 54 s, run alone.
PRELOAD = ["jax", "numpy", "orbax.checkpoint", "flowclass", "flowclass.runs", "flowclass.checkpoint"]


def _child(workdir: str, report) -> None:
    """Trains the tiny run in ``workdir`` (resuming what is there), sending ``started`` first,
    ``saving N`` / ``saved N`` around each checkpoint save and ``done`` at the end through ``report``."""
    report.send("started")
    from flowclass.checkpoint import Checkpointer

    original = Checkpointer.save

    def reporting_save(self, step, items, metadata):
        report.send(f"saving {step}")
        original(self, step, items, metadata)
        report.send(f"saved {step}")

    Checkpointer.save = reporting_save
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    splits = runs.Splits((x[:128], y[:128]), (x[128:], y[128:]), (x[:8], y[:8]))
    config = fc.RunConfig(model=fc.ModelConfig(num_couplings=2, hidden=(8,), means=((-4.0, 0.0), (4.0, 0.0))),
                          data=fc.DataConfig(val_size=32), train=fc.TrainConfig(epochs=EPOCHS, batch_size=64,
                                                                                 checkpoint_every_s=0.0))
    run = runs.train(config, workdir, splits=splits, resume=True, progress=False)
    np.savez(workdir + "/final.npz", *[np.asarray(a) for a in jax.tree.leaves(run.result.last_state.params)])
    report.send("done")


def _start(workdir):
    """The child training in ``workdir`` and the receiving end of its reports."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(str(workdir), send), daemon=True)
    child.start()
    send.close()  # the child holds the only sending end: a dead child ends the pipe
    return child, receive


def _messages(receive, timeout: float):
    """The child's reports until ``timeout`` seconds pass (``0``: those already sent) or it is gone."""
    deadline = time.monotonic() + timeout
    while receive.poll(max(deadline - time.monotonic(), 0.0)):
        try:
            yield receive.recv()
        except (EOFError, OSError, pickle.UnpicklingError):  # gone, perhaps killed mid-message
            return


def _last(messages, default: str) -> str:
    tail = collections.deque(messages, maxlen=1)
    return tail[0] if tail else default


def _run_to_end(workdir):
    child, receive = _start(workdir)
    try:
        said = list(_messages(receive, 600))
        child.join(60)
    finally:
        child.kill()  # a no-op once it has ended; a hung child does not outlive the test
        child.join()
        receive.close()
    assert child.exitcode == 0 and said[-1:] == ["done"], (child.exitcode, said[-5:])
    with np.load(workdir / "final.npz") as saved:
        return [saved[k] for k in sorted(saved.files, key=lambda k: int(k.split("_")[1]))]


def _templates(config):
    state = runs.create_state(config, np.zeros((1, 2), np.float32), steps_per_epoch=2, key=jax.random.key(0))
    weights = {"params": state.params, "collections": state.collections}
    return {"state": {"step": state.step, "opt_state": state.opt_state, **weights}, "best": weights}


def _kill_during_run(workdir, rng):
    """Starts the child and kills it at a random moment once it trains (or, one time in five, at a
    random moment of its first 1.5 s: restoring, compiling, the first epochs); returns the last
    report it sent before the kill. A child that died on its own (a checkpoint it could not resume
    from) fails the test."""
    child, receive = _start(workdir)
    last = ""
    if rng.random() < 0.2:
        time.sleep(rng.uniform(0.0, 1.5))
    else:
        for last in _messages(receive, 600):  # wait until it trains (or it finishes)
            if last.startswith("saved") or last == "done":
                break
        last = _last(_messages(receive, rng.uniform(0.0, 0.4)), last)
    child.kill()  # SIGKILL
    child.join()
    last = _last(_messages(receive, 0.0), last)  # what it sent before it died
    receive.close()
    assert child.exitcode == -signal.SIGKILL or (child.exitcode == 0 and last == "done"), (child.exitcode, last)
    return last


def test_random_kills_leave_restorable_checkpoints_and_the_same_result(tmp_path):
    reference = _run_to_end(tmp_path / "uninterrupted")
    workdir = tmp_path / "killed"
    rng = random.Random(0)
    where, templates = [], None
    for _ in range(KILLS):
        where.append(_kill_during_run(workdir, rng))
        if not (workdir / "config.json").exists():
            continue  # killed before the run was stored
        if templates is None:  # the same config every time: build the restore templates once
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
