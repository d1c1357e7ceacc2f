"""Benchmark the ``cpu`` engine against the reference engine, Polars and DuckDB.

Usage::

    python benchmarks/bench_cpu.py                      # official run: 2048 users x 4096 tx
    python benchmarks/bench_cpu.py --quick              # smoke run (~30 s), e.g. for CI
    python benchmarks/bench_cpu.py --markdown docs/benchmarks-run.md

What is measured
----------------
Data: :func:`gpu_targets.datasets.synthetic_transactions` with ``--users`` users of
``--tx-per-user`` transactions each (seed 0), once sorted by ``(user_id, timestamp)``
and once shuffled (``shuffle=True``: the same rows in a random order). Configs
(``--configs``, default all):

* ``configs/seed20.yaml``: 20 targets (22 output columns) of every aggregation and
  window kind of SPEC version 1, datetime timestamps;
* ``configs/seed_daily_5411.yaml``: one target, ``grocery_daily_cumsum`` = the daily
  expanding sum of ``amount`` at MCC 5411 (SPEC.md section 5), integer days
  (``time_unit: D``);
* ``configs/seed_v2.yaml``: 21 targets using every SPEC v2 row on the four role columns;
* ``configs/v2_median_50.yaml`` and ``configs/v2_nunique_50.yaml``: a sliding median of
  the amount and a sliding count of distinct MCCs over each user's last 50
  transactions, which DuckDB computes too.

One table per workload (config x input order x in memory / Parquet), systems as rows:

* ``cpu``: ``gpu_targets.generate(frame, config, backend="cpu")``, a pandas DataFrame in
  and the DataFrame with the float32 target columns appended out.
* ``reference``: the same call with ``backend="reference"``, which is O(n^2) per user,
  so it runs on the first ``--reference-users`` users of the sorted input only; its
  users/s and tx/s are measured on that subset and extrapolate per user (users are
  independent). Its result is checked against the ``cpu`` result for those rows.
* ``polars`` (seed_daily_5411 only): ``pl.when(mcc == 5411).then(amount).otherwise(0.0)
  .cum_sum().over(["user_id", "timestamp"])`` cast to Float32, appended with
  ``with_columns`` to a Polars DataFrame made from the pandas frame before timing. It
  relies on ``over`` keeping the frame's row order inside each group: within one
  (user, day) the SPEC order ``(time, input row)`` is the input row order, so no sort is
  needed even on shuffled input (the check below verifies it on every run).
* ``duckdb`` (seed_daily_5411, v2_median_50, v2_nunique_50): the window function of
  :data:`DUCKDB_WINDOWS` (``median(amount)`` / ``count(DISTINCT mcc)`` ``OVER (PARTITION
  BY user_id ORDER BY timestamp, row_idx ROWS BETWEEN 49 PRECEDING AND CURRENT ROW)``
  for the v2 configs), as for seed_daily_5411: ``SUM(CASE WHEN mcc = 5411 THEN amount ELSE 0 END)
  OVER (PARTITION BY user_id, timestamp ORDER BY row_idx ROWS BETWEEN UNBOUNDED
  PRECEDING AND CURRENT ROW)`` cast to FLOAT over the registered pandas frame, all
  columns ``ORDER BY row_idx`` (input row order) fetched as an Arrow table. SQL tables
  have no row order, so the frame gets an int64 ``row_idx`` column before timing.

Parquet workloads write the input to a temporary directory once (untimed; the file then
sits in the OS page cache) and time read + compute + write (zstd for every system):
``cpu`` = :func:`gpu_targets.io.read_transactions` + ``generate`` +
:func:`gpu_targets.io.write_parquet`; ``polars`` = ``pl.read_parquet`` ->
``with_columns`` -> ``write_parquet``; ``duckdb`` = ``COPY (SELECT ... FROM
read_parquet(..., file_row_number = true) ORDER BY file_row_number) TO ... (FORMAT
PARQUET)``. The written file is read back and checked.

How
---
Each system is first run once, untimed, on a small slice of the same data (its first
``WARMUP_ROWS`` rows): this excludes Numba JIT compilation / on-disk cache loading and
first-call set-up of Polars/DuckDB from the timings (the warm-up time is reported as a
separate column). Then it is run ``--repeats`` times, each call timed with
:func:`time.perf_counter` after a ``gc.collect()``; tables give the median and the
minimum, users/s and transactions/s from the median, and the speed relative to the
``cpu`` row of the same table.

Checks: every system's target columns are compared with the ``cpu`` engine's on the same
input (same rows, same order) after rounding to float32: ``|x - cpu| <= tol * max(1,
|cpu|)`` with SPEC.md's tol = 1e-5 (1e-4 for ``std``). The maximum absolute difference is
printed; a mismatch raises and the script exits with status 1.

All systems use every core they see (Numba, Polars and DuckDB thread counts are printed
in the header with the machine, the library versions and the exact command line).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd

import gpu_targets
from gpu_targets.datasets import synthetic_transactions
from gpu_targets.io import read_transactions, write_parquet
from gpu_targets.spec import Config, load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "seed20": (ROOT / "configs" / "seed20.yaml", None),  # (path, time_unit of the data)
    "seed_daily_5411": (ROOT / "configs" / "seed_daily_5411.yaml", "D"),
    "seed_v2": (ROOT / "configs" / "seed_v2.yaml", None),  # SPEC v2: 21 targets using every v2 row
    "v2_median_50": (ROOT / "configs" / "v2_median_50.yaml", None),  # also DuckDB: a sliding median
    "v2_nunique_50": (ROOT / "configs" / "v2_nunique_50.yaml", None),  # also DuckDB: a sliding distinct count
}
DAILY = "seed_daily_5411"
#: DuckDB's window function for each single-target config it computes (over each user's
#: rows ordered by (time, input row), as SPEC.md's pos).
DUCKDB_WINDOWS = {
    DAILY: "SUM(CASE WHEN mcc = 5411 THEN amount ELSE 0 END) "
           "OVER (PARTITION BY user_id, timestamp ORDER BY {row} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)",
    "v2_median_50": "median(amount) OVER (PARTITION BY user_id ORDER BY timestamp, {row} "
                    "ROWS BETWEEN 49 PRECEDING AND CURRENT ROW)",
    "v2_nunique_50": "count(DISTINCT mcc) OVER (PARTITION BY user_id ORDER BY timestamp, {row} "
                     "ROWS BETWEEN 49 PRECEDING AND CURRENT ROW)",
}
GROCERY_MCC = 5411
WARMUP_ROWS = 4096
TOLERANCE = 1e-5
STD_TOLERANCE = 1e-4
OFFICIAL_MIN_USERS = 2000


class Mismatch(AssertionError):
    """A system's targets differ from the cpu engine's beyond SPEC.md's tolerance."""


