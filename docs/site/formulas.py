r"""Count the formulas in the site's sources, without Sphinx: what the rendered site must show.

    python docs/site/formulas.py      # per source, then the totals

A formula is what MathJax typesets as one piece (one ``mjx-container`` in the page):

* in a docstring or a reST page: one ``.. math::`` directive (however many lines or
  equations it holds) or one ``:math:`` role; not inside a literal block (after ``::``),
  a code directive or a doctest;
* in a Markdown guide (GitHub's syntaxes, which the site's MyST settings accept): one
  fenced block whose language is ``math``, one ``$$...$$`` and one ``$...$``; not inside
  code (fenced blocks, inline code spans) and not an escaped ``\$``. GitHub's third
  form, ``$`...`$``, is refused with an error: MyST would render the backquotes. MyST's
  own forms count too: a ``{math}`` fence or role.

The docstrings counted are those of the package's public objects (no name along the
way starts with ``_``), read with ``ast`` from the files of the ``mnn`` that Python
imports, the one Sphinx documents: module, class, function and method docstrings.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]
SITE = DOCS / "site"
GENERATED = ("guides", "layers", "_build")  # pages the build writes: not sources

_LITERAL_DIRECTIVES = re.compile(r"\.\. (code-block|code|sourcecode|highlight|doctest|testcode)::")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
_DISPLAY = re.compile(r"\$\$(.+?)\$\$", re.S)
# MyST's dollarmath: no space just inside the dollars, no digit right after the closing one.
_INLINE = re.compile(r"\$(?=\S)(.+?)(?<=\S)\$(?!\d)", re.S)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def rest_formulas(text: str) -> int:
    """Formulas in reST (a docstring or a page): ``.. math::`` blocks and ``:math:`` roles."""
    count, skip_deeper_than = 0, None
    for line in inspect.cleandoc(text).splitlines():
        stripped = line.strip()
        if skip_deeper_than is not None:
            if not stripped or _indent(line) > skip_deeper_than:
                continue  # inside a literal block, a code directive or a math block
            skip_deeper_than = None
        if stripped.startswith(">>>"):
            continue
        if stripped.startswith(".. math::"):
            count += 1
            skip_deeper_than = _indent(line)
        elif _LITERAL_DIRECTIVES.match(stripped) or (
                stripped.endswith("::") and not stripped.startswith("..")):
            count += stripped.count(":math:`")
            skip_deeper_than = _indent(line)
        else:
            count += stripped.count(":math:`")
    return count


def markdown_formulas(text: str, name: str = "Markdown") -> int:
    """Formulas in GitHub Markdown: ```math fences, $$...$$ and $...$ outside code."""
    count, prose, fence = 0, [], None
    for line in re.sub(r"<!--.*?-->", "", text, flags=re.S).splitlines():
        opening = _FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)
            count += opening.group(2) in ("math", "{math}")
            prose.append("")  # a fence ends a paragraph
        elif fence is not None:
            stripped = line.strip()
            if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]):
                fence = None
        else:
            prose.append(line)
    for paragraph in "\n".join(prose).split("\n\n"):
        if "$`" in paragraph:
            raise ValueError(f"{name}: $`...`$ (GitHub's other inline math) does not render on "
                             f"the site, write $...$: {paragraph.strip()[:80]!r}")
        count += paragraph.count("{math}`")
        paragraph = _CODE_SPAN.sub(" ", paragraph).replace("\\$", " ")
        count += len(_DISPLAY.findall(paragraph))
        count += len(_INLINE.findall(_DISPLAY.sub(" ", paragraph)))
    return count


def _public_docstrings(tree: ast.Module, module: str):
    """(qualified name, docstring) of a module and its public classes, functions, methods."""
    if docstring := ast.get_docstring(tree, clean=False):
        yield module, docstring
    stack = [(node, module) for node in tree.body]
    while stack:
        node, owner = stack.pop()
        if not isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if node.name.startswith("_"):
            continue
        name = f"{owner}.{node.name}"
        if docstring := ast.get_docstring(node, clean=False):
            yield name, docstring
        if isinstance(node, ast.ClassDef):  # methods and nested classes; not nested functions
            stack += [(child, name) for child in node.body]


def package_files() -> dict[str, Path]:
    """Module name -> source file, for the modules of the mnn that Python imports: the one
    Sphinx documents (a checkout on the path, or the installed package)."""
    import mnn
    import mnn.backends

    files = {}
    for package, folder in (("mnn", Path(mnn.__file__).parent),
                            ("mnn.backends", Path(mnn.backends.__file__).parent)):
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if package == "mnn" and parts[0] == "backends":
                continue  # a checkout's symlink mnn/backends -> ../backends: counted once
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if any(part.startswith("_") for part in parts):
                continue  # private modules, and __main__
            files[".".join((package, *parts))] = path
    return files


def docstring_formulas() -> dict[str, int]:
    """Qualified name -> formulas, for every public docstring of mnn that has any."""
    found = {}
    for module, path in package_files().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for name, docstring in _public_docstrings(tree, module):
            if n := rest_formulas(docstring):
                found[name] = n
    return found


def guide_formulas() -> dict[str, int]:
    """Guide file name (docs/*.md) -> formulas."""
    return {path.name: markdown_formulas(path.read_text(encoding="utf-8"), str(path))
            for path in sorted(DOCS.glob("*.md"))}


def page_formulas() -> dict[str, int]:
    """The site's own pages (docs/site/**.md, .rst, not the generated ones) -> formulas."""
    found = {}
    for path in sorted([*SITE.rglob("*.md"), *SITE.rglob("*.rst")]):
        relative = path.relative_to(SITE)
        if relative.parts[0] in GENERATED:
            continue
        text = path.read_text(encoding="utf-8")
        found[relative.as_posix()] = (markdown_formulas(text, str(path)) if path.suffix == ".md"
                                      else rest_formulas(text))
    return found


def main() -> int:
    groups = {"docstrings": docstring_formulas(), "guides (docs/*.md)": guide_formulas(),
              "site pages (docs/site)": page_formulas()}
    for title, counts in groups.items():
        print(f"{title}: {sum(counts.values())}")
        for name, n in counts.items():
            print(f"  {n:4d}  {name}")
    print(f"total: {sum(sum(counts.values()) for counts in groups.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
