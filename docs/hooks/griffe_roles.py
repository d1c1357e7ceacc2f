"""Griffe extension: the reStructuredText in gpu_targets' numpydoc docstrings, as Markdown.

The docstrings are written for ``help()`` and numpydoc: Sphinx roles
(``:func:`generate```) and simple tables (``====  ====`` borders). mkdocstrings renders
docstrings as Markdown, where both come out as noise, so before rendering:

* a role becomes inline code of its target (``:func:`~gpu_targets.api.generate``` ->
  ```generate```), without a link: a link to an object the site does not document
  would break the strict build;
* a simple table becomes a Markdown table (a line whose first column is blank continues
  the row above).

The source docstrings are left as they are.
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj):`([~!]?)([^`]+)`")
_BORDER = re.compile(r"^(\s*)(=+)((?: +=+)+)\s*$")


def _role(match: re.Match) -> str:
    target = match.group(2)
    if match.group(1) == "~":
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


def _columns(border: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"=+", border)]


def _split(line: str, cols: list[tuple[int, int]]) -> list[str]:
    cells = []
    for k, (start, _) in enumerate(cols):
        end = cols[k + 1][0] if k + 1 < len(cols) else len(line)
        cells.append(line[start:end].strip())
    return cells


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def simple_tables_to_markdown(text: str) -> str:
    """Replace every reStructuredText simple table in ``text`` by a Markdown table."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = _BORDER.match(lines[i])
        if not m:
            out.append(lines[i])
            i += 1
            continue
        indent, cols = m.group(1), _columns(lines[i])
        borders = [i]
        j = i + 1
        while j < len(lines) and len(borders) < 3:
            if _BORDER.match(lines[j]):
                borders.append(j)
            elif not lines[j].strip():
                break
            j += 1
        if len(borders) == 2:  # a table without a header row
            body, header = lines[borders[0] + 1: borders[1]], None
        elif len(borders) == 3:
            header = [_split(line, cols) for line in lines[borders[0] + 1: borders[1]]]
            body = lines[borders[1] + 1: borders[2]]
        else:
            out.append(lines[i])
            i += 1
            continue
        rows: list[list[str]] = []
        for line in body:
            cells = _split(line, cols)
            if rows and not cells[0]:
                rows[-1] = [(a + " " + b).strip() for a, b in zip(rows[-1], cells)]
            else:
                rows.append(cells)
        if header is None:
            head = [""] * len(cols)
        else:
            head = [" ".join(parts).strip() for parts in zip(*header)]
        table = [_md_row(head), "|" + "---|" * len(cols)] + [_md_row(r) for r in rows]
        out += [""] + [indent + t for t in table] + [""]
        i = borders[-1] + 1
    return "\n".join(out)


def markdown_docstring(text: str) -> str:
    """A numpydoc docstring's roles and simple tables, as Markdown."""
    return simple_tables_to_markdown(_ROLE.sub(_role, text))


class RstToMarkdown(griffe.Extension):
    """Rewrite each docstring with :func:`markdown_docstring` as griffe loads it."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
