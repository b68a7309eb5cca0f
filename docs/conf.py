"""Sphinx configuration of the lowrank_core documentation.

Build (warnings are errors, as in CI)::

    python -m pip install -e ".[docs]"
    python -m sphinx -W --keep-going -b html docs docs/_build/html

The pages are MyST Markdown (``$...$`` maths, heading anchors); the API reference is
generated from the numpydoc docstrings by autosummary.  The ```python examples of
the pages are executed by ``docs/check_examples.py`` (run by ``tests/test_docs.py``),
not by Sphinx.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # document the checkout, not an installed copy

import lowrank_core  # noqa: E402

# The benchmark tables that the pages include (docs/tables/*.md) are generated from the
# results files in bench/results/ at every build, so that no number is typed by hand.
sys.path.insert(0, str(ROOT / "bench"))
import tables as _bench_tables  # noqa: E402  (bench/tables.py)

_bench_tables.write_all()

project = "lowrank_core"
author = "lowrank_core developers"
copyright = "lowrank_core developers"  # noqa: A001
release = lowrank_core.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "tables", "check_examples.py", "conf.py"]

# MyST: $...$ and $$...$$ maths, \begin{align} blocks, and anchors for headings down to
# level 3 so that links such as methods.md#substep-solvers resolve.
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# API reference: autosummary writes one page per object under api/generated/.
autosummary_generate = True
templates_path = ["_templates"]  # the class template documents the members on the class page
autosummary_imported_members = True
autodoc_typehints = "none"  # the numpydoc "Parameters" sections carry the types
autodoc_member_order = "bysource"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# Every cross-reference must resolve (with -W a broken one fails the build), except:
# private base classes named by :show-inheritance: (``_RankAdaptive``), and the PyTorch
# adapter module, which is described in training.md but not autodocumented because
# importing it needs torch (not part of the docs extra).
nitpicky = True
nitpick_ignore = [("py:mod", "lowrank_core.training.torch")]
nitpick_ignore_regex = [("py:class", r"lowrank_core\..*\._[A-Z]\w*")]

# Maths is rendered by MathJax 3 served from the built site itself, so the pages read
# offline: the docs extra installs MathJax as package data (django-static-mathjax, no
# dependencies), and the files the TeX/CHTML component loads (the component, its fonts,
# the TeX extensions it may autoload and the menu) are copied into _static/mathjax.
import mathjax as _mathjax_files  # noqa: E402  (the `docs` extra: django-static-mathjax)

MATHJAX_ES5 = Path(_mathjax_files.__file__).resolve().parent / "static" / "mathjax" / "es5"
_MATHJAX_PARTS = ("tex-chtml.js", "output/chtml/fonts/woff-v2", "input/tex/extensions", "ui", "a11y")
mathjax_path = "mathjax/tex-chtml.js"


def _copy_mathjax(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / "mathjax"
    for part in _MATHJAX_PARTS:
        source, dest = MATHJAX_ES5 / part, target / part
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, dest, dirs_exist_ok=True)
        else:
            shutil.copy2(source, dest)


def setup(app):
    if not (MATHJAX_ES5 / "tex-chtml.js").is_file():
        msg = f"MathJax not found at {MATHJAX_ES5}: install the docs extra (pip install -e '.[docs]')."
        raise RuntimeError(msg)
    app.connect("build-finished", _copy_mathjax)


html_theme = "furo"
html_title = f"lowrank_core {release}"
