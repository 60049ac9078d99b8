"""Sphinx extension: math rendered by a MathJax that ships with the site, strict about errors.

MathJax 3 comes from the PyPI package ``sphinx-mathjax-offline``: its extension points
``mathjax_path`` at ``_static/mathjax/tex-chtml.js`` (even over a ``mathjax_path`` in
conf.py) and copies MathJax, fonts included, into the built site. Nothing is fetched from
a CDN, neither by the build nor by the reader's browser (``tests/docs/test_docs_site.py``
checks what the pages reference and what Chromium loads).

By default MathJax draws an unknown macro such as ``\\fracc`` in red and carries on
(its ``noundefined`` package), which a reader may take for notation. Here that package
is removed, so every TeX mistake becomes a MathJax error (an ``mjx-merror`` element),
which the site test finds.
"""

from __future__ import annotations

from sphinx.application import Sphinx
from sphinx.config import Config

MATHJAX3_CONFIG = {
    "tex": {"packages": {"[-]": ["noundefined"]}},  # an unknown macro is an error
}


def _strict_by_default(app: Sphinx, config: Config) -> None:
    if config.mathjax3_config is None:  # conf.py may set its own
        config.mathjax3_config = MATHJAX3_CONFIG


def setup(app: Sphinx) -> dict:
    app.setup_extension("sphinx.ext.mathjax")
    app.setup_extension("sphinx-mathjax-offline")  # the package's module name has dashes
    app.connect("config-inited", _strict_by_default)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
