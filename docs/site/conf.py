"""Sphinx configuration of the documentation site (``nox -s docs`` builds and checks it).

    sphinx-build -W --keep-going -b html docs/site build/site

What goes in: this folder's pages (the index and the API reference), the guides
``docs/*.md`` (MyST Markdown, GitHub's math syntaxes included), the benchmark results
``benchmarks/results/benchmarks.md`` and the docstrings (autodoc). ``mnn_pages.py``
writes the pages that follow the code, one per guide and one per layer of the registry
``mnn.registry.LAYERS``, into ``guides/`` and ``layers/`` here (git ignores both).
``offline_math.py`` renders math with a MathJax copied from a Python package into
the site: nothing is loaded from a CDN, at build time or in the reader's browser.
"""

import logging
import sys
from pathlib import Path

SITE = Path(__file__).resolve().parent
sys.path.insert(0, str(SITE))  # the local extensions: offline_math, mnn_pages

import mnn  # noqa: E402

project = "mnn: Manual Neural Networks"
release = version = mnn.__version__
copyright = "the mnn authors"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",  # each object links to its highlighted source
    "myst_parser",
    "offline_math",
    "mnn_pages",
]

# The guides are written for GitHub, which renders $...$, $$...$$ and ```math fences.
myst_enable_extensions = ["dollarmath"]
myst_fence_as_directive = ["math"]
myst_heading_anchors = 3  # [text](#a-heading) links work as on GitHub

autodoc_member_order = "bysource"  # a class's methods in the order of its file
# An override without a docstring would repeat its parent's (and its formulas) once per class.
autodoc_inherit_docstrings = False
add_module_names = False

exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"mnn {release}"
html_show_sphinx = False
html_last_updated_fmt = None
html_static_path = ["_static"]
html_css_files = ["math.css"]
html_favicon = "_static/favicon.svg"  # without one, every browser asks for a missing /favicon.ico


def _not_myst_config(record: logging.LogRecord) -> bool:
    return "MdParserConfig(" not in record.getMessage()


def setup(app) -> None:
    # myst-parser logs its whole configuration, one line of some 1,500 characters, at
    # info level on every build (create_myst_config in myst_parser/sphinx_ext/main.py).
    # Only that record is dropped: myst's warnings and Sphinx's progress still show.
    logging.getLogger("sphinx.myst_parser.sphinx_ext.main").addFilter(_not_myst_config)
