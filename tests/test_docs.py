"""The docs site's generated parts: config reference, guide pictures and runnable examples.

The site itself is built strictly by ``make test`` (``mkdocs build --strict``); these tests
check what its hooks generate, without MkDocs.
"""

from __future__ import annotations

import doctest
import importlib
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
HOOKS = DOCS / "hooks"


@pytest.fixture(scope="module")
def hooks():
    sys.path.insert(0, str(HOOKS))
    try:
        yield importlib.import_module("config_reference"), importlib.import_module("figures")
    finally:
        sys.path.remove(str(HOOKS))


def test_config_reference_is_generated_from_the_model(hooks):
    config_reference, _ = hooks
    committed = (DOCS / "config-reference.md").read_text(encoding="utf-8")
    assert committed == config_reference.render(), (
        "docs/config-reference.md is stale: run .venv/bin/python docs/hooks/config_reference.py"
    )


def test_config_reference_lists_every_key_and_allowed_value(hooks):
    from gpu_targets.spec import AGGREGATIONS, PERIODS, Columns, Config, Target, Window

    text = (DOCS / "config-reference.md").read_text(encoding="utf-8")
    for model, prefix in ((Config, ""), (Columns, "columns."), (Target, "targets[]."), (Window, "targets[].window.")):
        for key in model.model_fields:
            assert f"| `{prefix}{key}` |" in text, key
    for value in AGGREGATIONS + PERIODS + ("expanding", "full", "next", "trailing", "forward"):
        assert f"`{value}`" in text, value


def test_a_model_key_without_a_meaning_fails_generation(hooks, monkeypatch):
    config_reference, _ = hooks
    from gpu_targets.spec import Target

    meanings = dict(config_reference.MEANINGS)
    del meanings[(Target, "fill")]
    monkeypatch.setattr(config_reference, "MEANINGS", meanings)
    with pytest.raises(RuntimeError, match=r"keys without a meaning \['Target.fill'\]"):
        config_reference.render()


def test_an_error_case_that_does_not_raise_fails_generation(hooks, monkeypatch):
    config_reference, _ = hooks
    monkeypatch.setattr(config_reference, "ERROR_CASES", [("valid", "targets: [" + config_reference._T + "]")])
    with pytest.raises(RuntimeError, match="did not raise ConfigError"):
        config_reference.render()


def test_window_members_read_back_from_the_engine(hooks):
    """The pictures' members (decoded from power-of-two sums) are SPEC.md 2.1's windows."""
    _, figures = hooks
    inside = figures.members([w for _, w in figures.WINDOWS])
    i = figures.FOCUS  # row 6, Tue 13:15; rows 3, 4, 5 at Tue 09:30, row 2 Mon 19:05
    assert [inside[k][i] for k in range(5)] == [{3, 4, 5, 6}, {3, 4, 5, 6, 7}, {8, 9}, {2, 3, 4, 5, 6}, {7, 8}]
    ties = figures.members([w for _, w in figures.TIE_WINDOWS])
    expanding, full, trailing, forward = ties
    assert [expanding[r] for r in (3, 4, 5)] == [{3}, {3, 4}, {3, 4, 5}]  # tied rows: input order
    assert [full[r] for r in (3, 4, 5)] == [{3, 4, 5, 6, 7}] * 3
    assert [trailing[r] for r in (3, 4, 5)] == [{3}, {3, 4}, {3, 4, 5}]
    assert [forward[r] for r in (3, 4, 5)] == [{6}] * 3  # strictly later: never a tied row


def test_fill_table_values(hooks):
    _, figures = hooks
    out = figures.fill_frame()
    count = out["pharmacy_count_day"].tolist()
    assert count == [0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 1, 2]
    assert out["pharmacy_mean_day"][0] == 0.0 and out["pharmacy_mean_day_nan"].isna()[0]
    assert out["pharmacy_mean_day"][11] == pytest.approx((9.99 + 6.50) / 2)
    assert out["pharmacy_std_day_nan"].isna().tolist() == [True] * 11 + [False]


def test_figures_render_and_pages_use_only_generated_figures_and_tables(hooks):
    _, figures = hooks
    for name, make in figures.FIGURES.items():
        svg = make()
        assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg, name
    for page in DOCS.glob("*.md"):
        text = page.read_text(encoding="utf-8")
        for name in re.findall(r"\]\(figures/([\w-]+)\.svg\)", text):
            assert name in figures.FIGURES, f"{page.name}: figures/{name}.svg is not generated"
        for name in re.findall(r"<!--\s*gpu_targets:table\s+([\w-]+)\s*-->", text):
            assert name in figures.TABLES, f"{page.name}: no generated table {name!r}"


def test_guide_examples_run():
    """The ``>>>`` examples of the guide give the outputs shown."""
    result = doctest.testfile(str(DOCS / "guide.md"), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_seed_project_page_examples_run():
    """The ``>>>`` example of docs/seed-project.md (SPEC v2 look-back, where, mixers) gives
    the output shown."""
    result = doctest.testfile(str(DOCS / "seed-project.md"), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_index_python_blocks_run(monkeypatch):
    monkeypatch.chdir(ROOT)  # they name configs/ relative to the repository
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / "index.md").read_text(encoding="utf-8"), re.DOTALL)
    assert blocks
    for block in blocks:
        namespace: dict = {}
        exec(compile(block, "docs/index.md", "exec"), namespace)
    assert len(namespace["out"]) == 100 * 512


def test_rst_in_docstrings_becomes_markdown():
    pytest.importorskip("griffe")
    sys.path.insert(0, str(HOOKS))
    try:
        from griffe_roles import markdown_docstring
    finally:
        sys.path.remove(str(HOOKS))
    text = """Uses :func:`~gpu_targets.api.generate` and :class:`Config`.

    ====  =====  ========
    key   dtype  meaning
    ====  =====  ========
    a     int    first
                 and more
    b     str    second
    ====  =====  ========
    """
    md = markdown_docstring(text)
    assert md.startswith("Uses `generate` and `Config`.")
    assert "    | key | dtype | meaning |" in md
    assert "    | a | int | first and more |" in md
    assert "    | b | str | second |" in md
    assert "====" not in md
