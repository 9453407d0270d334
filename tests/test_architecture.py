"""Architecture rules of DESIGN.md, checked on the source with ``ast`` (nothing is imported or run).

1. **No module imports another module's private names.** In ``flowclass/``, ``benchmarks/``
   and ``experiments/`` (tests may probe internals), neither ``from a.b import _x`` nor ``a._x`` attribute access on an
   imported module ``a`` (other than the module itself) may reach a ``_private`` name of
   another first-party module. Importing a private *module* (``flowclass._validation``) and
   its public names is allowed: shared helpers live there under public names. Dunder names
   (``__version__``) and the ``namedtuple`` API (``_replace``, ``_asdict``, ...) are not
   private. The rule covers our own modules (``flowclass``, ``benchmarks``, ``experiments``
   and scripts' sibling modules); reaching into a third-party library's private names (the
   safe MNIST unpickler must return NumPy's own ``_reconstruct``) is a compatibility
   matter, not a layering one.
2. **Imports point downwards** through the layers of :data:`LAYERS` (same layer allowed, no
   cycles): data and shared helpers at the bottom; bijectors, distributions and nets; the
   classifier; the ready-made flows; training, attacks, metrics and plotting; runs at the
   top. Nothing in ``flowclass/`` imports ``experiments``, ``benchmarks`` or ``tests``, and
   ``flowclass.data`` imports no model module.

A new module must be placed in :data:`LAYERS`; the failure message says so.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Iterator, NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = ("flowclass", "benchmarks", "experiments", "tests")
PRIVATE_RULE_DIRS = ("flowclass", "benchmarks", "experiments")
NAMEDTUPLE_API = frozenset({"_replace", "_asdict", "_fields", "_field_defaults", "_make"})

# The layers of flowclass, bottom first (DESIGN.md, "Layers of the house"): a module may import
# modules of its own layer or of a lower one. A module is placed by its longest listed prefix
# (a package covers its submodules); "flowclass" itself means the package's __init__ only.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("data and shared helpers (no model)", (
        "flowclass.data", "flowclass._validation", "flowclass.runtime", "flowclass.sharding", "flowclass.config",
    )),
    ("bijectors, distributions, nets", ("flowclass.bijectors", "flowclass.distributions", "flowclass.nets")),
    ("classifier", ("flowclass.classifier",)),
    ("flows (ready-made models)", ("flowclass.flows",)),
    ("training, attacks, metrics, plotting", (
        "flowclass.training", "flowclass.losses", "flowclass.optim", "flowclass.averaging", "flowclass.checkpoint",
        "flowclass.attacks", "flowclass.robustness", "flowclass.manifold",
        "flowclass.metrics", "flowclass.calibration", "flowclass.plotting",
        "flowclass.generation", "flowclass.invariance",
    )),
    ("runs and the command line", ("flowclass.runs", "flowclass.cli", "flowclass.sklearn")),
    ("the package's public namespace", ("flowclass",)),
)


# ---------------------------------------------------------------------------------------
# Reading the source.
# ---------------------------------------------------------------------------------------


class Source(NamedTuple):
    path: Path  # absolute
    module: str  # dotted name, e.g. flowclass.attacks (a package's __init__ is the package)
    tree: ast.Module
    root: Path  # the repository root the names are relative to

    @property
    def where(self) -> str:
        return self.path.relative_to(self.root).as_posix()


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.lru_cache(maxsize=None)
def _is_module(name: str, root: Path = ROOT) -> bool:
    base = root.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or base.is_dir()


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def sources(*dirs: str, root: Path = ROOT) -> list[Source]:
    found = []
    for d in dirs:
        for path in sorted((root / d).rglob("*.py")):
            if any(part.startswith(".") or part == "__pycache__" for part in path.relative_to(root).parts):
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            found.append(Source(path, module_name(path, root), tree, root))
    return found


def _package_of(source: Source, root: Path) -> str:
    return source.module if source.path.name == "__init__.py" else source.module.rpartition(".")[0]


def resolve(name: str, source: Source, root: Path = ROOT) -> str | None:
    """The first-party module ``name`` means in ``source``, or ``None`` for a third-party module.

    Scripts import their sibling modules by bare name (``import measure_jax`` in
    ``benchmarks/``): such a name resolves to the sibling.
    """
    if name.split(".")[0] in FIRST_PARTY:
        return name
    folder = source.path.parent
    head = name.split(".")[0]
    if (folder / f"{head}.py").is_file() or (folder / head / "__init__.py").is_file():
        package = module_name(folder / "__init__.py", root) if folder != root else ""
        return f"{package}.{name}" if package else name
    return None


def _resolve_from(node: ast.ImportFrom, source: Source, root: Path) -> str | None:
    if node.level == 0:
        return resolve(node.module or "", source, root)
    package = _package_of(source, root).split(".")
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_modules(source: Source, root: Path = ROOT) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every first-party module ``source`` imports, at any depth of the file.

    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module, else ``pkg``.
    """
    for node in ast.walk(source.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = resolve(alias.name, source, root)
                if target:
                    yield node.lineno, target
        elif isinstance(node, ast.ImportFrom):
            target = _resolve_from(node, source, root)
            if not target:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield node.lineno, sub if _is_module(sub, root) else target


# ---------------------------------------------------------------------------------------
# Rule 1: no private names of other modules.
# ---------------------------------------------------------------------------------------


def _dotted(node: ast.expr) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; ``None`` if the chain does not start at a plain name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id] + parts[::-1]


