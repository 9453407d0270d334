"""Atomic, resumable checkpoints with Orbax.

A checkpoint is a numbered step holding named pytrees of arrays (``items``) and a JSON
``metadata`` dict. What keeps every listed step restorable, whenever the process is killed:

* **writes** go through Orbax, which writes a step into a temporary directory and renames it
  when complete; half-written temporaries are not listed, and are removed on the next open;
* **removals** of old steps (the newest ``max_to_keep`` are kept) are renames first: Orbax moves
  the step into the ``.deleted`` subdirectory (one atomic rename; a step is listed or gone), and
  only then is that subdirectory emptied, here and on the next open;
* a step that already exists is never overwritten.

Problems with the directory (not a directory, not writable, no space) are reported before any
training by :meth:`Checkpointer.check_writable`, and a failed save raises one :class:`OSError`
naming the last complete checkpoint.
"""

from __future__ import annotations

import errno
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

TRASH = ".deleted"


class Checkpointer:
    """Saves and restores ``(items, metadata)`` under ``directory``.

    Args:
      directory: where the numbered steps live.
      max_to_keep: the newest this many steps are kept (``None``: all).
      create: create ``directory`` if it is missing; with ``False`` a missing directory raises
        :class:`FileNotFoundError` (restoring never creates a mistyped path).

    Raises:
      NotADirectoryError: ``directory`` (or a parent) exists and is not a directory.
      FileNotFoundError: ``directory`` is missing and ``create`` is false.

    Example:
      >>> import jax.numpy as jnp, tempfile
      >>> ckpt = Checkpointer(tempfile.mkdtemp())
      >>> ckpt.save(1, {"weights": {"w": jnp.ones(2)}}, {"epoch": 1})
      >>> items, meta = ckpt.restore({"weights": {"w": jnp.zeros(2)}})
      >>> meta["epoch"], items["weights"]["w"].tolist()
      (1, [1.0, 1.0])
    """

    def __init__(self, directory: str | Path, *, max_to_keep: int | None = 2, create: bool = True):
        self.directory = Path(directory).absolute()
        for parent in (self.directory, *self.directory.parents):
            if parent.exists():
                if not parent.is_dir():
                    raise NotADirectoryError(f"checkpoint directory {self.directory}: {parent} is not a directory.")
                break
        if not create and not self.directory.is_dir():
            raise FileNotFoundError(f"no checkpoint directory {self.directory}.")
        if self.directory.is_dir():
            _empty_trash(self.directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            enable_async_checkpointing=False,
            create=create,
            todelete_subdir=TRASH,
            cleanup_tmp_directories=create,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    @property
    def latest_step(self) -> int | None:
        """The newest complete step, or ``None``."""
        return self._manager.latest_step()

    @property
    def steps(self) -> list[int]:
        """Every complete step, oldest first."""
        return sorted(self._manager.all_steps())

    def check_writable(self, needed_bytes: int = 0) -> None:
        """Raises :class:`OSError` now if a save could not be written: the directory is not
        writable, or its file system has less than ``needed_bytes`` free.

        Example:
          >>> import tempfile
          >>> Checkpointer(tempfile.mkdtemp()).check_writable(needed_bytes=1024)
        """
        try:
            with tempfile.NamedTemporaryFile(dir=self.directory, prefix=".write-test-"):
                pass
        except OSError as error:
            raise OSError(error.errno, f"checkpoint directory {self.directory} is not writable: {error}") from error
        free = shutil.disk_usage(self.directory).free
        if free < needed_bytes:
            raise OSError(errno.ENOSPC, f"checkpoint directory {self.directory} has {free / 2**20:.1f} MiB free; "
                                        f"a checkpoint needs about {needed_bytes / 2**20:.1f} MiB.")

    def save(self, step: int, items: dict[str, Any], metadata: dict) -> None:
        """Writes checkpoint ``step``: each pytree of ``items`` and the JSON ``metadata``.

        Raises:
          ValueError: ``step`` already exists (Orbax would skip it silently).
          OSError: the write failed; the message names the last complete checkpoint.
        """
        if step in self._manager.all_steps():
            raise ValueError(f"checkpoint step {step} already exists in {self.directory}; use a new step.")
        args = {name: ocp.args.StandardSave(tree) for name, tree in items.items()}
        try:
            self._manager.save(step, args=ocp.args.Composite(metadata=ocp.args.JsonSave(metadata), **args))
            self._manager.wait_until_finished()
        except OSError as error:
            last = self.latest_step
            where = f"step {last} in {self.directory}" if last is not None else f"none in {self.directory}"
            raise OSError(error.errno, f"could not write checkpoint step {step}: {error}. "
                                       f"The last complete checkpoint is {where}.") from error
        _empty_trash(self.directory)

    def restore(self, templates: dict[str, Any], step: int | None = None) -> tuple[dict[str, Any], dict]:
        """Restores the named ``items`` of the newest (or ``step``) checkpoint, shaped like
        ``templates`` (arrays or ``jax.ShapeDtypeStruct``), and its metadata. Items not named
        are not read.

        Raises:
          FileNotFoundError: there is no checkpoint.
          ValueError: the stored arrays do not fit ``templates`` (another model or optimiser).
        """
        step = self.latest_step if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint to restore in {self.directory}.")
        difference = self._first_difference(step, templates)
        if difference is not None:
            raise ValueError(
                f"checkpoint step {step} in {self.directory} was written by another model or optimiser: "
                f"{difference}. Restore it with the model and optimiser that wrote it, or train this one in "
                "another directory."
            )
        args = {name: ocp.args.StandardRestore(tree) for name, tree in templates.items()}
        restored = self._manager.restore(step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore(), **args))
        return {name: restored[name] for name in templates}, restored["metadata"]

    def _first_difference(self, step: int, templates: dict[str, Any]) -> str | None:
        """The first array whose path or shape differs between step ``step`` and ``templates``."""
        for name, template in templates.items():
            item_dir = self.directory / str(step) / name
            if not item_dir.is_dir():
                return f"it holds no item {name!r}"
            stored = _shapes(ocp.StandardCheckpointHandler().metadata(item_dir).tree)
            wanted = _shapes(template)
            for path in sorted(set(stored) | set(wanted)):
                if path not in stored:
                    return f"{name}/{path} (shape {wanted[path]}) is not in the checkpoint"
                if path not in wanted:
                    return f"the checkpoint holds {name}/{path} (shape {stored[path]}), which this state does not have"
                if stored[path] != wanted[path]:
                    return f"{name}/{path} has shape {stored[path]} in the checkpoint and {wanted[path]} here"
        return None

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _shapes(tree: Any) -> dict[str, tuple]:
    """``{'a/b/0': shape}`` for every array leaf of ``tree``."""
    def name(key) -> str:
        for attribute in ("key", "name", "idx"):
            if hasattr(key, attribute):
                return str(getattr(key, attribute))
        return str(key)

    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(name(k) for k in path): tuple(getattr(leaf, "shape", ())) for path, leaf in leaves}


def _empty_trash(directory: Path) -> None:
    """Removes steps already renamed into the trash (their removal may have been interrupted)."""
    trash = directory / TRASH
    if trash.is_dir():
        shutil.rmtree(trash, ignore_errors=True)  # what cannot be removed is never listed as a step
