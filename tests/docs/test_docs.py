"""The pages that docs/site/mnn_pages.py generates when the site is built, and its docstring
converter. Nothing here needs Sphinx: the site itself is built by tests/docs/test_docs_site.py
and ``nox -s docs``."""

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest
from helpers import load_file

import mnn
import mnn.registry
from mnn.registry import LAYERS, Registry

ROOT = Path(__file__).resolve().parents[2]
mnn_pages = load_file("docs_site_mnn_pages", ROOT / "docs" / "site" / "mnn_pages.py")


def test_every_layer_in_the_registry_gets_a_page(tmp_path):
    mnn_pages.sync(tmp_path, mnn_pages.layer_pages())
    ours = {name for name in LAYERS.known() if LAYERS.get(name).__module__.startswith("mnn.")}
    written = {path.stem for path in tmp_path.glob("*.rst")}
    assert written == ours
    assert set(mnn.layers.__all__) <= written, "a layer that mnn exports has no page"
    for name in ours:
        cls = LAYERS.get(name)
        page = (tmp_path / f"{name}.rst").read_text(encoding="utf-8")
        assert f"{name}\n{'=' * len(name)}\n" in page
        # The class is the one object on the page: no automodule, no module function.
        assert re.findall(r"^\.\. auto\w+:: (\S+)", page, re.M) == [
            f"{cls.__module__}.{cls.__qualname__}"]


def test_a_layer_of_another_package_gets_no_page(monkeypatch):
    class Foreign:
        """A layer of some other package, registered in the same registry."""

    Foreign.__module__ = "mnn_extras.layers"  # starts with "mnn", yet is not mnn's
    registry = Registry("layer", "mnn.layers")
    registry.register(mnn.LinearLayer)
    registry.register(Foreign)
    monkeypatch.setattr(mnn.registry, "LAYERS", registry)
    assert mnn_pages.layers() == {"LinearLayer": mnn.LinearLayer}


def test_a_page_goes_when_its_layer_goes_and_an_unchanged_page_is_not_rewritten(tmp_path):
    mnn_pages.sync(tmp_path, {"Gone.rst": "old\n", "Kept.rst": "same\n"})
    kept = tmp_path / "Kept.rst"
    before = kept.stat().st_mtime_ns
    mnn_pages.sync(tmp_path, {"Kept.rst": "same\n"})
    assert [path.name for path in tmp_path.iterdir()] == ["Kept.rst"]
    assert kept.stat().st_mtime_ns == before  # Sphinx rereads only what changed


def test_a_layer_without_docstring_is_an_error():
    class Undocumented:
        pass

    Undocumented.__module__ = "mnn.layers.undocumented"
    with pytest.raises(ValueError, match=r"mnn\.layers\.undocumented\..*Undocumented has no "
                                         r"docstring"):
        mnn_pages.layer_page("Undocumented", Undocumented)


def _functions_in_file(module: str) -> list[str]:
    """The public functions defined at the top of ``module``'s file, read from its source."""
    tree = ast.parse(inspect.getsource(importlib.import_module(module)))
    return [node.name for node in tree.body
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")]


def test_the_layer_files_list_each_file_with_the_functions_it_defines():
    text = mnn_pages.layer_pages()["files.inc"]
    layers = mnn_pages.layers()
    modules = {cls.__module__ for cls in layers.values()}
    assert re.findall(r"^\.\. automodule:: (\S+)$", text, re.M) == sorted(modules)
    for module in modules:
        functions = _functions_in_file(module)
        assert mnn_pages.module_functions(module) == functions  # not what the file imports
        if functions:
            assert f".. automodule:: {module}\n   :members: {', '.join(functions)}\n" in text
    for name in layers:
        assert f":doc:`../layers/{name}`" in text


def test_every_guide_gets_a_page_that_includes_it(tmp_path):
    pages = mnn_pages.guide_pages(tmp_path)
    assert set(pages) == {path.name for path in (ROOT / "docs").glob("*.md")}
    for name, text in pages.items():
        included = re.search(r"```\{include\} (\S+)", text).group(1)
        assert (tmp_path / "guides" / included).resolve() == (ROOT / "docs" / name).resolve()


# --- the docstring converter ------------------------------------------------------------------

NUMBERED = r"""Summary :math:`y = W x` here.

Forward
-------
.. math::
    y_k = \sum_j W_{kj}\, x_j + b_k  \qquad (1)

Jacobian
--------
.. math::
    \frac{\partial y_k}{\partial x_j} = W_{kj}  \qquad (2)

    \frac{\partial y_k}{\partial b_m} = \delta_{km}  \qquad (3)

    Notes
    ~~~~~
    A title keeps its indent, and needs an underline at least as long as itself:

    Not a title
    ---
"""


def test_section_titles_become_rubrics_and_numbered_equations_stay_as_written():
    converted = mnn_pages.rubrics(NUMBERED.splitlines())
    assert converted == [
        "Summary :math:`y = W x` here.",
        "",
        ".. rubric:: Forward",
        "",
        ".. math::",
        r"    y_k = \sum_j W_{kj}\, x_j + b_k  \qquad (1)",
        "",
        ".. rubric:: Jacobian",
        "",
        ".. math::",
        r"    \frac{\partial y_k}{\partial x_j} = W_{kj}  \qquad (2)",
        "",
        r"    \frac{\partial y_k}{\partial b_m} = \delta_{km}  \qquad (3)",
        "",
        "    .. rubric:: Notes",
        "",
        "    A title keeps its indent, and needs an underline at least as long as itself:",
        "",
        "    Not a title",
        "    ---",
    ]


@pytest.mark.parametrize("name", sorted(mnn_pages.layers()))
def test_a_layers_docstring_keeps_its_math_and_loses_only_its_title_underlines(name):
    """The equations (n) that the code's ``# Eq. (n)`` comments point at reach the site."""
    lines = inspect.cleandoc(LAYERS.get(name).__doc__).splitlines()
    converted = mnn_pages.rubrics(lines)
    assert len(converted) == len(lines)
    titles = [line.removeprefix(".. rubric:: ") for line in converted if ".. rubric::" in line]
    assert titles, f"{name}'s docstring has no section titles (Forward, Jacobian, ...)"
    kept = [line for line in converted if ".. rubric::" not in line and line]
    assert kept == [line for line in lines if line and line not in titles
                    and not mnn_pages._UNDERLINE.match(line)]
    numbers = [int(n) for n in re.findall(r"\\qquad \((\d+)\)", "\n".join(converted))]
    assert numbers == sorted(numbers), f"{name}: equations out of order: {numbers}"
