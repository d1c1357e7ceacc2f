"""Summaries of target columns: what ``gpu-targets describe`` prints and draws.

:func:`target_summary` (the table: target rate, mean, std, quantiles per target column),
:func:`fill_warnings` (targets whose empty-window value reads as a real value),
:func:`histogram_figure` (one histogram per column, needs matplotlib) and
:func:`write_html` (one self-contained report). The CLI (:mod:`.cli`) and notebooks call
these; nothing here prints.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from .io import replacing
from .spec import Config, Target, load_config
from .transactions import DataError

__all__ = ["target_summary", "fill_warnings", "histogram_figure", "write_html", "summary_table",
           "described_columns", "target_roles", "empty_value", "time_columns"]

_EMPTY_IS_ZERO = ("count", "sum", "any", "nunique")
_QUANTILES = (0.05, 0.25, 0.50, 0.75, 0.95)


def empty_value(target: Target) -> float:
    """The value of an empty window (SPEC.md 2.2): 0 for count/sum/any, else ``fill``."""
    return 0.0 if getattr(target, "agg", None) in _EMPTY_IS_ZERO else float(target.fill)


def target_summary(frame, config=None):
    """Target rate and distribution of each target column, as ``gpu-targets describe`` prints.

    Parameters
    ----------
    frame : pandas.DataFrame
        An output of :func:`gpu_targets.generate` (any frame holding the target columns).
    config : Config, dict or path, optional
        The config that made ``frame``: its output columns are described, each with its
        target's empty-window value (0 for ``count``/``sum``/``any``, else ``fill``).
        Default: every ``float32`` column, with 0 as the empty-window value.

    Returns
    -------
    pandas.DataFrame
        One row per target column: ``column``; ``rate``, the share of rows whose window
        is not empty (value neither NaN nor the empty-window value); ``mean``, ``std``
        (ddof 1), ``min``, the 5/25/50/75/95% quantiles and ``max`` of the non-NaN values.

    Raises
    ------
    ConfigError
        Invalid ``config``.
    DataError
        A target column of ``config`` is missing; without ``config``, no float32 column.

    Examples
    --------
    >>> import pandas as pd
    >>> from gpu_targets import generate
    >>> tx = pd.DataFrame({"user_id": [1, 1, 2], "timestamp": [0, 1, 0],
    ...                    "amount": [5.0, 7.0, 1.0], "mcc": [5411, 5411, 4814]})
    >>> cfg = {"time_unit": "D", "targets": [{"name": "grocery_sum_next_day", "agg": "sum",
    ...        "mcc": [5411], "window": {"period": "day", "mode": "next"}}]}
    >>> target_summary(generate(tx, cfg, backend="cpu"), cfg)["rate"].round(3).tolist()
    [0.333]
    """
    cfg = load_config(config) if config is not None else None
    columns, empty = described_columns(frame, cfg, "the frame", "the config")
    return summary_table(frame, columns, empty, target_roles(cfg), time_columns(cfg))


def target_roles(cfg: Optional[Config]) -> Optional[dict[str, str]]:
    """``label`` for columns whose window looks ahead (next/full/forward), else ``feature``."""
    if cfg is None:
        return None
    return {c: ("label" if label else "feature") for c, label in zip(cfg.output_columns, cfg.label_flags)}


_FILL_CHECKED = ("min", "max", "mean")


def fill_warnings(frame, config) -> list[str]:
    """Targets whose empty-window value cannot be told apart from a real value.

    For each ``min``/``max``/``mean`` target with a non-NaN ``fill``: a warning when the
    fill lies inside the range ``[min, max]`` of the column's other values, i.e. an
    empty window reads like a real aggregate (``max`` of debits that are negative,
    filled with 0, mixed with real zero-or-positive values...). ``fill: .nan`` keeps
    empty windows apart. Returns one line per such column, naming the target.
    """
    import numpy as np

    cfg = load_config(config)
    lines = []
    for t in cfg.aggregated:
        if t.agg not in _FILL_CHECKED or math.isnan(float(t.fill)):
            continue
        for c in t.output_columns:
            if c not in frame.columns:
                continue
            v = frame[c].to_numpy(dtype=np.float64, na_value=np.nan)
            real = v[~np.isnan(v) & (v != t.fill)]
            if real.size and real.min() <= t.fill <= real.max():
                lines.append(f"target {t.name!r} ({t.agg}): its fill {t.fill:g} lies inside its values' range "
                             f"[{real.min():.4g}, {real.max():.4g}], so an empty window reads as a real value; "
                             "set fill: .nan (or a value outside the range)")
    return lines


def described_columns(frame, cfg: Optional[Config], frame_name: str, config_name: str):
    """The target columns to describe and each one's empty-window value (DataError if none)."""
    import numpy as np

    if cfg is not None:
        columns = cfg.output_columns
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataError(f"{frame_name} has no column {missing[0]!r}, a target of {config_name}")
        return columns, {c: empty_value(t) for t in cfg.targets for c in t.output_columns}
    columns = [c for c in frame.columns if frame[c].dtype == np.float32]
    if not columns:
        raise DataError(f"{frame_name} has no float32 (target) columns")
    return columns, dict.fromkeys(columns, 0.0)


def time_columns(cfg: Optional[Config]) -> set:
    """[v2] Columns of ``time_to_next``/``time_since_last`` targets (seconds; NaN: censored,
    no event in the window)."""
    if cfg is None:
        return set()
    return {c for t in cfg.aggregated if t.agg in ("time_to_next", "time_since_last") for c in t.output_columns}