# --------------------------------------------------------------------------- systems
#
# A system factory does its untimed preparation (format conversion, registration) and
# returns the zero-argument callable that is timed. `targets_of` turns whatever that
# callable returns into {column: float32 array in input row order}.


def cpu_memory(frame: pd.DataFrame, config: Config, backend: str = "cpu") -> Callable[[], pd.DataFrame]:
    return lambda: gpu_targets.generate(frame, config, backend=backend)


def _polars_expr(name: str):
    import polars as pl

    grocery = pl.when(pl.col("mcc") == GROCERY_MCC).then(pl.col("amount")).otherwise(0.0)
    return grocery.cum_sum().over(["user_id", "timestamp"]).cast(pl.Float32).alias(name)


def polars_memory(frame: pd.DataFrame, name: str) -> Callable[[], Any]:
    import polars as pl

    data = pl.from_pandas(frame)
    expr = _polars_expr(name)
    return lambda: data.with_columns(expr)


def _duckdb_sql(name: str, source: str, row: str, key: str = "seed_daily_5411") -> str:
    window = DUCKDB_WINDOWS[key].format(row=row)
    return f"SELECT * EXCLUDE ({row}), CAST({window} AS FLOAT) AS {name} FROM {source} ORDER BY {row}"


def duckdb_memory(frame: pd.DataFrame, name: str, key: str = "seed_daily_5411") -> Callable[[], Any]:
    import duckdb

    con = duckdb.connect()
    con.register("tx", frame.assign(row_idx=np.arange(len(frame), dtype=np.int64)))
    sql = _duckdb_sql(name, "tx", "row_idx", key)
    return lambda: con.sql(sql).to_arrow_table()


def _output_path(src: Path, system: str) -> Path:
    return src.with_name(f"{src.stem}-{system}-out.parquet")


def cpu_parquet(src: Path, config: Config) -> Callable[[], Path]:
    dst = _output_path(src, "cpu")

    def run() -> Path:
        write_parquet(gpu_targets.generate(read_transactions(src), config, backend="cpu"), dst)
        return dst

    return run


