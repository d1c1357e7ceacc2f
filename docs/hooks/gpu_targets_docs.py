"""MkDocs hooks of the gpu_targets site (``hooks:`` in mkdocs.yml).

At every build:

* the guide's pictures (``figures/*.svg``) and tables are computed by gpu_targets from
  :mod:`figures` and added to the site; a page marks a table's place with
  ``<!-- gpu_targets:table NAME -->``. Nothing generated is committed, so nothing can
  go stale;
* ``docs/config-reference.md`` must equal a fresh rendering of the config model
  (:mod:`config_reference`), else the build fails naming the command that fixes it;
* the repository's README becomes the page ``readme.md``, so the site shows the
  commands without a copy to keep in step: its links into ``docs/`` are made relative;
  links to other files of the repository (``examples/pretrain.py``), which are no pages
  of the site, become the path as inline code.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

import config_reference
import figures

_LINK = re.compile(r"\[([^\]]+)\]\((?![a-z]+:|#)([^)\s]+)\)")
_TABLE = re.compile(r"<!--\s*gpu_targets:table\s+([\w-]+)\s*-->")
_ROOT = Path(__file__).resolve().parents[2]
_tables: dict[str, str] = {}


def on_pre_build(config) -> None:
    fresh = config_reference.render()
    if config_reference.PAGE.read_text(encoding="utf-8") != fresh:
        raise PluginError(
            "docs/config-reference.md differs from the config model in gpu_targets/spec.py: "
            "run .venv/bin/python docs/hooks/config_reference.py"
        )
    _tables.clear()
    _tables.update({name: make() for name, make in figures.TABLES.items()})


def on_files(files, config):
    for name, make in figures.FIGURES.items():
        files.append(File.generated(config, f"figures/{name}.svg", content=make()))
    readme = (_ROOT / "README.md").read_text(encoding="utf-8")
    files.append(File.generated(config, "readme.md", content=_LINK.sub(_readme_link, readme)))
    return files


def _readme_link(match: re.Match) -> str:
    text, target = match.groups()
    if target.startswith("docs/"):
        return f"[{text}]({target.removeprefix('docs/')})"
    code = f"`{target}`"
    return text if text == code else f"{text} ({code})"


def on_page_markdown(markdown: str, page, config, files) -> str:
    def table(match: re.Match) -> str:
        name = match.group(1)
        if name not in _tables:
            raise PluginError(f"{page.file.src_uri}: no generated table {name!r}; known: {', '.join(_tables)}")
        return _tables[name]

    return _TABLE.sub(table, markdown)
