"""The documentation site (docs/site): built by Sphinx, then read in headless Chromium.

``nox -s docs`` builds the site with warnings as errors and runs this file on that
build (``MNN_DOCS_SITE``); run alone, the tests build the site themselves. The checks:
every formula renders without a MathJax error, the pages show as many formulas as the
sources hold (counted by docs/site/formulas.py, without Sphinx), no internal link or
anchor is broken, and nothing is loaded from outside the site. A small site with a
broken formula, a dead link and a formula that never renders shows that the checks fail.

Tests that need Sphinx (``pip install '.[docs]'``) or Chromium (Debian:
``apt-get install chromium chromium-driver``) skip without them, saying which.
"""

from __future__ import annotations

import html.parser
import importlib.util
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from helpers import load_file

ROOT = Path(__file__).resolve().parents[2]
SITE_SOURCES = ROOT / "docs" / "site"


formulas = load_file("docs_site_formulas", SITE_SOURCES / "formulas.py")
sitecheck = load_file("docs_site_sitecheck", SITE_SOURCES / "sitecheck.py")
mnn_pages = load_file("docs_site_mnn_pages", SITE_SOURCES / "mnn_pages.py")


def _sphinx_missing() -> str | None:
    for module in ("sphinx", "myst_parser", "furo", "sphinx-mathjax-offline"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed: pip install '.[docs]' (nox -s docs does)"
    return None


def build(source: Path, out: Path, *options: str) -> subprocess.CompletedProcess:
    """``sphinx-build -b html`` in a fresh process (it imports mnn, and the site's extensions)."""
    return subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", *options,
                           str(source), str(out)], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """The built site: MNN_DOCS_SITE if set (nox -s docs), else built here, warnings as errors."""
    if given := os.environ.get("MNN_DOCS_SITE"):
        assert (Path(given) / "index.html").is_file(), f"MNN_DOCS_SITE={given} holds no built site"
        return Path(given)
    if why := _sphinx_missing():
        pytest.skip(why)
    out = tmp_path_factory.mktemp("site")
    built = build(SITE_SOURCES, out, "-W", "--keep-going", "-q")
    assert built.returncode == 0, f"the site does not build:\n{built.stdout}\n{built.stderr}"
    return out


@pytest.fixture(scope="session")
def report(site):
    if why := sitecheck.chromium_missing():
        pytest.skip(f"cannot run Chromium: {why}")
    return sitecheck.check(site)


# --- counting formulas in the sources, without Sphinx ------------------------------------


def test_rest_formulas_counts_directives_and_roles_not_literal_blocks():
    docstring = r"""Summary :math:`a` and :math:`b
    + c` wrapped.

    .. math::
        y = x  \qquad (1)

        z = 2

    .. math:: w = v

    Example::

        .. math:: not a formula, a literal block :math:`x`

    >>> f(":math:`x`")
    Last :math:`d`.
    """
    assert formulas.rest_formulas(docstring) == 5


def test_markdown_formulas_counts_github_math_outside_code():
    text = (r"Inline $a_j$ and $x \in \mathbb{R}^n$, costs \$5 and 5$, and `$HOME` stays code."
            "\n\n$$\ny = x\n$$\n\n```math\nz = 2\n```\n\n```python\nprint('$x$')\n```\n"
            "<!-- $hidden$ -->\nA sum $$s$$ inline, and MyST's {math}`r`.\n\n"
            "```{math}\nq = 1\n```\n")
    assert formulas.markdown_formulas(text) == 7


def test_githubs_backquoted_inline_math_is_refused():
    with pytest.raises(ValueError, match=r"\$`...`\$ .* write \$...\$"):
        formulas.markdown_formulas("Here $`x`$ is math on GitHub.\n", "guide.md")


def test_the_sources_are_counted():
    counted = formulas.docstring_formulas()
    assert counted["mnn.layers.linear.LinearLayer"] >= 4  # equations (1) to (4)
    assert "mnn.layers.linear" not in counted  # its module docstring holds no math
    assert all(not part.startswith("_") for name in counted for part in name.split("."))
    assert set(formulas.guide_formulas()) == {p.name for p in (ROOT / "docs").glob("*.md")}


# --- the built site -------------------------------------------------------------------------


