"""The user guide's pictures and tables, computed by gpu_targets on a tiny history.

Every value drawn or tabulated here comes out of :func:`gpu_targets.generate` run on
:data:`HISTORY` (one user, twelve transactions in one week); nothing is typed in by hand.
Which transactions belong to a window W(i) is read back from the engine too: the amounts
are replaced by distinct powers of two (row j -> 2**j), so the ``sum`` of W(i) is a
bit mask of its members (exact in float32 for up to 24 rows).

The docs hook (``gpu_targets_docs.py``) runs this module at every ``mkdocs build``, so
the pictures cannot go stale. To look at them without building the site::

    .venv/bin/python docs/hooks/figures.py /tmp/figures   # writes the SVGs and tables.md
"""

from __future__ import annotations

import io
import math
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

import gpu_targets
from gpu_targets.spec import load_config, parse_duration

#: The engine the pictures are computed with: the oracle, fast on 12 rows, no compilation.
ENGINE = "reference"

#: One user's week: (UTC time, MCC, amount); debits are negative. Input row order = list order.
HISTORY = [
    ("2024-03-04 08:10", 5411, -23.50),  # Mon, grocery
    ("2024-03-04 12:40", 5812, -14.20),  # restaurant
    ("2024-03-04 19:05", 5411, -41.80),
    ("2024-03-05 09:30", 5912, -12.90),  # Tue, pharmacy; three rows at the same second
    ("2024-03-05 09:30", 5411, -8.40),
    ("2024-03-05 09:30", 5411, -16.10),
    ("2024-03-05 13:15", 6011, -60.00),  # ATM
    ("2024-03-05 18:45", 5411, -31.20),
    ("2024-03-06 11:20", 5812, -19.70),  # Wed
    ("2024-03-06 17:50", 5411, -27.30),
    ("2024-03-07 09:05", 5912, -9.99),  # Thu
    ("2024-03-07 16:40", 5912, -6.50),
]
MCC_NAMES = {5411: "grocery", 5812: "restaurant", 5912: "pharmacy", 6011: "ATM"}

#: The transaction whose windows are drawn in the windows picture (Tue 13:15, ATM).
FOCUS = 6
#: The windows of the windows picture: (label, window).
WINDOWS = [
    ("day · expanding", {"period": "day", "mode": "expanding"}),
    ("day · full", {"period": "day", "mode": "full"}),
    ("day · next", {"period": "day", "mode": "next"}),
    ("1d · trailing", {"duration": "1d", "mode": "trailing"}),
    ("1d · forward", {"duration": "1d", "mode": "forward"}),
]
#: [v2] The windows of the second windows picture: look-back over several periods,
#: the previous period, an offset (gap) duration and windows by a number of rows.
WINDOWS_V2 = [
    ("day · previous", {"period": "day", "mode": "previous"}),
    ("3 days · expanding", {"period": "day", "mode": "expanding", "periods": 3}),
    ("1d · trailing · offset 12h", {"duration": "1d", "mode": "trailing", "offset": "12h"}),
    ("3 rows · trailing", {"rows": 3, "mode": "trailing"}),
    ("2 rows · forward · offset 1", {"rows": 2, "mode": "forward", "offset": 1}),
]
#: The windows of the ties picture, drawn over Tuesday's rows.
TIE_WINDOWS = [
    ("day · expanding", {"period": "day", "mode": "expanding"}),
    ("day · full", {"period": "day", "mode": "full"}),
    ("4h · trailing", {"duration": "4h", "mode": "trailing"}),
    ("4h · forward", {"duration": "4h", "mode": "forward"}),
]
#: Pharmacy targets of the empty-window picture and table.
PHARMACY = {"mcc": [5912], "sign": "negative", "abs": True, "window": {"period": "day", "mode": "expanding"}}

FEATURE_COLOR = "#1f6fb4"
LABEL_COLOR = "#d9641e"
_WEEK_START = pd.Timestamp("2024-03-04")  # Monday 00:00 UTC


