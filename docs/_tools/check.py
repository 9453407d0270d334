"""Checks that keep the documentation honest; run by .ci/docs.sh.

    python docs/_tools/check.py notebooks            # tutorials are stored without outputs
    python docs/_tools/check.py notebooks --strip    # ... and this makes them so
    python docs/_tools/check.py api docs/_build/html/objects.inv

``api`` checks every public name of the library (see :data:`PUBLIC_MODULES`):

* it appears in the built API reference (the Sphinx inventory ``objects.inv``);
* it has a docstring, and every public function and class a ``>>>`` example
  (exceptions and constants excepted; doctest runs the examples);
* every public function, and every public method of a public class, annotates all of its
  parameters and its return type.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
import types
import zlib
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]

# Modules whose public names form the API: ``__all__`` where a module defines it, else every
# function and class defined in the module whose name does not start with an underscore.
PUBLIC_MODULES = (
    "flowclass",
    "flowclass.bijectors",
    "flowclass.data",
    "flowclass.data.pixels",
    "flowclass.attacks",
    "flowclass.manifold",
    "flowclass.metrics",
    "flowclass.calibration",
    "flowclass.robustness",
    "flowclass.generation",
    "flowclass.sharding",
    "flowclass.runtime",
    "flowclass.averaging",
    "flowclass.invariance",
    "flowclass.plotting",
    "flowclass.config",
    "flowclass.runs",
    "flowclass.cli",
    "flowclass.optim",
    "flowclass.sklearn",
)


# ----------------------------------------------------------------------------- notebooks


def check_notebooks(strip: bool) -> list[str]:
    problems = []
    for path in sorted(DOCS.rglob("*.ipynb")):
        if "_build" in path.parts or ".ipynb_checkpoints" in path.parts:
            continue
        notebook = json.loads(path.read_text())
        dirty = False
        for cell in notebook["cells"]:
            if cell["cell_type"] != "code":
                continue
            if cell.get("outputs") or cell.get("execution_count") is not None:
                dirty = True
                cell["outputs"], cell["execution_count"] = [], None
        if notebook.get("metadata", {}).get("widgets"):
            dirty = True
            del notebook["metadata"]["widgets"]
        if dirty and strip:
            path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
            print(f"stripped outputs from {path.relative_to(DOCS.parent)}")
        elif dirty:
            problems.append(
                f"{path.relative_to(DOCS.parent)} holds outputs; the build executes notebooks, so store them "
                "without: python docs/_tools/check.py notebooks --strip"
            )
    return problems


# ----------------------------------------------------------------------------------- api


def public_names() -> dict[str, list[str]]:
    """``{'module.name': [aliases]}`` for every public function, class and constant.

    An object exported under several names (``flowclass.Chain`` is ``flowclass.bijectors.Chain``)
    appears once, under its first name, with all of its names as aliases.
    """
    found: dict[str, list[str]] = {}
    first_name: dict[int, str] = {}
    objects: dict[str, object] = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        names = getattr(module, "__all__", None)
        if names is None:
            names = [
                name
                for name, obj in vars(module).items()
                if not name.startswith("_")
                and (inspect.isfunction(obj) or inspect.isclass(obj))
                and obj.__module__ == module_name
            ]
        for name in names:
            obj = getattr(module, name)
            if isinstance(obj, types.ModuleType) or name == "__version__":
                continue
            full_name = f"{module_name}.{name}"
            if id(obj) in first_name:
                found[first_name[id(obj)]].append(full_name)
                continue
            first_name[id(obj)] = full_name
            found[full_name] = [full_name]
            objects[full_name] = obj
    PUBLIC_OBJECTS.update(objects)
    return found


PUBLIC_OBJECTS: dict[str, object] = {}


def read_inventory(path: Path) -> set[str]:
    """The names of the Python objects in a Sphinx ``objects.inv`` (version 2)."""
    raw = path.read_bytes()
    header_end = 0
    for _ in range(4):  # four plain-text header lines, then a zlib stream
        header_end = raw.index(b"\n", header_end) + 1
    names = set()
    for line in zlib.decompress(raw[header_end:]).decode().splitlines():
        name, role = line.split(" ", 2)[:2]
        if role.startswith("py:"):
            names.add(name)
    return names


def _function(obj: object) -> object | None:
    """The plain function behind ``obj`` (following ``jax.jit`` and similar wrappers), if any."""
    while hasattr(obj, "__wrapped__"):
        obj = obj.__wrapped__
    return obj if inspect.isfunction(obj) else None


def _missing_annotations(func, *, is_method: bool) -> list[str]:
    signature = inspect.signature(func)
    missing = []
    for i, (name, parameter) in enumerate(signature.parameters.items()):
        if is_method and i == 0:
            continue  # self / cls
        if parameter.annotation is inspect.Parameter.empty:
            missing.append(name)
    if signature.return_annotation is inspect.Signature.empty and func.__name__ != "__init__":
        missing.append("return")
    return missing


FLAX_PROTOCOL = ("setup",)  # called by Flax, not by users


def _own_methods(cls: type) -> dict[str, object]:
    """Public methods and properties written in ``cls`` itself (not generated, not inherited)."""
    methods = {}
    for name, attribute in vars(cls).items():
        if (name.startswith("_") and name not in ("__call__", "__init__")) or name in FLAX_PROTOCOL:
            continue
        target = attribute.fget if isinstance(attribute, property) else _function(attribute)
        if target is None or not inspect.isfunction(target):
            continue
        if target.__module__ != cls.__module__ or not target.__code__.co_filename.endswith(".py"):
            continue  # generated (dataclass __init__, flax.struct's replace) or inherited
        methods[name] = target
    return methods


def check_api(inventory: Path) -> list[str]:
    documented = read_inventory(inventory)
    problems = []
    for full_name, aliases in public_names().items():
        obj = PUBLIC_OBJECTS[full_name]
        if not documented.intersection(aliases):
            problems.append(f"{full_name}: not in the API reference; add it to a page under docs/api/")
        is_class = inspect.isclass(obj)
        func = None if is_class else _function(obj)
        if not is_class and func is None:
            continue  # a constant: documented by the comment or string after its assignment
        doc = inspect.getdoc(obj) or ""
        if not doc.strip():
            problems.append(f"{full_name}: no docstring")
        elif ">>>" not in doc and not (is_class and issubclass(obj, BaseException)):
            problems.append(f"{full_name}: its docstring has no example (a '>>>' block that doctest runs)")
        if func is not None:
            missing = _missing_annotations(func, is_method=False)
            if missing:
                problems.append(f"{full_name}: no type annotation for {', '.join(missing)}")
        if is_class:
            for method_name, method in _own_methods(obj).items():
                is_method = not isinstance(vars(obj).get(method_name), staticmethod)
                missing = _missing_annotations(method, is_method=is_method)
                if missing:
                    problems.append(f"{full_name}.{method_name}: no type annotation for {', '.join(missing)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    notebooks = commands.add_parser("notebooks", help="tutorial notebooks are stored without outputs")
    notebooks.add_argument("--strip", action="store_true", help="remove outputs instead of complaining")
    api = commands.add_parser("api", help="every public name is documented, annotated and has an example")
    api.add_argument("inventory", type=Path, help="objects.inv of the built HTML docs")
    args = parser.parse_args(argv)
    if args.command == "notebooks":
        problems = check_notebooks(args.strip)
    else:
        problems = check_api(args.inventory)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    if problems:
        print(f"{args.command}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{args.command}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