def polars_parquet(src: Path, name: str) -> Callable[[], Path]:
    import polars as pl

    dst, expr = _output_path(src, "polars"), _polars_expr(name)

    def run() -> Path:
        pl.read_parquet(src).with_columns(expr).write_parquet(dst, compression="zstd")
        return dst

    return run


def duckdb_parquet(src: Path, name: str) -> Callable[[], Path]:
    import duckdb

    con = duckdb.connect()
    source = f"read_parquet('{src}', file_row_number = true)"
    dst = _output_path(src, "duckdb")
    sql = f"COPY ({_duckdb_sql(name, source, 'file_row_number')}) TO '{dst}' (FORMAT PARQUET, COMPRESSION ZSTD)"

    def run() -> Path:
        con.execute(sql)
        return dst

    return run


def targets_of(result: Any, names: list[str]) -> dict[str, np.ndarray]:
    """The target columns of a system's result (DataFrame, Arrow table, Parquet path)."""
    if isinstance(result, Path):
        import pyarrow.parquet as pq

        result = pq.read_table(result, columns=names)
    if isinstance(result, pd.DataFrame):
        return {n: result[n].to_numpy() for n in names}
    return {n: np.asarray(result[n].to_numpy()) for n in names}  # polars / pyarrow


# --------------------------------------------------------------------------- timing and checks


@dataclass
class Row:
    """One system's measurements in one workload."""

    system: str
    users: int
    rows: int
    warmup_s: Optional[float]
    seconds: list[float]
    measured_on: str
    check: str = ""

    @property
    def median_s(self) -> float:
        return median(self.seconds)


def measure(run: Callable[[], Any], repeats: int, warmup: Optional[Callable[[], Any]] = None):
    """Time ``run()`` ``repeats`` times after one untimed ``warmup()``.

    Returns (warm-up seconds or None, list of seconds, result of the last run).
    """
    warmup_s = None
    if warmup is not None:
        t0 = time.perf_counter()
        warmup()
        warmup_s = time.perf_counter() - t0
    seconds, result = [], None
    for _ in range(repeats):
        result = None  # free the previous result before the next run
        gc.collect()
        t0 = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - t0)
    return warmup_s, seconds, result


def tolerances(config: Config) -> dict[str, float]:
    return {
        col: STD_TOLERANCE if getattr(t, "agg", None) == "std" else TOLERANCE
        for t in config.targets
        for col in t.output_columns
    }


def check(system: str, got: dict[str, np.ndarray], expected: dict[str, np.ndarray], tol: dict[str, float]) -> str:
    """Compare float32-rounded targets column by column; raise :class:`Mismatch` if off.

    Returns a one-line summary: the largest absolute difference over the columns.
    """
    worst_abs, worst_col = 0.0, None
    for col, ref in expected.items():
        ref = ref.astype(np.float32).astype(np.float64)
        x = np.asarray(got[col]).astype(np.float32).astype(np.float64)
        if x.shape != ref.shape:
            raise Mismatch(f"{system}: column {col} has {x.shape[0]} rows, the cpu engine {ref.shape[0]}")
        both_nan = np.isnan(x) & np.isnan(ref)
        diff = np.where(both_nan, 0.0, np.abs(x - ref))
        with np.errstate(invalid="ignore"):  # equal infinities: equal; NaN vs number: bad
            bad = ~(both_nan | (x == ref) | (diff <= tol[col] * np.maximum(1.0, np.abs(ref))))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise Mismatch(
                f"{system}: column {col} differs from the cpu engine at {int(bad.sum())} rows; "
                f"first at input row {i}: {x[i]:.9g} vs {ref[i]:.9g} (tolerance {tol[col]:g} * max(1, |cpu|))"
            )
        m = float(diff.max()) if diff.size else 0.0
        if worst_col is None or m > worst_abs:
            worst_abs, worst_col = m, col
    return f"ok: max |diff| {worst_abs:.3g} ({worst_col})"


# --------------------------------------------------------------------------- workloads


@dataclass
class Table:
    title: str
    data_note: str
    rows: list[Row] = field(default_factory=list)


@dataclass
class Workload:
    """What every system of one table shares: the data's size, targets and the checks."""

    users: int
    n: int
    names: list[str]
    tol: dict[str, float]
    repeats: int
    expected: Optional[dict[str, np.ndarray]] = None  # the cpu engine's targets