def history() -> pd.DataFrame:
    """:data:`HISTORY` as the transactions table gpu_targets reads (user 1, UTC times)."""
    return pd.DataFrame(
        {
            "user_id": np.ones(len(HISTORY), dtype=np.int64),
            "timestamp": pd.to_datetime([t for t, _, _ in HISTORY]),
            "amount": [a for _, _, a in HISTORY],
            "mcc": np.array([m for _, m, _ in HISTORY], dtype=np.int32),
        }
    )


def _generate(frame: pd.DataFrame, targets: list[dict]) -> pd.DataFrame:
    return gpu_targets.generate(frame, {"targets": targets}, backend=ENGINE)


def members(windows: list[dict]) -> list[list[set[int]]]:
    """``out[k][i]``: the input rows in W(i) of ``windows[k]``, as gpu_targets computes it."""
    frame = history()
    n = len(frame)
    if n > 24:
        raise ValueError("the power-of-two trick is exact in float32 for at most 24 rows")
    frame["amount"] = 2.0 ** np.arange(n)
    out = _generate(frame, [{"name": f"w{k}", "agg": "sum", "window": w} for k, w in enumerate(windows)])
    result = []
    for k in range(len(windows)):
        masks = out[f"w{k}"].to_numpy().astype(np.int64)
        result.append([{j for j in range(n) if mask >> j & 1} for mask in masks])
    return result


