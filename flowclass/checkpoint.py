"""Atomic, resumable checkpoints with Orbax.

Each save writes a new step directory through Orbax, which writes to a temporary
directory and renames it when complete, so a crash never leaves a half-written
checkpoint behind as the latest one. The newest ``max_to_keep`` are kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp


class Checkpointer:
    """Saves and restores ``(arrays, metadata)`` pairs under ``directory``.

    ``arrays`` is any pytree of arrays (a train state); ``metadata`` a JSON-able dict.

    Example:
      >>> import jax.numpy as jnp, tempfile
      >>> ckpt = Checkpointer(tempfile.mkdtemp())
      >>> ckpt.save(1, {"w": jnp.ones(2)}, {"epoch": 1})
      >>> arrays, meta = ckpt.restore({"w": jnp.zeros(2)})
      >>> meta["epoch"], arrays["w"].tolist()
      (1, [1.0, 1.0])
    """

    def __init__(self, directory: str | Path, *, max_to_keep: int = 2):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    @property
    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, arrays: Any, metadata: dict) -> None:
        """Writes checkpoint ``step``; refuses to overwrite an existing one (Orbax would skip it silently)."""
        if step in self._manager.all_steps():
            raise ValueError(f"checkpoint step {step} already exists in {self.directory}; use a new step.")
        self._manager.save(
            step,
            args=ocp.args.Composite(arrays=ocp.args.StandardSave(arrays), metadata=ocp.args.JsonSave(metadata)),
        )
        self._manager.wait_until_finished()

    def restore(self, template: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restores the newest (or ``step``) checkpoint into arrays shaped like ``template``."""
        step = self.latest_step if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint to restore in {self.directory}.")
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(arrays=ocp.args.StandardRestore(template), metadata=ocp.args.JsonRestore()),
        )
        return restored["arrays"], restored["metadata"]

    def close(self) -> None:
        self._manager.close()