def run_system(table: Table, wl: Workload, system: str, make: Callable[[Any], Callable[[], Any]],
               data: Any, warm_data: Any, users: Optional[int] = None, rows: Optional[int] = None,
               expected: Optional[dict[str, np.ndarray]] = None) -> dict[str, np.ndarray]:
    """Build, warm up (on ``warm_data``), time (on ``data``) and check one system.

    ``users``/``rows`` default to the whole workload's, ``expected`` to ``wl.expected``
    (``None`` there too: this system is the baseline). Appends a row to ``table`` and
    returns the system's targets.
    """
    users, rows = users or wl.users, rows or wl.n
    expected = wl.expected if expected is None else expected
    print(f"  {system} ...", end="", flush=True)
    warmup_s, seconds, result = measure(make(data), wl.repeats, make(warm_data))
    got = targets_of(result, wl.names)
    if isinstance(result, Path):
        result.unlink()
    if users == wl.users:
        measured_on = f"all {users:,} users"
    else:
        measured_on = f"{users:,}-user subset ({rows:,} tx), rate extrapolated"
    check_text = "baseline" if expected is None else check(system, got, expected, wl.tol)
    row = Row(system, users, rows, warmup_s, seconds, measured_on, check_text)
    table.rows.append(row)
    print(f" median {row.median_s:.3f} s  [{row.check}]", flush=True)
    return got


def grocery_ties(frame: pd.DataFrame) -> int:
    """Rows at MCC 5411 preceded by another 5411 row of the same user and day."""
    g = frame.loc[frame["mcc"] == GROCERY_MCC, ["user_id", "timestamp"]]
    return int(g.duplicated().sum())


def check_daily_config(config: Config, path: Path) -> None:
    """Polars and DuckDB hard-code the seed_daily_5411 target: refuse a changed config."""
    t = config.targets[0] if len(config.targets) == 1 else None
    if t is None or (t.agg, t.mcc_codes, t.sign, t.abs, t.window.period, t.window.mode) != (
        "sum", (GROCERY_MCC,), "any", False, "day", "expanding"
    ):
        raise SystemExit(f"{path}: Polars/DuckDB here compute only a daily expanding sum at MCC {GROCERY_MCC}")


def memory_table(key: str, config: Config, frame: pd.DataFrame, wl: Workload, title: str, note: str,
                 reference_users: int) -> Table:
    """cpu, reference (on a subset of users, sorted input only), Polars, DuckDB in memory.

    Sets ``wl.expected`` to the cpu engine's targets.
    """
    table = Table(title, note)
    print(f"\n{title}: {note}", flush=True)
    warm = frame.iloc[:WARMUP_ROWS]
    wl.expected = run_system(table, wl, "cpu", lambda d: cpu_memory(d, config), frame, warm)
    user_ids = frame["user_id"].to_numpy()
    if reference_users > 0 and np.all(user_ids[:-1] <= user_ids[1:]):  # sorted input only
        k = min(reference_users, wl.users)
        stop = int(np.searchsorted(user_ids, user_ids[0] + k))  # the first k users
        run_system(table, wl, "reference", lambda d: cpu_memory(d, config, backend="reference"),
                   frame.iloc[:stop], warm.iloc[:256], users=k, rows=stop,
                   expected={c: v[:stop] for c, v in wl.expected.items()})
    if key == DAILY:
        name = wl.names[0]
        run_system(table, wl, "polars", lambda d: polars_memory(d, name), frame, warm)
    if key in DUCKDB_WINDOWS:
        name = wl.names[0]
        run_system(table, wl, "duckdb", lambda d: duckdb_memory(d, name, key), frame, warm)
    return table


def parquet_table(key: str, config: Config, frame: pd.DataFrame, wl: Workload, title: str, note: str,
                  tmp: Path) -> Table:
    """Parquet file -> targets -> Parquet file for cpu, Polars, DuckDB (checked vs ``wl.expected``)."""
    src, warm_src = tmp / f"{key}.parquet", tmp / f"{key}-warm.parquet"
    write_parquet(frame, src)
    write_parquet(frame.iloc[:WARMUP_ROWS], warm_src)
    table = Table(title, f"{note}; input file {src.stat().st_size / 2**20:,.1f} MiB")
    print(f"\n{title}: {table.data_note}", flush=True)
    name = wl.names[0]
    systems = {"cpu": lambda s: cpu_parquet(s, config)}
    if key == DAILY:
        systems.update(polars=lambda s: polars_parquet(s, name), duckdb=lambda s: duckdb_parquet(s, name))
    for system, make in systems.items():
        run_system(table, wl, system, make, src, warm_src)
    src.unlink()
    warm_src.unlink()
    return table