def private_imports(source: Source, root: Path = ROOT) -> list[str]:
    """Every place where ``source`` reaches a ``_private`` name of another first-party module."""
    found = []
    bound: dict[str, str] = {}  # local name -> first-party module it refers to
    for node in ast.walk(source.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = resolve(alias.name, source, root)
                if not target:
                    continue
                if alias.asname:
                    bound[alias.asname] = target
                else:  # `import a.b.c` binds `a`
                    depth = alias.name.count(".")
                    bound[alias.name.split(".")[0]] = target.rsplit(".", depth)[0] if depth else target
        elif isinstance(node, ast.ImportFrom):
            target = _resolve_from(node, source, root)
            if not target:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if _is_module(sub, root):
                    bound[alias.asname or alias.name] = sub  # a (possibly private) module: allowed
                elif _is_private(alias.name) and target != source.module:
                    found.append(f"{source.where}:{node.lineno}: from {target} import {alias.name}")
    seen = set()
    for node in ast.walk(source.tree):
        if not isinstance(node, ast.Attribute):
            continue
        chain = _dotted(node)
        if not chain or chain[0] not in bound:
            continue
        module, inside_module = bound[chain[0]], True
        for depth, attr in enumerate(chain[1:], start=1):
            if inside_module and _is_module(f"{module}.{attr}", root):
                module = f"{module}.{attr}"
                continue
            inside_module = False
            if _is_private(attr) and attr not in NAMEDTUPLE_API and module != source.module:
                text = ".".join(chain[: depth + 1])
                if (node.lineno, text) not in seen:
                    seen.add((node.lineno, text))
                    found.append(f"{source.where}:{node.lineno}: {text} (a private name of {module})")
                break
    return found


def test_no_module_imports_another_modules_private_names():
    offenders = [line for source in sources(*PRIVATE_RULE_DIRS) for line in private_imports(source)]
    assert not offenders, (
        "These modules use another module's _private names. Give the helper a public name in the module it "
        "belongs to (shared input checks: flowclass/_validation.py) and import that instead:\n  "
        + "\n  ".join(offenders)
    )


# ---------------------------------------------------------------------------------------
# Rule 2: imports point downwards.
# ---------------------------------------------------------------------------------------


def layer_of(module: str) -> int | None:
    best, best_length = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            covers = module == prefix or ("." in prefix and module.startswith(prefix + "."))
            if covers and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    return best


@functools.lru_cache(maxsize=None)
def _library() -> tuple[Source, ...]:
    return tuple(sources("flowclass"))


def test_every_library_module_has_a_layer():
    missing = sorted(s.module for s in _library() if layer_of(s.module) is None)
    assert not missing, (
        "Modules not in the layer map: place each in LAYERS in tests/test_architecture.py, at the layer of "
        "what it is (see DESIGN.md, 'Layers of the house'):\n  " + "\n  ".join(missing)
    )


def test_library_imports_point_downwards():
    offenders = []
    for source in _library():
        own = layer_of(source.module)
        if own is None:
            continue  # reported by test_every_library_module_has_a_layer
        for line, target in imported_modules(source):
            if not target.startswith("flowclass"):
                continue
            theirs = layer_of(target)
            if theirs is not None and theirs > own:
                offenders.append(f"{source.where}:{line}: {source.module} ({LAYERS[own][0]}) imports {target} "
                                 f"({LAYERS[theirs][0]})")
    assert not offenders, (
        "Imports must point down the layers of DESIGN.md (data and helpers < bijectors/distributions/nets < "
        "classifier < flows < training/attacks/metrics/plotting < runs); these point upwards:\n  "
        + "\n  ".join(offenders)
    )


def test_library_imports_no_programs():
    offenders = [
        f"{source.where}:{line}: imports {target}"
        for source in _library()
        for line, target in imported_modules(source)
        if not target.startswith("flowclass")
    ]
    assert not offenders, (
        "flowclass must not import experiments, benchmarks or tests (programs sit on top of the library; "
        "move shared code into flowclass):\n  " + "\n  ".join(offenders)
    )


def test_data_imports_no_model_module():
    offenders = [
        f"{source.where}:{line}: imports {target}"
        for source in _library()
        if source.module.startswith("flowclass.data")
        for line, target in imported_modules(source)
        if layer_of(target) != 0
    ]
    assert not offenders, (
        "flowclass.data must stay free of models (NumPy arrays out; only data and shared helpers):\n  "
        + "\n  ".join(offenders)
    )


def test_library_has_no_import_cycles():
    graph: dict[str, set[str]] = {s.module: set() for s in _library()}
    for source in _library():
        for _, target in imported_modules(source):
            if target in graph and target != source.module:
                graph[source.module].add(target)
    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":  # nxt is on the current path: a cycle
                stack = path + [node]
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [node])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert not cycles, "Circular imports between flowclass modules:\n  " + "\n  ".join(cycles)


