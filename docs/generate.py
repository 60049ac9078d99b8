r"""Write docs/layers/: one Markdown page per layer, from the layer's docstring, math included.

    python docs/generate.py           # (re)write docs/layers/
    python docs/generate.py --check   # exit 1, naming each stale page, if docs/layers/ is stale
    python docs/generate.py --out DIR # write the pages somewhere else

The layers are the names in ``mnn.layers.__all__``, so a new layer gets its page
without any change here. The docstrings are reST-flavoured (numpydoc sections,
``.. math::`` blocks, ``:math:`` roles, double-backquoted code); this converts
them to GitHub Markdown:

* ``.. math::`` blocks become fenced ````math`` blocks, and ``:math:`x``` becomes
  ``$`x`$``. These are GitHub's own math syntaxes in which Markdown does not touch
  the LaTeX. With the bare ``$...$`` and ``$$...$$`` forms, Markdown first eats
  backslash escapes, so ``W_{kj}\, x`` would render as ``W_{kj}, x`` and ``\{`` as ``{``:
  the math would change.
* ``Title`` over a line of dashes becomes ``## Title``; ````code```` becomes ```code```.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "layers"
FIX = "nox -s docs-layers  (or: python docs/generate.py)"

_UNDERLINE = re.compile(r"^([-=~^])\1{2,}$")
_LIST_ITEM = re.compile(r"^([*+-]|\d+[.)])\s")


def inline(text: str) -> str:
    """reST inline markup to Markdown: :math: roles, ``code``, :role:`code`."""
    text = re.sub(r":math:`([^`]+)`", lambda m: f"$`{m.group(1)}`$", text)
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    return re.sub(r":[a-z]+(?::[a-z]+)?:`~?([^`]+)`", r"`\1`", text)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _take_block(lines: list[str], start: int, base: int) -> tuple[list[str], int]:
    """The lines from ``start`` indented deeper than ``base`` (blank lines inside kept)."""
    while start < len(lines) and not lines[start].strip():  # the blank line that opens a block
        start += 1
    end = start
    while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > base):
        end += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    block = lines[start:end]
    depth = min((_indent(line) for line in block if line.strip()), default=0)
    return [line[depth:] for line in block], end


def _new_item(paragraph: list[str], line: str) -> bool:
    """Whether ``line`` starts a new list item (reST lists start after a blank line)."""
    return (bool(_LIST_ITEM.match(paragraph[0])) and bool(_LIST_ITEM.match(line))
            and paragraph[-1].count("`") % 2 == 0)


def markdown(docstring: str) -> str:
    """A reST-flavoured docstring as GitHub Markdown."""
    lines = inspect.cleandoc(docstring).splitlines()
    out: list[str] = []
    paragraph: list[str] = []

    def flush():
        if paragraph:
            out.extend([inline(line) for line in paragraph] + [""])
            paragraph.clear()

    i = 0
    while i < len(lines):
        line, stripped = lines[i], lines[i].strip()
        following = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if not stripped:
            flush()
            i += 1
        elif _UNDERLINE.match(following) and len(following) >= len(stripped):
            flush()
            level = "##" if following[0] in "-=" else "###"
            out.extend([f"{level} {inline(stripped)}", ""])
            i += 2
        elif stripped.startswith(".. math::"):
            flush()
            first = stripped.removeprefix(".. math::").strip()
            block, i = _take_block(lines, i + 1, _indent(line))
            # Blank lines separate equations in reST; each becomes its own block.
            equations = "\n".join(([first] if first else []) + block).split("\n\n")
            for equation in equations:
                out.extend(["```math", equation.strip("\n"), "```", ""])
        elif stripped.startswith(">>>"):  # a doctest: up to the next blank line
            flush()
            start = i
            while i < len(lines) and lines[i].strip():
                i += 1
            out.extend(["```python", *(x.strip() for x in lines[start:i]), "```", ""])
        elif stripped.endswith("::") and i + 1 < len(lines):  # a literal block follows
            text = stripped[:-2].rstrip() + ":" if stripped != "::" else ""  # "x::" reads "x:"
            if paragraph and text and not _LIST_ITEM.match(text):
                paragraph[-1] += " " + text
            elif text:
                paragraph.append(text)
            flush()
            block, i = _take_block(lines, i + 1, _indent(line))
            out.extend(["```text", *block, "```", ""])
        elif paragraph and not _new_item(paragraph, stripped):
            paragraph[-1] += " " + stripped  # one line per paragraph: inline math never wraps
            i += 1
        else:
            paragraph.append(stripped)
            i += 1
    flush()
    return "\n".join(out).rstrip() + "\n"


def _signature(cls) -> str:
    """``LinearLayer(in_features, out_features, bias=True, *, init='he', rng=None)``."""
    parameters = [p.replace(annotation=inspect.Parameter.empty)
                  for p in inspect.signature(cls).parameters.values()]
    return f"{cls.__name__}{inspect.Signature(parameters)}"


def _summary(cls) -> str:
    first = inspect.cleandoc(cls.__doc__).split("\n\n")[0].replace("\n", " ")
    return inline(first).replace("|", "\\|")  # a bare | would end the table cell


def layer_page(name: str, cls) -> str:
    if not (cls.__doc__ or "").strip():
        raise ValueError(f"mnn.{name} has no docstring; every layer documents its math there")
    source = cls.__module__.replace(".", "/") + ".py"
    return (f"<!-- Generated by docs/generate.py from the docstring of mnn.{name}. "
            f"Edit the docstring, then run: {FIX} -->\n\n"
            f"# {name}\n\n"
            f"```python\nmnn.{_signature(cls)}\n```\n\n"
            f"Source: [`{source}`](../../{source})\n\n"
            f"{markdown(cls.__doc__)}")


def index_page(layers: dict) -> str:
    rows = [f"| [`{name}`]({name}.md) | {_summary(cls)} |" for name, cls in layers.items()]
    return ("<!-- Generated by docs/generate.py from mnn.layers.__all__. "
            f"Run: {FIX} -->\n\n"
            "# Layers\n\n"
            "Each page is the layer's docstring: the forward pass, its Jacobian, and the\n"
            "vector-Jacobian product that `backward` computes, with the equation numbers\n"
            "that the code's `# Eq. (n)` comments point at.\n\n"
            "| layer | what it computes |\n| --- | --- |\n" + "\n".join(rows) + "\n")


def pages() -> dict[str, str]:
    """File name -> Markdown text, for every layer in mnn.layers.__all__ and the index."""
    import mnn.layers

    layers = {name: getattr(mnn.layers, name) for name in mnn.layers.__all__}
    out = {f"{name}.md": layer_page(name, cls) for name, cls in layers.items()}
    out["README.md"] = index_page(layers)
    return out


def write(folder: Path) -> list[Path]:
    """Write every page into ``folder`` and delete pages of layers that no longer exist."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = pages()
    for stale in set(p.name for p in folder.glob("*.md")) - set(wanted):
        (folder / stale).unlink()
    for name, text in wanted.items():
        (folder / name).write_text(text, encoding="utf-8")
    return [folder / name for name in wanted]