def bench_config(key: str, args: argparse.Namespace, tmp: Path) -> list[Table]:
    """All tables of one config: in memory (sorted, unsorted), then Parquet (same)."""
    path, time_unit = CONFIGS[key]
    config = load_config(path)
    if key == DAILY:
        check_daily_config(config, path)
    names = list(config.output_columns)
    tol = tolerances(config)
    memory, parquet = [], []
    for order in ("sorted", "unsorted"):
        frame = synthetic_transactions(args.users, args.tx_per_user, seed=0, time_unit=time_unit,
                                       shuffle=order == "unsorted")
        wl = Workload(args.users, len(frame), names, tol, args.repeats)
        note = f"{wl.users:,} users x {args.tx_per_user:,} tx = {wl.n:,} rows, {order}"
        if key == DAILY:
            note += f"; {grocery_ties(frame):,} MCC-5411 rows share their (user, day) with an earlier one"
        cols = f"{len(names)} output column{'s' if len(names) > 1 else ''}"
        memory.append(memory_table(key, config, frame, wl, f"{key} ({cols}), {order} input, in memory", note,
                                   args.reference_users))
        if not args.no_parquet:
            parquet.append(parquet_table(key, config, frame, wl, f"{key} ({cols}), {order} input, "
                                         "Parquet read + compute + write", note, tmp))
    return memory + parquet


# --------------------------------------------------------------------------- report


def machine_info() -> list[tuple[str, str]]:
    cpu = platform.processor() or platform.machine()
    ram = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
        with open("/proc/meminfo") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal"))
        ram = f"{kib / 2**20:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return [
        ("machine", f"{cpu}; {os.cpu_count()} logical cores ({usable} usable); RAM {ram}; {platform.platform()}"),
        ("load average at start (1, 5, 15 min)", load),
    ]


def versions() -> list[tuple[str, str]]:
    import duckdb
    import numba
    import polars as pl
    import pyarrow

    def git(*cmd: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *cmd], capture_output=True, text=True, check=True).stdout.strip()

    try:
        rev = f"git {git('rev-parse', '--short', 'HEAD')}"
        if git("status", "--porcelain", "--", "gpu_targets"):
            rev += " + uncommitted changes under gpu_targets/"
    except (OSError, subprocess.CalledProcessError):
        rev = "git revision unknown"
    con = duckdb.connect()
    duck_threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    return [
        ("versions", f"python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}, "
                     f"pyarrow {pyarrow.__version__}, numba {numba.__version__}, polars {pl.__version__}, "
                     f"duckdb {duckdb.__version__}, gpu_targets {gpu_targets.__version__} ({rev})"),
        ("threads", f"numba {numba.get_num_threads()}, polars {pl.thread_pool_size()}, duckdb {duck_threads}"),
    ]


HEADERS = ["system", "measured on", "warm-up s", "median s", "min s", "users/s", "tx/s", "vs cpu", "check"]


def table_cells(table: Table) -> list[list[str]]:
    cpu = next((r for r in table.rows if r.system == "cpu"), None)
    cells = []
    for r in table.rows:
        tx_rate = r.rows / r.median_s
        rel = f"{tx_rate / (cpu.rows / cpu.median_s):.3g}x" if cpu is not None else ""
        cells.append([
            r.system,
            r.measured_on,
            "" if r.warmup_s is None else f"{r.warmup_s:.3f}",
            f"{r.median_s:.3f}",
            f"{min(r.seconds):.3f}",
            f"{r.users / r.median_s:,.1f}",
            f"{tx_rate:,.0f}",
            rel,
            r.check,
        ])
    return cells


def render_text(header: list[tuple[str, str]], tables: list[Table], footer: list[str]) -> str:
    lines = [f"{k}: {v}" for k, v in header]
    for t in tables:
        cells = table_cells(t)
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(HEADERS)]
        fmt = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
        lines += ["", f"== {t.title}", f"   {t.data_note}", fmt(HEADERS), fmt(["-" * w for w in widths])]
        lines += [fmt(c) for c in cells]
    lines += [""] + footer
    return "\n".join(lines)