def _count_and_spend(windows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """count and sum of |amount| of every window, ``[n_windows, n_rows]`` each."""
    targets = []
    for k, w in enumerate(windows):
        targets.append({"name": f"count{k}", "agg": "count", "window": w})
        targets.append({"name": f"spend{k}", "agg": "sum", "abs": True, "window": w})
    out = _generate(history(), targets)
    counts = np.stack([out[f"count{k}"].to_numpy() for k in range(len(windows))])
    spend = np.stack([out[f"spend{k}"].to_numpy() for k in range(len(windows))])
    return counts, spend


def _hours(frame: pd.DataFrame) -> np.ndarray:
    """Hours since Monday 00:00 UTC (the x axis of the timelines)."""
    return ((frame["timestamp"] - _WEEK_START) / pd.Timedelta(hours=1)).to_numpy()


def _tie_offsets(hours: np.ndarray, step: float = 0.16) -> np.ndarray:
    """Vertical offsets that spread rows with equal time (in input order, top to bottom)."""
    off = np.zeros(len(hours))
    for t in np.unique(hours):
        rows = np.flatnonzero(hours == t)
        if len(rows) > 1:
            off[rows] = (np.arange(len(rows))[::-1] - (len(rows) - 1) / 2) * step
    return off


def _looks_ahead(window: dict) -> bool:
    cfg = load_config({"targets": [{"name": "t", "agg": "count", "window": window}]})
    return cfg.targets[0].window.looks_ahead


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasSVG(fig)
    return fig


def _svg(fig) -> bytes:
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "gpu_targets", "svg.fonttype": "path"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


def _day_axis(ax, days: int = 5) -> None:
    ax.set_xlim(-2, 24 * days - 20)
    ax.set_xticks([24 * d for d in range(days)])
    ax.set_xticklabels([(_WEEK_START + pd.Timedelta(days=d)).strftime("%a %d %b\n00:00") for d in range(days)])
    ax.set_xticks([24 * d + h for d in range(days) for h in (6, 12, 18)], minor=True)
    for d in range(days):
        ax.axvline(24 * d, color="0.75", lw=0.8, zorder=0)
    ax.tick_params(axis="x", labelsize=8)


def _span(w: dict, t_i: float, day0: float, hours: np.ndarray, rows: list) -> Optional[tuple]:
    """The stretch of the timeline (hours) a window covers, shaded in the pictures: by the
    calendar for day periods, by the duration and offset, and between the first and the
    last member for a rows window (None when it is empty)."""
    if "period" in w:
        n = 24 * w.get("periods", 1)
        return {"expanding": (day0 + 24 - n, t_i), "full": (day0 + 24 - n, day0 + 24),
                "next": (day0 + 24, day0 + 24 + n), "previous": (day0 - n, day0)}[w["mode"]]
    if "duration" in w:
        d = parse_duration(w["duration"]) / 3.6e12  # hours
        g = parse_duration(w.get("offset", "0s"), allow_zero=True) / 3.6e12
        return (t_i - g - d, t_i - g) if w["mode"] == "trailing" else (t_i + g, t_i + g + d)
    return (hours[rows[0]], hours[rows[-1]]) if rows else None


def windows_figure(spec: list = WINDOWS) -> bytes:
    """W(i) of each window of ``spec`` for transaction :data:`FOCUS`, on the week's timeline."""
    frame = history()
    hours = _hours(frame)
    off = _tie_offsets(hours)
    windows = [w for _, w in spec]
    inside = members(windows)
    counts, spend = _count_and_spend(windows)
    t_i = hours[FOCUS]
    day0 = 24 * math.floor(t_i / 24)

    fig = _new_figure(9.2, 4.4)
    ax = fig.add_subplot()
    _day_axis(ax)
    ax.axvspan(t_i, 200, color="0.93", zorder=0)
    ax.text(t_i + 1, -0.55, "after transaction i: unknown at its time (grey)", fontsize=8, color="0.4",
            va="bottom")
    ax.axvline(t_i, color="black", lw=1, ls="--", zorder=1)
    for k, (label, w) in enumerate(spec):
        y = len(spec) - 1 - k
        color = LABEL_COLOR if _looks_ahead(w) else FEATURE_COLOR
        span = _span(w, t_i, day0, hours, sorted(inside[k][FOCUS]))
        if span is not None:
            ax.fill_between(list(span), y - 0.3, y + 0.3, color=color, alpha=0.15, lw=0, zorder=1)
        ax.scatter(hours, y + off, s=14, facecolor="white", edgecolor="0.55", lw=0.8, zorder=2)
        rows = sorted(inside[k][FOCUS])
        if rows:
            ax.scatter(hours[rows], y + off[rows], s=30, color=color, zorder=3)
        ax.scatter([t_i], [y + off[FOCUS]], s=110, facecolor="none", edgecolor="black", lw=1.2, zorder=4)
        ax.text(101, y, f"count {counts[k, FOCUS]:.0f}\nspend {spend[k, FOCUS]:.2f}", fontsize=8,
                va="center", color=color)
    ax.set_ylim(-0.65, len(spec) - 0.45)
    ax.set_yticks(range(len(spec)))
    ax.set_yticklabels([f"{lab}\n({'label' if _looks_ahead(w) else 'feature'})" for lab, w in reversed(spec)],
                       fontsize=8)
    for tick, (_, w) in zip(ax.get_yticklabels(), reversed(spec)):
        tick.set_color(LABEL_COLOR if _looks_ahead(w) else FEATURE_COLOR)
    ax.set_xlim(-2, 112)
    ts = frame["timestamp"][FOCUS].strftime("%a %H:%M")
    ax.set_title(f"The windows W(i) of transaction i = row {FOCUS} ({ts}, ringed): filled dots are its members",
                 fontsize=9)
    return _svg(fig)


def ties_figure() -> bytes:
    """Membership matrices over Tuesday's rows: who is in W(i) when times are tied."""
    frame = history()
    day = frame["timestamp"].dt.normalize() == pd.Timestamp("2024-03-05")
    rows = np.flatnonzero(day.to_numpy())
    windows = [w for _, w in TIE_WINDOWS]
    inside = members(windows)
    counts, _ = _count_and_spend(windows)
    names = [f"row {r}  {frame['timestamp'][r]:%H:%M}" for r in rows]

    fig = _new_figure(9.2, 3.0)
    axes = fig.subplots(1, len(TIE_WINDOWS), sharey=True)
    n = len(rows)
    for k, ((label, w), ax) in enumerate(zip(TIE_WINDOWS, axes)):
        color = LABEL_COLOR if _looks_ahead(w) else FEATURE_COLOR
        grid = np.array([[r_j in inside[k][r_i] for r_j in rows] for r_i in rows], dtype=float)
        ax.imshow(grid, cmap=_two_colors(color), vmin=0, vmax=1, aspect="equal")
        for a in range(n):
            for b in range(n):
                if grid[a, b]:
                    ax.text(b, a, "●", ha="center", va="center", color="white", fontsize=7)
            ax.text(n - 0.3, a, f" {counts[k, rows[a]]:.0f}", va="center", fontsize=8, color=color)
        ties = [a for a in range(n) if (frame["timestamp"][rows] == frame["timestamp"][rows[a]]).sum() > 1]
        if ties:
            lo, hi = min(ties) - 0.5, max(ties) + 0.5
            ax.add_patch(_rectangle(lo, lo, hi - lo))
        ax.set_xticks(range(n))
        ax.set_xticklabels([str(r) for r in rows], fontsize=8)
        ax.set_xlabel("member j (input row)", fontsize=8)
        ax.set_title(f"{label} ({'label' if _looks_ahead(w) else 'feature'})", fontsize=9, color=color)
        ax.set_xlim(-0.5, n + 0.4)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    axes[0].set_yticks(range(n))
    axes[0].set_yticklabels(names, fontsize=8)
    axes[0].set_ylabel("transaction i", fontsize=8)
    fig.suptitle("Tuesday: rows 3, 4, 5 share the time 09:30 (boxed); right of each grid: count of W(i)",
                 fontsize=9)
    return _svg(fig)


def _two_colors(color: str):
    from matplotlib.colors import ListedColormap

    return ListedColormap(["#f2f2f2", color])


def _rectangle(x: float, y: float, size: float):
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), size, size, fill=False, edgecolor="black", lw=1.2, ls="--")