def problems(folder: Path = OUT) -> list[str]:
    """Why ``folder`` differs from freshly generated pages (empty when it is up to date)."""
    with tempfile.TemporaryDirectory() as fresh:
        write(Path(fresh))
        new = {p.name: p.read_text(encoding="utf-8") for p in Path(fresh).glob("*.md")}
    old = {p.name: p.read_text(encoding="utf-8") for p in folder.glob("*.md")}
    where = folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder
    found = []
    for name in sorted(set(new) | set(old)):
        if name not in old:
            found.append(f"{where / name} is missing")
        elif name not in new:
            found.append(f"{where / name} belongs to no layer in mnn.layers.__all__")
        elif old[name] != new[name]:
            diff = difflib.unified_diff(old[name].splitlines(), new[name].splitlines(),
                                        f"{where / name} (on disk)", "(from the docstring)",
                                        lineterm="", n=0)
            found.append(f"{where / name} is stale:\n    " + "\n    ".join(list(diff)[:12]))
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/layers/ is stale")
    parser.add_argument("--out", type=Path, default=OUT, help="folder to write (docs/layers)")
    args = parser.parse_args(argv)
    if args.check:
        found = problems(args.out)
        for problem in found:
            print(problem, file=sys.stderr)
        if found:
            print(f"docs are out of date; regenerate them with: {FIX}", file=sys.stderr)
        return 1 if found else 0
    written = write(args.out)
    print(f"wrote {len(written)} pages to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