def render_markdown(header: list[tuple[str, str]], tables: list[Table], footer: list[str]) -> str:
    lines = ["## CPU benchmark", ""] + [f"- **{k}**: " + (f"`{v}`" if k == "command" else v) for k, v in header]
    for t in tables:
        lines += ["", f"### {t.title}", "", t.data_note, ""]
        lines += ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in c) + " |" for c in table_cells(t)]
    lines += [""] + [f"- {f}" for f in footer]
    return "\n".join(lines) + "\n"


FOOTER = [
    "Times in seconds (time.perf_counter), median and min over the repeats; users/s and tx/s from the median.",
    "warm-up s: one untimed run on the first 4,096 rows (256 for reference) before timing: "
    "Numba compilation or cache loading and library set-up are excluded from the timings "
    "(Parquet tables: the same pipeline on a 4,096-row file).",
    "reference: O(n^2) per user, timed on a subset of users; its users/s and tx/s extrapolate per user.",
    "vs cpu: transactions/s relative to the cpu row of the same table (>1 = faster than cpu).",
    "check: targets compared with the cpu engine's on the same input after float32 rounding, "
    "|x - cpu| <= 1e-5 * max(1, |cpu|) (1e-4 for std); a mismatch aborts the run.",
    "Polars computes only grocery_daily_cumsum (seed_daily_5411); DuckDB that and the sliding median "
    "(v2_median_50) and distinct count (v2_nunique_50) over each user's last 50 transactions; all systems "
    "produce the input columns plus float32 targets in input row order; Parquet outputs are zstd-compressed.",
]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Time the gpu_targets cpu engine against the reference engine, Polars and DuckDB "
        "(in memory and Parquet to Parquet) on synthetic transactions, and check that they agree.",
        epilog="See the module docstring for what is measured and how.",
    )
    p.add_argument("--users", type=int,
                   help=f"number of users (official run: >= {OFFICIAL_MIN_USERS}; default 2048, --quick 50)")
    p.add_argument("--tx-per-user", type=int, default=4096, help="transactions per user (default 4096)")
    p.add_argument("--reference-users", type=int,
                   help="users timed with the O(n^2) reference engine (default 8, --quick 2; 0 skips it)")
    p.add_argument("--repeats", type=int, help="timed runs per system (default 5, --quick 1)")
    p.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS),
                   help="configs to run (default: all)")
    p.add_argument("--no-parquet", action="store_true", help="skip the Parquet read + compute + write workloads")
    p.add_argument("--quick", action="store_true",
                   help="tiny smoke run (50 users, 1 repeat, 2 reference users), ~30 s")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="also write the tables as Markdown to FILE")
    p.add_argument("--tmpdir", type=Path,
                   help="directory for the temporary Parquet files (default: the system temp dir)")
    args = p.parse_args(argv)
    defaults = (50, 1, 2) if args.quick else (2048, 5, 8)
    for attr, default in zip(("users", "repeats", "reference_users"), defaults):
        if getattr(args, attr) is None:
            setattr(args, attr, default)
    if args.users < 1 or args.tx_per_user < 1 or args.repeats < 1 or args.reference_users < 0:
        p.error("--users, --tx-per-user and --repeats must be >= 1, --reference-users >= 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    header = [("command", shlex.join([sys.executable, *(sys.argv if argv is None else [sys.argv[0], *argv])]))]
    header += machine_info() + versions()
    header.append(("data", f"synthetic_transactions({args.users}, {args.tx_per_user}, seed=0); "
                           f"{args.repeats} timed repeat{'s' if args.repeats > 1 else ''} per system"))
    if args.users < OFFICIAL_MIN_USERS:
        header.append(("NOTE", f"not an official run: --users {args.users} < {OFFICIAL_MIN_USERS}"))
    print("\n".join(f"{k}: {v}" for k, v in header), flush=True)
    tables: list[Table] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench_cpu-", dir=args.tmpdir) as tmp:
            for key in args.configs:
                tables += bench_config(key, args, Path(tmp))
    except Mismatch as err:
        print(f"\nFAILED CHECK: {err}", file=sys.stderr, flush=True)
        return 1
    print("\n" + render_text(header, tables, FOOTER))
    if args.markdown is not None:
        args.markdown.write_text(render_markdown(header, tables, FOOTER), encoding="utf-8")
        print(f"\nMarkdown written to {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