class _References(html.parser.HTMLParser):
    """The URLs a page makes the browser load: scripts, styles, fonts, images, frames."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "img", "iframe", "source", "audio", "video", "embed") and \
                attrs.get("src"):
            self.urls.append(attrs["src"])
        if tag == "link" and attrs.get("href") and attrs.get("rel") not in ("next", "prev"):
            self.urls.append(attrs["href"])
        if "style" in attrs and attrs["style"]:
            self.styles.append(attrs["style"])
        self._in_style = tag == "style"

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)

    def handle_endtag(self, tag):
        self._in_style = False


def _css_urls(css: str) -> list[str]:
    urls = re.findall(r"""url\(\s*['"]?([^'")]+)""", css)
    urls += re.findall(r"""@import\s+['"]([^'"]+)""", css)
    return [url for url in urls if not url.startswith("data:")]


def _online(url: str) -> bool:
    return bool(re.match(r"(https?:)?//", url.strip(), re.IGNORECASE))


def test_the_pages_reference_nothing_online(site):
    """No http(s) URL for a script, style, font or image, in any page or stylesheet."""
    online = []
    for page in site.rglob("*.html"):
        found = _References()
        found.feed(page.read_text(encoding="utf-8"))
        urls = found.urls + [url for css in found.styles for url in _css_urls(css)]
        online += [f"{page.relative_to(site)}: {url}" for url in urls if _online(url)]
    for sheet in site.rglob("*.css"):
        online += [f"{sheet.relative_to(site)}: {url}"
                   for url in _css_urls(sheet.read_text(encoding="utf-8")) if _online(url)]
    assert not online, "the site loads from other servers:\n" + "\n".join(online)


def test_mathjax_ships_with_the_site(site):
    page = (site / "layers" / "LinearLayer.html").read_text(encoding="utf-8")
    assert 'src="../_static/mathjax/tex-chtml.js"' in page
    assert (site / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()


def test_each_layer_page_shows_its_class_and_the_class_alone(site):
    """The class first, then its own methods; no module function, no helper of the file."""
    for name, cls in mnn_pages.layers().items():
        page = (site / "layers" / f"{name}.html").read_text(encoding="utf-8")
        objects = re.findall(r'<dt class="sig sig-object py" id="([^"]+)"', page)
        qualified = f"{cls.__module__}.{cls.__qualname__}"
        assert objects[0] == qualified, f"layers/{name}.html opens with {objects[0]}"
        strangers = [o for o in objects[1:] if not o.startswith(f"{qualified}.")]
        assert not strangers, f"layers/{name}.html shows more than {name}: {strangers}"


def test_the_index_has_install_quickstart_and_one_level_of_layers(site):
    page = (site / "index.html").read_text(encoding="utf-8")
    assert 'id="install"' in page and 'id="quickstart"' in page
    text = html.unescape(re.sub(r"<[^>]+>", "", page))  # the code without its highlighting
    quickstart = (ROOT / "examples" / "quickstart.py").read_text(encoding="utf-8")
    missing = [line for line in quickstart.splitlines() if line.strip() not in text]
    assert not missing, f"the index lacks these lines of examples/quickstart.py: {missing}"
    menus = re.findall(r'caption-text">Layers</span></p>\s*<ul>(.*?)</ul>', page, re.S)
    assert menus, "no menu captioned Layers"
    for menu in menus:  # the sidebar and the page's own toctree
        titles = re.findall(r'<a class="reference internal" href="([^"]+)">([^<]+)</a>', menu)
        assert titles == [(f"layers/{name}.html", name) for name in sorted(mnn_pages.layers())]


def _inventory(site: Path) -> set[str]:
    """The names in Sphinx's objects.inv: four header lines, then zlib-compressed lines."""
    data = (site / "objects.inv").read_bytes()
    body = zlib.decompress(data.split(b"\n", 4)[4]).decode("utf-8")
    return {line.split(" ", 1)[0] for line in body.splitlines() if line}


@pytest.mark.parametrize("package", ["mnn", "mnn.optim", "mnn.backends", "mnn.testing",
                                     "mnn.data", "mnn.layers", "mnn.distributed",
                                     "mnn.sklearn"])
def test_the_api_reference_documents_every_exported_name(site, package):
    module = importlib.import_module(package)
    documented = _inventory(site)
    missing = []
    for name in module.__all__:
        value = getattr(module, name)
        where = {f"{getattr(value, '__module__', None)}.{getattr(value, '__qualname__', name)}",
                 getattr(value, "__name__", None)}  # an object where it is defined; a module
        if not where & documented and not any(entry.startswith(f"{package}.") and
                                              entry.endswith(f".{name}") for entry in documented):
            missing.append(name)
    assert not missing, f"{package} exports names the site does not document: {missing}"


def test_every_formula_renders_without_a_math_error(report):
    assert report.formulas > 0
    assert not report.math, "\n".join(report.math)


def test_the_pages_show_as_many_formulas_as_the_sources_hold(report):
    rendered = {path: page.formulas for path, page in report.pages.items()}
    guides = formulas.guide_formulas()
    for guide, expected in guides.items():
        page = f"guides/{Path(guide).stem}.html"
        assert rendered.get(page) == expected, (
            f"docs/{guide} holds {expected} formulas, its page {page} shows {rendered.get(page)}")
    docstrings, own_pages = formulas.docstring_formulas(), formulas.page_formulas()
    expected = sum(docstrings.values()) + sum(own_pages.values())
    shown = sum(n for path, n in rendered.items() if not path.startswith("guides/"))
    assert shown == expected, (
        f"the docstrings and the site's own pages hold {expected} formulas, the other pages "
        f"show {shown}.\nIn the sources: {docstrings | own_pages}\n"
        f"On the pages: { {path: n for path, n in rendered.items() if n} }")


def test_no_link_is_broken(report):
    assert not report.links, "\n".join(report.links)
    unlinked = [path for path, page in report.pages.items() if not page.links]
    assert not unlinked, f"pages where the check saw no link at all (not even the menu): {unlinked}"


def test_nothing_is_loaded_from_outside_and_nothing_fails_to_load(report):
    assert not report.loads, "\n".join(report.loads)
    assert any(path.endswith("/tex-chtml.js") and status == 200
               for path, status in report.requests), "MathJax was never loaded"
    assert any(path.endswith(".woff") for path, _ in report.requests), "no MathJax font loaded"


# --- the checks can fail -------------------------------------------------------------------

BROKEN_PAGE = r"""# A page with mistakes

Fine: $a + b$. A double exponent: $x^2^3$. A macro that does not exist: $\fracc{1}{2}$.
A brace left open, so MathJax never finds the end of the formula: $\frac{1}{$.

A formula inside raw HTML, which MyST leaves as text, so it is never rendered:

<div>$y = x$</div>

<a href="#no-such-anchor">a dead anchor</a>, <a href="gone.html">a page that does not exist</a>
and a picture that is not there: <img src="gone.png" alt="gone">
"""


def small_site(tmp_path: Path, page: str, conf: str = "") -> subprocess.CompletedProcess:
    """Build a one-page site (index.md) with the site's math, Markdown and theme settings."""
    source = tmp_path / "source"
    source.mkdir()
    (source / "index.md").write_text(page, encoding="utf-8")
    (source / "conf.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(SITE_SOURCES)!r})\n"
        "from conf import html_theme, myst_enable_extensions, myst_fence_as_directive\n"
        "extensions = ['myst_parser', 'offline_math']\n" + conf, encoding="utf-8")
    return build(source, tmp_path / "out", "-q")


def test_the_build_does_not_print_mysts_configuration(tmp_path):
    """myst-parser logs its whole MdParserConfig at every build; conf.py's setup drops it."""
    if why := _sphinx_missing():
        pytest.skip(why)
    source = tmp_path / "source"
    source.mkdir()
    (source / "index.md").write_text("# Page\n\nText.\n", encoding="utf-8")
    (source / "conf.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(SITE_SOURCES)!r})\n"
        "from conf import myst_enable_extensions, setup\n"
        "extensions = ['myst_parser']\n", encoding="utf-8")
    built = build(source, tmp_path / "out")  # not quiet: Sphinx's info lines show
    output = built.stdout + built.stderr
    assert built.returncode == 0, output
    assert "build succeeded" in output
    assert "MdParserConfig" not in output, output


def test_a_mathjax_path_in_conf_cannot_bring_the_cdn_back(tmp_path):
    if why := _sphinx_missing():
        pytest.skip(why)
    cdn = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"
    built = small_site(tmp_path, "# Math\n\n$x$\n", f"mathjax_path = {cdn!r}\n")
    assert built.returncode == 0, built.stdout + built.stderr
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert '<script defer="defer" src="_static/mathjax/tex-chtml.js"></script>' in page
    assert "cdn.jsdelivr" not in page


def test_the_checks_fail_on_a_page_with_a_broken_formula(tmp_path):
    if why := _sphinx_missing() or sitecheck.chromium_missing():
        pytest.skip(why)
    built = small_site(tmp_path, BROKEN_PAGE)
    assert built.returncode == 0, built.stdout + built.stderr

    found = sitecheck.check(tmp_path / "out", ["index.html"])

    math = "\n".join(found.math)
    assert len(found.math) == 3, math
    assert "'x^2^3' does not render: Double exponent: use braces to clarify" in math
    assert r"'\\fracc{1}{2}' does not render: Undefined control sequence \fracc" in math
    assert r"'\\(\\frac{1}{\\)' was never typeset" in math
    links = "\n".join(found.links)
    assert len(found.links) == 2, links
    assert "index.html has no element with id 'no-such-anchor'" in links
    assert "gone.html is not in the site" in links
    assert "the server answered 404 for /gone.png" in found.loads
    # The source holds five formulas; the page shows three (two of them as errors).
    assert formulas.markdown_formulas(BROKEN_PAGE) == 5
    assert found.pages["index.html"].formulas == 3
