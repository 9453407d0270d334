"""Sphinx configuration: MyST pages, MyST-NB notebooks executed at build time, autodoc API reference.

Build (what CI runs, see .ci/docs.sh):

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Environment:
  FLOWCLASS_DOCS_EXECUTE   notebook execution: ``force`` (default: every build runs every
                           notebook, as CI does), ``cache`` (re-run only changed notebooks) or
                           ``off`` (no execution; for quick edits of the prose).
"""

from __future__ import annotations

import inspect
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # document the working tree, even without an editable install

import flowclass  # noqa: E402

project = "flowclass"
author = "flowclass developers"
copyright = "flowclass developers"
version = release = flowclass.__version__

extensions = [
    "myst_nb",  # MyST markdown pages and Jupyter notebooks (executed at build time)
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # Google-style "Args:", "Attributes:", "Example:" sections
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build", "_tools", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"

# --- MyST -------------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# --- notebooks --------------------------------------------------------------------------
nb_execution_mode = os.environ.get("FLOWCLASS_DOCS_EXECUTE", "force")
nb_execution_timeout = 240  # seconds per cell: a hang fails the build instead of stalling CI
nb_execution_raise_on_error = True  # a failing cell fails the build: the tutorials cannot rot
nb_execution_show_tb = True
nb_merge_streams = True

# --- API reference ----------------------------------------------------------------------
autosummary_generate = False  # the API pages list their objects explicitly
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_default_options = {"exclude-members": "parent, name, setup"}  # Flax Module plumbing
add_module_names = False
# Keep the library's type aliases by name in signatures instead of expanding them.
autodoc_type_aliases = {
    name: name
    for name in (
        "ArrayLike",
        "DTypeLike",
        "MeanInit",
        "Covariance",
        "Activation",
        "LossFn",
        "Variables",
        "Norm",
        "LogDensityFn",
        "MaskType",
        "Source",
        "Splits",
        "Axes",
    )
}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# --- HTML -------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = f"flowclass {release}"
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
html_static_path = ["_static"]
html_css_files = ["custom.css"]


# --- signatures of Flax modules -----------------------------------------------------------
def _clean_signature(app, what, name, obj, options, signature, return_annotation):
    """Drops Flax's ``parent`` and ``name`` constructor arguments (plumbing every Module has)
    and the ``~module.`` prefixes that dataclass signatures keep, from class signatures."""
    if what != "class" or signature is None or not inspect.isclass(obj):
        return None
    import flax.linen as nn

    if issubclass(obj, nn.Module):
        signature = re.sub(r",?\s*parent: .*$", ")", signature)
    signature = re.sub(r"~(?:\w+\.)*(\w+)", r"\1", signature)
    signature = re.sub(r"TypeAliasForwardRef\('([^']+)'\)", r"\1", signature)
    return signature, return_annotation


def _maths_as_literal(app, what, name, obj, options, lines):
    """The docstrings set their maths as an indented block after a line ending in ``:``,
    which reStructuredText would reflow into one paragraph: make each such block literal
    (``::``), keeping its lines. Doctest blocks (``>>>``) are left as they are."""
    for i in range(len(lines) - 2):
        line, gap, block = lines[i].rstrip(), lines[i + 1], lines[i + 2]
        indent = len(line) - len(line.lstrip())
        if (
            line.endswith(":")
            and not line.endswith("::")
            and not gap.strip()
            and block.strip()
            and len(block) - len(block.lstrip()) > indent
            and not block.lstrip().startswith(">>>")
        ):
            lines[i] = line + ":"


def setup(app):
    app.connect("autodoc-process-signature", _clean_signature)
    app.connect("autodoc-process-docstring", _maths_as_literal)
