"""The command line of the experiments: ``--config``, ``--workdir`` and ``section.field=value`` overrides.

Every experiment under ``experiments/<name>/`` is a package with ``configs/<config>.py`` modules
(each with ``get_config()`` returning a frozen config dataclass) and a ``main.py`` of a few lines:

    def main(argv=None):
        invocation = flowclass.cli.parse(argv, description=__doc__, configs=f"{__package__}.configs")
        return train.train_and_evaluate(invocation.config, invocation.workdir, **invocation.options)

    python -m experiments.moons.main --config noise0p5 --workdir results/moons/noise0p5 train.epochs=50

Everything is validated before any training: the config name, each override (unknown fields,
wrong types, values out of range, all named), and that the workdir can be written. Compiled
programs are kept on disk between runs (:func:`flowclass.runtime.use_compilation_cache`, under
``~/.cache/flowclass/jax`` or ``$FLOWCLASS_CACHE/jax``), so that a second run of a config skips
most of XLA's compilation; ``--no-compile-cache`` turns that off.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

from flowclass.config import override
from flowclass.runtime import use_compilation_cache


class Invocation(NamedTuple):
    """What :func:`parse` read: the config (overrides applied), the workdir and the run options
    (``resume``, ``overwrite``, ``data_dir``, ``progress``, ``figures``) for ``train_and_evaluate``.

    Example: see :func:`parse`.

    >>> Invocation._fields
    ('config', 'config_name', 'workdir', 'options')
    """

    config: Any
    config_name: str
    workdir: Path
    options: dict


def load_config(configs: str, name: str) -> Any:
    r"""``get_config()`` of the module ``<configs>.<name>``, or of the file ``name`` when it ends in ``.py``.

    Raises:
      ValueError: no such config (the message lists the available ones).

    Example:
      >>> import pathlib, tempfile
      >>> path = pathlib.Path(tempfile.mkdtemp()) / "mine.py"
      >>> _ = path.write_text("from flowclass.config import RunConfig\n"
      ...                     "def get_config():\n    return RunConfig(seed=3)\n")
      >>> load_config("unused", str(path)).seed
      3
    """
    if name.endswith(".py"):
        path = Path(name)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None or not path.is_file():
            raise ValueError(f"--config {name}: no such file.")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(f"{configs}.{name}")
        except ModuleNotFoundError as error:
            package = importlib.import_module(configs)
            folder = Path(package.__file__ or ".").parent
            available = sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__")
            raise ValueError(f"--config {name!r}: no such config; available: {available}.") from error
    if not hasattr(module, "get_config"):
        raise ValueError(f"--config {name}: the module has no get_config().")
    return module.get_config()


def check_writable(workdir: Path) -> None:
    """Raises :class:`OSError` naming ``workdir`` unless it is (or can be made) a writable directory.

    Example:
      >>> check_writable(Path("/proc/flowclass"))
      Traceback (most recent call last):
      FileNotFoundError: [Errno 2] --workdir /proc/flowclass cannot be written: No such file or directory
    """
    if workdir.exists() and not workdir.is_dir():
        raise NotADirectoryError(f"--workdir {workdir} exists and is not a directory.")
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=workdir, prefix=".write-test-"):
            pass
    except OSError as error:
        raise OSError(error.errno, f"--workdir {workdir} cannot be written: {error.strerror or error}") from error


def parse(argv: list[str] | None, *, description: str | None, configs: str, default_config: str = "default",
          default_workdir: str | None = None) -> Invocation:
    r"""Parses an experiment's command line (see the module docstring); exits with a usage message
    naming the flag or field on any invalid input.

    Args:
      configs: the package holding the experiment's config modules.
      default_workdir: the workdir when ``--workdir`` is not given; ``{config}`` is replaced by the
        config name (default: ``results/<experiment>/<config>``).

    Example (a config file instead of an experiment's ``configs`` package):
      >>> import pathlib, tempfile
      >>> folder = pathlib.Path(tempfile.mkdtemp())
      >>> _ = (folder / "tiny.py").write_text("from flowclass.config import RunConfig\ndef get_config():\n"
      ...                                     "    return RunConfig()\n")
      >>> inv = parse(["--config", str(folder / "tiny.py"), "--workdir", str(folder / "run"), "--no-compile-cache",
      ...              "train.epochs=3"], description=None, configs="unused")
      >>> inv.config.train.epochs, inv.config_name, inv.options["resume"]
      (3, 'tiny', False)
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=default_config, help="a config name from configs/ or a .py file "
                        f"with get_config() (default: {default_config})")
    parser.add_argument("--workdir", type=Path, default=None, help="where the run's config, checkpoints, results "
                        "and figures go (default: results/<experiment>/<config>)")
    parser.add_argument("--resume", action="store_true", help="continue the run stored in the workdir")
    parser.add_argument("--overwrite", action="store_true", help="delete the run stored in the workdir first")
    parser.add_argument("--data-dir", default=None, help="where image datasets are found "
                        "(default: $FLOWCLASS_DATA_DIR, system locations)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--no-figures", action="store_true", help="write no figures")
    parser.add_argument("--no-compile-cache", action="store_true", help="do not keep compiled programs on disk "
                        "between runs (default: kept under $FLOWCLASS_CACHE/jax or ~/.cache/flowclass/jax, unless "
                        "$JAX_COMPILATION_CACHE_DIR says otherwise)")
    parser.add_argument("overrides", nargs="*", metavar="section.field=value",
                        help="config overrides, e.g. train.epochs=5 optim.learning_rate=3e-3")
    args = parser.parse_args(argv)
    if args.resume and args.overwrite:
        parser.error("--resume and --overwrite exclude each other")
    try:
        config = override(load_config(configs, args.config), args.overrides)
    except (ValueError, TypeError) as error:
        parser.error(str(error))
    name = Path(args.config).stem
    experiment = configs.split(".")[-2] if "." in configs else "experiment"
    workdir = args.workdir or Path((default_workdir or f"results/{experiment}/{{config}}").format(config=name))
    try:
        check_writable(workdir)
    except OSError as error:
        parser.error(str(error))
    if not args.no_compile_cache:
        use_compilation_cache()
    options = {"resume": args.resume, "overwrite": args.overwrite, "data_dir": args.data_dir,
               "progress": not args.quiet, "figures": not args.no_figures}
    return Invocation(config, name, workdir, options)
