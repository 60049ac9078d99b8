"""docs/layers/ is generated from the docstrings: it must be up to date and keep the math intact."""

from pathlib import Path

import pytest
from helpers import load_file

import mnn

ROOT = Path(__file__).resolve().parents[2]
generate = load_file("docs_generate", ROOT / "docs" / "generate.py")


def test_docs_are_up_to_date(tmp_path):
    generate.write(tmp_path)
    fresh = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.glob("*.md")}
    committed = {p.name: p.read_text(encoding="utf-8") for p in generate.OUT.glob("*.md")}
    stale = sorted(name for name in fresh if committed.get(name) != fresh[name])
    stale += sorted(f"{name} (no such layer)" for name in committed if name not in fresh)
    assert not stale, (f"docs/layers/ is out of date: {', '.join(stale)}. "
                       f"Regenerate it with: {generate.FIX}")


def test_every_layer_has_a_page_and_the_index_links_it():
    pages = generate.pages()
    for name in mnn.layers.__all__:
        assert f"{name}.md" in pages
        assert f"[`{name}`]({name}.md)" in pages["README.md"]
        assert f"# {name}\n" in pages[f"{name}.md"]


def test_no_rest_markup_survives():
    for name, text in generate.pages().items():
        for rest in (":math:`", ".. math::", "``"):
            outside_fences = "\n".join(text.split("```")[::2])
            assert rest not in outside_fences, f"{name} still contains {rest!r}"


def test_math_blocks_and_roles_become_github_math():
    doc = r"""Summary :math:`y = W_{kj}\, x` here.

    Forward
    -------
    .. math::
        y = \{ a \}  \qquad (1)

        z = 2

    Text ``code`` and :math:`a
    + b` wrapped.
    """
    text = generate.markdown(doc)
    assert "Summary $`y = W_{kj}\\, x`$ here." in text  # the backslash survives
    assert "## Forward" in text and "-------" not in text
    assert "```math\ny = \\{ a \\}  \\qquad (1)\n```" in text
    assert "```math\nz = 2\n```" in text  # a blank line separates two equations
    assert "Text `code` and $`a + b`$ wrapped." in text


def test_a_stale_page_is_named_with_the_fix(tmp_path):
    generate.write(tmp_path)
    page = tmp_path / "ReluLayer.md"
    page.write_text(page.read_text(encoding="utf-8").replace("max", "min"), encoding="utf-8")
    (tmp_path / "GoneLayer.md").write_text("old\n", encoding="utf-8")
    (tmp_path / "LinearLayer.md").unlink()
    found = "\n".join(generate.problems(tmp_path))
    assert "ReluLayer.md is stale" in found
    assert "GoneLayer.md belongs to no layer" in found
    assert "LinearLayer.md is missing" in found
    assert generate.main(["--check", "--out", str(tmp_path)]) == 1


def test_a_layer_without_docstring_is_an_error():
    class Undocumented(mnn.BaseLayer):
        pass

    Undocumented.__doc__ = None
    with pytest.raises(ValueError, match="mnn.Undocumented has no docstring"):
        generate.layer_page("Undocumented", Undocumented)


def test_lists_stay_lists_and_wrapped_lines_stay_joined():
    text = generate.markdown("Title line.\n\n* one\n  more\n* two :math:`a\n  - b`\n\nx = y\n- z\n")
    assert "* one more\n* two $`a - b`$\n" in text
    assert "x = y - z" in text


def test_a_literal_block_after_double_colon():
    """reST ``text::`` renders as ``text:`` followed by the indented block, as code."""
    doc = "Train it::\n\n    loss = model(x, y)\n    model.backward()\n\nThen sample."
    assert generate.markdown(doc) == ("Train it:\n\n```text\nloss = model(x, y)\nmodel.backward()"
                                      "\n```\n\nThen sample.\n")