def summary_table(frame, columns: list[str], empty: dict[str, float], roles: Optional[dict[str, str]] = None,
                  hours: frozenset = frozenset()):
    """One row per target column: target rate (share of non-empty windows) and quantiles;
    with ``roles``, a ``role`` column (label or feature) after ``column``. Columns in
    ``hours`` (times in seconds: :func:`time_columns`) are described in hours, named
    ``<column> [h]``; their rate is the share of rows with an event (NaN = censored)."""
    import numpy as np
    import pandas as pd

    rows = []
    for c in columns:
        v = frame[c].to_numpy(dtype=np.float64, na_value=np.nan)
        if c in hours:
            v = v / 3600.0
        known = v[~np.isnan(v)]
        e = empty[c] / 3600.0 if c in hours else empty[c]
        nonempty = ~np.isnan(v) if math.isnan(e) else (~np.isnan(v) & (v != e))
        row = {"column": f"{c} [h]" if c in hours else c, "rate": float(nonempty.mean()) if len(v) else math.nan}
        if roles is not None:
            row["role"] = roles[c]
        if known.size:
            q = np.quantile(known, _QUANTILES)
            row.update(mean=known.mean(), std=known.std(ddof=1) if known.size > 1 else math.nan, min=known.min())
            row.update({f"{round(p * 100)}%": x for p, x in zip(_QUANTILES, q)})
            row["max"] = known.max()
        rows.append(row)
    stats = ["mean", "std", "min"] + [f"{round(p * 100)}%" for p in _QUANTILES] + ["max"]
    return pd.DataFrame(rows, columns=["column"] + (["role"] if roles is not None else []) + ["rate"] + stats)


_MONEY_AGGS = ("sum", "mean", "min", "max", "std", "topk")


def histogram_figure(frame, columns: list[str], empty: dict[str, float], rates: dict[str, float],
                      roles: Optional[dict[str, str]], aggs: dict[str, str]):
    """A matplotlib Figure: one panel per target column.

    Non-empty values only (empty windows are counted apart, in the title, as the target
    rate); x is the target's value (symlog for money aggregations whose values span more
    than two decades or change sign), y the number of rows; a binary target (``any``, or
    values 0/1 only) is a bar of 0 and 1 over every row; the title says label or feature.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("pip install 'gpu_targets[plot]'") from None
    import numpy as np

    ncols = min(4, len(columns))
    nrows = math.ceil(len(columns) / ncols)
    fig = Figure(figsize=(4 * ncols, 3.2 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    for k, c in enumerate(columns):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        raw = frame[c].to_numpy(dtype=np.float64, na_value=np.nan)
        e = empty[c]
        v = raw[~np.isnan(raw)] if math.isnan(e) else raw[~np.isnan(raw) & (raw != e)]
        role = f" ({roles[c]})" if roles is not None else ""
        n_empty = raw.size - v.size
        known = raw[~np.isnan(raw)]
        # any, or a count/unknown column holding only 0 and 1 (and not only empty windows)
        binary = known.size > 0 and (aggs.get(c) == "any" or (
            aggs.get(c, "count") == "count" and v.size > 0 and np.isin(known, (0.0, 1.0)).all()))
        if binary:
            counts = [int((known == 0).sum()), int((known == 1).sum())]
            ax.bar(["0", "1"], counts, color=["#999999", "#1f77b4"])
            ax.set_xlabel("value")
        elif v.size:
            lo, hi = np.quantile(v, (0.005, 0.995))  # heavy tails would squash the bulk into one bar
            money = aggs.get(c, "sum") in _MONEY_AGGS
            wide = lo < 0 < hi or (lo * hi > 0 and max(abs(lo), abs(hi)) > 100 * min(abs(lo), abs(hi)))
            if money and wide:
                nonzero = np.abs(v[v != 0])
                linthresh = max(float(np.quantile(nonzero, 0.05)) if nonzero.size else 1.0, 1e-6)
                # bins evenly spaced in asinh(x / linthresh), which is what a symlog axis shows
                edges = np.sinh(np.linspace(np.arcsinh(lo / linthresh), np.arcsinh(hi / linthresh), 51)) * linthresh
                ax.hist(np.clip(v, lo, hi), bins=edges)
                ax.set_xscale("symlog", linthresh=linthresh)
                ax.set_xlabel("value (symlog; 0.5-99.5% range)")
            else:
                ax.hist(v, bins=50, range=(lo, hi) if hi > lo else None)
                ax.set_xlabel("value (0.5-99.5% range)")
        else:
            ax.text(0.5, 0.5, "no non-empty windows", ha="center", va="center", transform=ax.transAxes)
        ax.set_ylabel("rows")
        ax.set_title(f"{c}{role}\nrate {rates[c]:.1%}; {n_empty:,} empty windows not shown"
                     if not binary else f"{c}{role}\nrate {rates[c]:.1%} (share of 1)", fontsize=9)
        ax.tick_params(labelsize=7)
    return fig


def write_html(path: Path, title: str, table, fig, warnings: list[str]) -> None:
    """One self-contained HTML file: the summary table, warnings and the plots inline."""
    import base64
    import html
    import io

    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    image = base64.b64encode(png.getvalue()).decode("ascii")
    items = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
    body = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:2em} table{border-collapse:collapse;font-size:12px}"
            "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>"
            "<p>rate: share of rows whose window is not empty; statistics over the non-NaN values.</p>"
            f"{table.to_html(index=False, float_format=lambda x: f'{x:.4g}')}"
            + (f"<h2>Warnings</h2><ul>{items}</ul>" if warnings else "")
            + f"<h2>Distributions</h2><img alt='histograms' src='data:image/png;base64,{image}'></body></html>")
    with replacing(path) as tmp:
        Path(tmp).write_text(body, encoding="utf-8")
