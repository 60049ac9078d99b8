"""Sphinx extension: math rendered by a MathJax that ships with the site, strict about errors.

MathJax 3 comes from the PyPI package ``sphinx-mathjax-offline``: its extension points
``mathjax_path`` at ``_static/mathjax/tex-chtml.js`` and copies MathJax, fonts included,
into the built site. Nothing is fetched from a CDN, neither by the build nor by the
reader's browser (``tests/test_docs_site.py`` checks both).

By default MathJax draws an unknown macro such as ``\\fracc`` in red and carries on
(its ``noundefined`` package), which a reader may take for notation. Here that package
is removed, so every TeX mistake becomes a MathJax error (an ``mjx-merror`` element),
which the site test finds.
"""

from __future__ import annotations

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ConfigError

MATHJAX3_CONFIG = {
    "tex": {"packages": {"[-]": ["noundefined"]}},  # an unknown macro is an error
}


def _check(app: Sphinx, config: Config) -> None:
    if "://" in config.mathjax_path or config.mathjax_path.startswith("//"):
        raise ConfigError(f"mathjax_path is {config.mathjax_path!r}: this site loads MathJax "
                          "from its own _static folder, never from a server")
    if config.mathjax3_config is None:
        config.mathjax3_config = MATHJAX3_CONFIG


def setup(app: Sphinx) -> dict:
    app.setup_extension("sphinx.ext.mathjax")
    app.setup_extension("sphinx-mathjax-offline")  # the package's module name has dashes
    app.connect("config-inited", _check)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