# ---------------------------------------------------------------------------------------
# The checkers catch what they should (on a small made-up tree).
# ---------------------------------------------------------------------------------------


@pytest.fixture
def toy(tmp_path):
    files = {
        "flowclass/__init__.py": "",
        "flowclass/_validation.py": "def check_x(): ...\ndef _helper(): ...\n",
        "flowclass/data/__init__.py": "",
        "flowclass/data/moons.py": "from flowclass.classifier import Model\n",
        "flowclass/classifier.py": "import flowclass.flows\n",
        "flowclass/flows.py": "",
        "flowclass/attacks.py": "def _step(): ...\ndef run(): _step()\n",
        "flowclass/robustness.py": (
            "import flowclass.attacks\n"
            "from flowclass import attacks as atk, _validation\n"
            "from flowclass._validation import check_x\n"
            "from flowclass.attacks import _step, run\n"
            "import experiments.mnist\n"
            "x = flowclass.attacks._step, atk._step, _validation._helper, _validation.check_x\n"
            "y = atk.Result._replace, atk.__name__\n"
        ),
        "benchmarks/run.py": "import torch_models\nfrom torch_models import _private\ntorch_models._hidden()\n",
        "benchmarks/torch_models.py": "import numpy._core\nfrom numpy._core.multiarray import _reconstruct\n",
    }
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return {s.module: s for s in sources("flowclass", "benchmarks", root=tmp_path)}, tmp_path


def test_private_name_checker_on_a_toy_tree(toy):
    tree, root = toy
    found = private_imports(tree["flowclass.robustness"], root)
    assert found == [
        "flowclass/robustness.py:4: from flowclass.attacks import _step",
        "flowclass/robustness.py:6: flowclass.attacks._step (a private name of flowclass.attacks)",
        "flowclass/robustness.py:6: atk._step (a private name of flowclass.attacks)",
        "flowclass/robustness.py:6: _validation._helper (a private name of flowclass._validation)",
    ]
    assert private_imports(tree["benchmarks.run"], root) == [
        "benchmarks/run.py:2: from benchmarks.torch_models import _private",
        "benchmarks/run.py:3: torch_models._hidden (a private name of benchmarks.torch_models)",
    ]
    assert private_imports(tree["benchmarks.torch_models"], root) == []  # third party: out of scope
    assert private_imports(tree["flowclass.attacks"], root) == []  # its own private names


def test_layer_checker_on_a_toy_tree(toy):
    tree, root = toy
    data = dict(imported_modules(tree["flowclass.data.moons"], root))
    assert set(data.values()) == {"flowclass.classifier"} and layer_of("flowclass.classifier") != 0
    upward = [t for _, t in imported_modules(tree["flowclass.classifier"], root)]
    assert upward == ["flowclass.flows"] and layer_of("flowclass.flows") > layer_of("flowclass.classifier")
    programs = {t for _, t in imported_modules(tree["flowclass.robustness"], root) if not t.startswith("flowclass")}
    assert programs == {"experiments.mnist"}
    assert layer_of("flowclass.bijectors.coupling") == 1 and layer_of("flowclass.unknown") is None


def test_experiments_are_packages_importing_only_the_library_and_themselves():
    """DESIGN.md: experiments are thin programs over the library. Inside ``experiments/<name>/`` imports
    are relative (the package itself) or of the library and third-party code: no ``sys.path`` edits, no
    import of another experiment; a script at the top (the legacy ``experiments/moons.py``) imports none."""
    names = {p.name for p in (ROOT / "experiments").iterdir() if (p / "__init__.py").is_file()}
    offenders = []
    for path in sorted((ROOT / "experiments").rglob("*.py")):
        relative = path.relative_to(ROOT / "experiments")
        own = relative.parts[0] if len(relative.parts) > 1 else None
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", None) == "sys":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: uses sys.path")
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module]
            for target in targets:
                top = target.split(".")[0]
                other = target.split(".")[1] if top == "experiments" and "." in target else top
                if (top == "experiments" or top in names) and other != own:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: imports {target}")
    assert not offenders, "experiments import another experiment or edit sys.path:\n  " + "\n  ".join(offenders)