def fill_frame() -> pd.DataFrame:
    """Pharmacy targets of every row: count and mean with ``fill: 0`` and ``fill: nan``, std."""
    out = _generate(history(), [
        {"name": "pharmacy_count_day", "agg": "count", **PHARMACY},
        {"name": "pharmacy_mean_day", "agg": "mean", **PHARMACY},
        {"name": "pharmacy_mean_day_nan", "agg": "mean", "fill": "nan", **PHARMACY},
        {"name": "pharmacy_std_day_nan", "agg": "std", "fill": "nan", **PHARMACY},
    ])
    return out


def fill_figure() -> bytes:
    """Mean pharmacy spend so far today, with ``fill: 0`` and with ``fill: nan``."""
    out = fill_frame()
    hours = _hours(out)
    off = _tie_offsets(hours, step=1.2)  # spread ties along x here: the y axis carries values
    x = hours - off
    fig = _new_figure(9.2, 3.6)
    axes = fig.subplots(2, 1, sharex=True)
    for ax, col, fill in ((axes[0], "pharmacy_mean_day", "0"), (axes[1], "pharmacy_mean_day_nan", "nan")):
        v = out[col].to_numpy(dtype=np.float64)
        empty = out["pharmacy_count_day"].to_numpy() == 0
        _day_axis(ax)
        ax.scatter(x[~empty], v[~empty], s=26, color=FEATURE_COLOR, zorder=3, label="pharmacy spend seen today")
        if fill == "0":
            ax.scatter(x[empty], v[empty], s=26, marker="s", color="0.35", zorder=3, label="empty window: fill 0")
        else:
            ax.scatter(x[empty], np.full(empty.sum(), -4.0), s=30, marker="x", color="0.35", zorder=3,
                       label="empty window: NaN (no value)")
        ax.axhline(-2, color="0.6", lw=0.6)
        ax.set_ylim(-5.5, 16)
        ax.set_yticks([-4, 0, 5, 10, 15])
        ax.set_yticklabels(["NaN", "0", "5", "10", "15"], fontsize=8)
        ax.set_ylabel("value", fontsize=8)
        ax.set_title(f"pharmacy_mean_day with fill: {fill}", fontsize=9, loc="left")
        ax.legend(fontsize=7, loc="upper left", frameon=False)
        ax.set_xlim(-2, 100)
    return _svg(fig)


def _fmt(v: float) -> str:
    return "NaN" if math.isnan(v) else f"{v:.2f}"


def history_table() -> str:
    """The tiny history as a Markdown table."""
    frame = history()
    lines = ["| row | time (UTC) | mcc | what | amount |", "|---:|---|---:|---|---:|"]
    for r in range(len(frame)):
        t = frame["timestamp"][r]
        m = int(frame["mcc"][r])
        lines.append(f"| {r} | {t:%a %Y-%m-%d %H:%M} | {m} | {MCC_NAMES[m]} | {frame['amount'][r]:.2f} |")
    return "\n".join(lines)


def fill_table() -> str:
    """:func:`fill_frame` as a Markdown table."""
    out = fill_frame()
    cols = ["pharmacy_count_day", "pharmacy_mean_day", "pharmacy_mean_day_nan", "pharmacy_std_day_nan"]
    lines = ["| row | time | mcc | amount | " + " | ".join(f"`{c}`" for c in cols) + " |",
             "|---:|---|---:|---:|" + "---:|" * len(cols)]
    for r in range(len(out)):
        cells = [f"{out[cols[0]][r]:.0f}"] + [_fmt(float(out[c][r])) for c in cols[1:]]
        lines.append(f"| {r} | {out['timestamp'][r]:%a %H:%M} | {int(out['mcc'][r])} | {out['amount'][r]:.2f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def windows_table(spec: list = WINDOWS) -> str:
    """Members and values of the windows picture, as a Markdown table."""
    windows = [w for _, w in spec]
    inside = members(windows)
    counts, spend = _count_and_spend(windows)
    lines = [f"| window | kind | W(i) for i = row {FOCUS} (input rows) | count | spend (sum of abs amount) |",
             "|---|---|---|---:|---:|"]
    for k, (label, w) in enumerate(spec):
        rows = ", ".join(str(r) for r in sorted(inside[k][FOCUS])) or "(empty)"
        kind = "label" if _looks_ahead(w) else "feature"
        lines.append(f"| `{_window_yaml(w)}` | {kind} | {rows} | {counts[k, FOCUS]:.0f} | {spend[k, FOCUS]:.2f} |")
    return "\n".join(lines)


def ties_table() -> str:
    """W(i) of Tuesday's rows for the windows of the ties picture, as a Markdown table."""
    frame = history()
    rows = np.flatnonzero((frame["timestamp"].dt.normalize() == pd.Timestamp("2024-03-05")).to_numpy())
    windows = [w for _, w in TIE_WINDOWS]
    inside = members(windows)
    head = "| i | time | " + " | ".join(f"`{_window_yaml(w)}`" for w in windows) + " |"
    lines = [head, "|---:|---|" + "---|" * len(windows)]
    for r in rows:
        cells = [", ".join(str(j) for j in sorted(inside[k][r])) or "(empty)" for k in range(len(windows))]
        lines.append(f"| {r} | {frame['timestamp'][r]:%H:%M} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _window_yaml(w: dict) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in w.items()) + "}"


#: name -> function returning SVG bytes; served as ``figures/<name>.svg``.
FIGURES = {"windows": windows_figure, "windows_v2": lambda: windows_figure(WINDOWS_V2), "ties": ties_figure,
           "fill": fill_figure}
#: name -> function returning a Markdown table; replaces ``<!-- gpu_targets:table <name> -->``.
TABLES = {"history": history_table, "windows": windows_table, "windows_v2": lambda: windows_table(WINDOWS_V2),
          "ties": ties_table, "fill": fill_table}


def main(directory: str) -> None:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for name, make in FIGURES.items():
        (out / f"{name}.svg").write_bytes(make())
    (out / "tables.md").write_text("\n\n".join(f"## {n}\n\n{make()}" for n, make in TABLES.items()) + "\n")
    print(f"wrote {len(FIGURES)} figures and tables.md to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "site-figures")
