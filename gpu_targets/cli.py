"""The ``gpu-targets`` command: parses arguments, calls the library, prints.

Commands::

    gpu-targets generate INPUT --config C --output O   # targets for a transactions file
    gpu-targets validate CONFIG                        # check a config, list its columns
    gpu-targets demo                                   # embedded synthetic data, default config
    gpu-targets describe OUTPUT [--config C] [--plot F.png]   # target rates and quantiles

A user error (bad config, bad data, missing file, bad option) ends the command with exit
code 2 and one line ``error: ...`` on stderr, and leaves no output file behind: outputs are
written to a temporary name and renamed when complete.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import click
import pyarrow as pa

from . import engines
from .io import (check_csv_writable, check_output_path, output_format, read_table, read_transactions, replacing,
                 write_output)
from .spec import FORMATS, Config, ConfigError, Target, load_config
from .transactions import DataError

__all__ = ["main", "target_summary"]

BACKENDS = ("auto", "reference", "cpu", "cuda")
_EMPTY_IS_ZERO = ("count", "sum", "any")
_QUANTILES = (0.05, 0.25, 0.50, 0.75, 0.95)

#: ``gpu-targets`` with no command shows the help (click >= 8.2 raises this; older ones exit 0).
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())
#: Errors a user can fix; reported as one line with exit code 2.
_USER_ERRORS = (ConfigError, DataError, ValueError, OSError, pa.ArrowException)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


#: Longest error line printed (a message quoting a huge value is cut there).
_MAX_ERROR = 500
#: Most problems of one config printed, one line each.
_MAX_PROBLEMS = 20


def _fail(message, code: int) -> None:
    """Print ``error: <message>`` on one line (a config with several problems: one line
    each) and exit with ``code``."""
    problems = getattr(message, "problems", None)
    lines = [str(p) for p in problems] if isinstance(problems, list) and len(problems) > 1 else [str(message)]
    if len(lines) > _MAX_PROBLEMS:
        lines = lines[:_MAX_PROBLEMS] + [f"... and {len(lines) - _MAX_PROBLEMS} more problems"]
    for line in lines:
        line = _one_line(line) or type(message).__name__
        if len(line) > _MAX_ERROR:
            line = line[:_MAX_ERROR] + f"... ({len(line):,} characters)"
        click.echo(f"error: {line}", err=True)
    sys.exit(code)


class _Terminated(BaseException):
    """SIGTERM or SIGHUP (``docker stop``, a closed terminal), raised where the program is,
    so that every ``finally``/``except BaseException`` (temporary outputs) runs as on Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum, frame):
    raise _Terminated(signum)


class _Command(click.Group):
    """A group whose errors are one line on stderr (no usage block, no traceback)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for name in ("SIGTERM", "SIGHUP"):  # no SIGHUP on Windows
                sig = getattr(signal, name, None)
                if sig is not None and signal.getsignal(sig) is signal.SIG_DFL:  # not under nohup (SIG_IGN)
                    previous[sig] = signal.signal(sig, _raise_terminated)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _Terminated as err:
            _fail(f"terminated by {signal.Signals(err.signum).name}; nothing was written", 128 + err.signum)
        except click.Abort:
            _fail("interrupted", 130)
        except _NO_ARGS_IS_HELP as err:
            err.show()
            sys.exit(err.exit_code)
        except click.UsageError as err:
            hint = f" (see '{err.ctx.command_path} --help')" if err.ctx is not None else ""
            _fail(_one_line(err.format_message()) + hint, 2)
        except click.ClickException as err:
            _fail(_one_line(err.format_message()), err.exit_code)
        except _USER_ERRORS as err:
            _fail(err, 2)
        except ImportError as err:  # an unusable backend: no GPU, or a package missing (the message names the fix)
            _fail(_one_line(err) or type(err).__name__, 2)
        except MemoryError as err:  # workers paused for good (distributed): one line
            _fail(_one_line(err) or "out of memory", 1)
        finally:
            for sig, handler in previous.items():  # leave a host process (tests, notebooks) as it was
                signal.signal(sig, handler)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=_Command, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="gpu_targets")
def main() -> None:
    """Synthetic targets (windowed, MCC-filtered per-user aggregates) from bank transactions.

    See SPEC.md for what each target means.
    """


_backend_option = click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="auto",
    help="Engine; auto picks the fastest usable one (cuda when a GPU is usable, else cpu).",
)


# --------------------------------------------------------------------------- generate
@main.command()
@click.argument("input_path", metavar="INPUT")
@click.option(
    "--config", "-c", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="YAML file with the targets (SPEC.md section 4); validated before any data is read.",
)
@click.option(
    "--output", "-o", required=True, type=click.Path(path_type=Path),
    help="File to write, Parquet (.parquet, or no suffix) or CSV (.csv); a directory of Parquet files "
    "with --scheduler: the input's columns, then one float32 column per target. Replaced only once complete.",
)
@_backend_option
@click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default=None, show_default=False,
    help="Input schema; overrides the config's 'format' key.  [default: the config's, else generic]",
)
@click.option("--no-progress", is_flag=True, help="Do not show the progress bar (it is shown on a terminal only).")
@click.option(
    "--scheduler", default=None, show_default=False, metavar="local|local-cuda|ADDRESS",
    help="Run as a Dask job (needs gpu_targets[dask]): 'local' starts a CPU LocalCluster, 'local-cuda' "
    "a dask-cuda LocalCUDACluster (one worker per GPU), anything else is a scheduler address "
    "(tcp://host:8786). OUTPUT is then a directory of Parquet files, rows grouped by user.  "
    "[default: no Dask, one process]",
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, show_default=False,
    help="Workers of --scheduler local (one thread each) or local-cuda.  [default: one per core / GPU]",
)
@click.option(
    "--rmm-pool-size", default=None, metavar="SIZE",
    help="With --scheduler local-cuda: RMM pool on each GPU worker (e.g. 40GB, or a fraction 0.8 of the "
    "device), shared by cuDF, CuPy and the engine's kernels.  [default: no pool]",
)
@click.option(
    "--device-memory-limit", default=None, metavar="SIZE",
    help="With --scheduler local-cuda: device memory above which a worker spills to host (e.g. 60GB, 0.8).  "
    "[default: dask-cuda's]",
)
@click.option(
    "--partitioned-by-user", is_flag=True,
    help="With --scheduler: declare that no user is split across input files (e.g. written with "
    "to_parquet(partition_on=[user])), so the shuffle by user is skipped.",
)
def generate(
    input_path: str, config_path: Path, output: Path, backend: str, fmt: Optional[str], no_progress: bool,
    scheduler: Optional[str], workers: Optional[int], rmm_pool_size: Optional[str],
    device_memory_limit: Optional[str], partitioned_by_user: bool,
) -> None:
    """Compute the targets of a config for every transaction of INPUT.

    INPUT is a Parquet file, a directory of Parquet files, a glob pattern (quoted) or a
    CSV file (.csv, .csv.gz). Prints rows, target columns, the backend and the seconds
    spent reading, computing and writing. With --scheduler, INPUT must be Parquet and
    OUTPUT is a directory (see docs/distributed.md).
    """
    from tqdm import tqdm

    from .api import generate_table

    cfg = load_config(config_path)
    if fmt is not None:
        cfg = load_config({**cfg.model_dump(), "format": fmt})  # validated again: options must fit the format
    gpu_options = {"rmm_pool_size": rmm_pool_size, "device_memory_limit": device_memory_limit}
    if scheduler != "local-cuda" and any(v is not None for v in gpu_options.values()):
        raise click.UsageError("--rmm-pool-size and --device-memory-limit need --scheduler local-cuda")
    if scheduler is not None:
        _generate_distributed(input_path, cfg, output, backend, scheduler, workers, partitioned_by_user, no_progress,
                              gpu_options)
        return
    if workers is not None or partitioned_by_user:
        raise click.UsageError("--workers and --partitioned-by-user need --scheduler")
    check_output_path(output, [input_path, config_path])
    output_format(output)  # a name whose suffix says neither Parquet nor CSV fails before any work
    backend_used = engines.resolve(backend)

    t0 = time.perf_counter()
    table = read_table(input_path)
    if output_format(output) == "csv":  # before the work, not after it
        check_csv_writable(table.schema, output)
    t1 = time.perf_counter()
    bar = tqdm(
        total=table.num_rows, unit="tx", unit_scale=True, desc="targets", file=sys.stderr,
        disable=True if no_progress else None, leave=False,
    )
    from .api import announce_compile

    # the input's columns are carried through as Arrow, unchanged
    with bar, announce_compile(lambda message: bar.write(message + "...", file=sys.stderr)):  # above the bar
        out = generate_table(table, cfg, backend=backend_used, progress=bar.update)
    t2 = time.perf_counter()
    write_output(out, output)
    t3 = time.perf_counter()
    click.echo(
        f"{output}: {out.num_rows:,} rows, {len(cfg.output_columns)} target columns, backend {backend_used}; "
        f"{t3 - t0:.2f} s (read {t1 - t0:.2f} s, compute {t2 - t1:.2f} s, write {t3 - t2:.2f} s)"
    )


def _cluster(scheduler: str, workers: Optional[int], gpu_options: Optional[dict] = None):
    """A started cluster (or None) and a connected client for ``--scheduler``.

    ``local-cuda``: dask-cuda's ``LocalCUDACluster``, one worker per GPU, with
    ``gpu_options`` (``rmm_pool_size``, ``device_memory_limit``) passed on when set.
    """
    from distributed import Client, LocalCluster

    if scheduler == "local":
        # the job's own error reaches the client and is printed as one line: the workers'
        # "Compute Failed" tracebacks and shuffle chatter on stderr would bury it
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, silence_logs=logging.CRITICAL)
    elif scheduler == "local-cuda":
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            raise ImportError("--scheduler local-cuda needs dask-cuda: pip install 'gpu_targets[cu12]'") from None
        options = {k: v for k, v in (gpu_options or {}).items() if v is not None}
        cluster = LocalCUDACluster(n_workers=workers, silence_logs=logging.CRITICAL, **options)  # gpu
    else:
        if workers is not None:
            raise click.UsageError("--workers applies to --scheduler local or local-cuda, not to an address")
        return None, Client(scheduler)
    return cluster, Client(cluster)


def _generate_distributed(input_path, cfg, output, backend, scheduler, workers, partitioned_by_user, no_progress,
                          gpu_options=None):
    from . import distributed as job

    job._require_dask()
    check_output_path(output, [input_path], directory=True)  # before a cluster starts
    if Path(output).name.lower().endswith(".csv"):  # a directory of Parquet files is never named .csv
        raise DataError(f"--scheduler writes a directory of Parquet files, not CSV: name it without .csv "
                        f"(got {str(output)!r})")
    if scheduler in ("local", "local-cuda"):
        engines.resolve(backend)  # fail on an unusable backend before starting a cluster
    # with an address, the workers decide (distributed.generate resolves it on one of them)
    t0 = time.perf_counter()
    cluster, client = _cluster(scheduler, workers, gpu_options)
    try:
        n = len(client.scheduler_info().get("workers", {}))
        click.echo(f"dashboard: {client.dashboard_link} ({n} workers)", err=True)
        show = not no_progress and sys.stderr.isatty()
        from distributed import KilledWorker

        try:
            job.generate(input_path, cfg, output, client=client, backend=backend,
                         partitioned_by_user=partitioned_by_user, progress=show)
        except KilledWorker as err:  # workers kept dying on the same task: one line, exit 1
            task = err.args[0] if err.args else "?"
            raise click.ClickException(
                f"the job stopped: every Dask worker that ran task {str(task)[:80]!r} died (out of memory or "
                "killed); give the workers more memory or use fewer per machine; nothing was written") from None
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    click.echo(
        f"{output}: {len(cfg.output_columns)} target columns, scheduler {scheduler}; {time.perf_counter() - t0:.2f} s "
        "(rows grouped by user)"
    )


# --------------------------------------------------------------------------- validate
def _empty_value(target: Target) -> float:
    """The value of an empty window (SPEC.md 2.2): 0 for count/sum/any, else ``fill``."""
    return 0.0 if target.agg in _EMPTY_IS_ZERO else float(target.fill)


def _window_text(target: Target) -> str:
    w = target.window
    return f"{w.period or w.duration} {w.mode}"


def _filter_text(target: Target) -> str:
    parts = []
    if target.mcc is not None:
        parts.append("mcc " + ",".join(str(c) for c in target.mcc))
    if target.sign != "any":
        parts.append(target.sign)
    if target.abs:
        parts.append("abs")
    return " ".join(parts) or "-"


def _config_table(cfg: Config):
    import pandas as pd

    rows = []
    for t in cfg.targets:
        for i, col in enumerate(t.output_columns, start=1):
            agg = f"topk k={t.k} #{i}" if t.agg == "topk" else t.agg
            rows.append({"column": col, "agg": agg, "window": _window_text(t), "filter": _filter_text(t),
                         "empty": _empty_value(t)})
    return pd.DataFrame(rows)


@main.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False, path_type=Path))
def validate(config_path: Path) -> None:
    """Check CONFIG and list its target columns: aggregation, window, filter, empty-window value."""
    cfg = load_config(config_path)
    click.echo(
        f"{config_path}: valid; {len(cfg.targets)} targets, {len(cfg.output_columns)} float32 columns, "
        f"format {cfg.format}, timezone {cfg.timezone}"
    )
    click.echo(_config_table(cfg).to_string(index=False))


# --------------------------------------------------------------------------- demo
def _default_config() -> Config:
    from importlib.resources import files

    return load_config((files("gpu_targets") / "configs" / "default.yaml").read_text(encoding="utf-8"))


@main.command()
@click.option("--users", type=click.IntRange(min=1), default=2000, help="Number of synthetic users.")
@click.option("--tx-per-user", type=click.IntRange(min=1), default=512, help="Transactions per user.")
@_backend_option
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None, show_default=False,
    help="Also write the transactions with their targets to this file (Parquet, or CSV for .csv).",
)
def demo(users: int, tx_per_user: int, backend: str, output: Optional[Path]) -> None:
    """Targets of the packaged default config on embedded synthetic transactions.

    Prints the first rows of one user and the compute time, measured after a warm-up on
    one user that compiles the Numba kernels (cached on disk afterwards) or loads them.
    """
    from .api import generate as generate_targets
    from .datasets import synthetic_transactions

    cfg = _default_config()
    backend_used = engines.resolve(backend)
    if output is not None:
        check_output_path(output)
        output_format(output)
    frame = synthetic_transactions(users, tx_per_user, seed=0)
    # one user first: compiles the kernels (or loads them from Numba's disk cache), so
    # that the time printed below is the computation's own
    from .api import announce_compile

    t0 = time.perf_counter()
    with announce_compile(lambda message: click.echo(message + "...", err=True)):
        generate_targets(frame.iloc[:tx_per_user], cfg, backend=backend_used)
    warmup = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = generate_targets(frame, cfg, backend=backend_used)
    seconds = time.perf_counter() - t0

    user_col = cfg.columns.user
    first_user = out[user_col].iloc[0]
    rows = out[out[user_col] == first_user].head(8)
    shown = [c for c in (cfg.columns.time, cfg.columns.amount, cfg.columns.mcc) if c in out.columns]
    shown += cfg.output_columns[:4]
    click.echo(f"user {first_user}, first {len(rows)} transactions:")
    click.echo(rows[shown].to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    n_users = out[user_col].nunique()
    click.echo(
        f"{len(cfg.output_columns)} target columns for {n_users:,} users ({len(out):,} transactions) "
        f"in {seconds:.2f} s on backend {backend_used}: {n_users / max(seconds, 1e-9):,.0f} users/s, "
        f"{len(out) / max(seconds, 1e-9):,.0f} transactions/s"
    )
    click.echo(f"(before that, {warmup:.1f} s to compile the kernels or load them from Numba's cache, "
               "once per process; the first run on a machine compiles)")
    if output is not None:
        write_output(pa.Table.from_pandas(out, preserve_index=False), output)
        click.echo(f"wrote {output}")


# --------------------------------------------------------------------------- describe
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
    columns, empty = _described_columns(frame, cfg, "the frame", "the config")
    return _summary(frame, columns, empty, _roles(cfg))


def _roles(cfg: Optional[Config]) -> Optional[dict[str, str]]:
    """``label`` for columns whose window looks ahead (next/full/forward), else ``feature``."""
    if cfg is None:
        return None
    return {c: ("label" if t.window.looks_ahead else "feature") for t in cfg.targets for c in t.output_columns}


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
    for t in cfg.targets:
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


def _described_columns(frame, cfg: Optional[Config], frame_name: str, config_name: str):
    """The target columns to describe and each one's empty-window value (DataError if none)."""
    import numpy as np

    if cfg is not None:
        columns = cfg.output_columns
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataError(f"{frame_name} has no column {missing[0]!r}, a target of {config_name}")
        return columns, {c: _empty_value(t) for t in cfg.targets for c in t.output_columns}
    columns = [c for c in frame.columns if frame[c].dtype == np.float32]
    if not columns:
        raise DataError(f"{frame_name} has no float32 (target) columns")
    return columns, dict.fromkeys(columns, 0.0)


def _summary(frame, columns: list[str], empty: dict[str, float], roles: Optional[dict[str, str]] = None):
    """One row per target column: target rate (share of non-empty windows) and quantiles;
    with ``roles``, a ``role`` column (label or feature) after ``column``."""
    import numpy as np
    import pandas as pd

    rows = []
    for c in columns:
        v = frame[c].to_numpy(dtype=np.float64, na_value=np.nan)
        known = v[~np.isnan(v)]
        e = empty[c]
        nonempty = ~np.isnan(v) if math.isnan(e) else (~np.isnan(v) & (v != e))
        row = {"column": c, "rate": float(nonempty.mean()) if len(v) else math.nan}
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


def _histogram_figure(frame, columns: list[str], empty: dict[str, float], rates: dict[str, float],
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
        raise click.ClickException("--plot needs matplotlib: pip install 'gpu_targets[plot]'") from None
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


def _save_figure(fig, path: Path) -> None:
    suffix = path.suffix.lstrip(".").lower() or "png"
    with replacing(path) as tmp:
        fig.savefig(tmp, format=suffix, dpi=100)


def _write_html(path: Path, title: str, table, fig, warnings: list[str]) -> None:
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


@main.command()
@click.argument("output_path", metavar="OUTPUT")
@click.option(
    "--config", "-c", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    show_default=False,
    help="Config that made OUTPUT: describes its target columns, with each target's empty-window "
    "value (0 for count/sum/any, else fill).  [default: every float32 column, empty = 0]",
)
@click.option(
    "--plot", type=click.Path(dir_okay=False, path_type=Path), default=None, show_default=False,
    help="Also write a PNG grid of histograms of the non-empty values between their 0.5% and 99.5% "
    "quantiles (needs matplotlib).",
)
@click.option(
    "--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), default=None, show_default=False,
    help="Also write one self-contained HTML report: the table, the warnings and the histograms inline "
    "(needs matplotlib).",
)
def describe(output_path: str, config_path: Optional[Path], plot: Optional[Path], html_path: Optional[Path]) -> None:
    """Target rate and distribution of each target column of OUTPUT (a Parquet file).

    rate is the share of rows whose window is not empty (value neither NaN nor the
    empty-window value); mean, std (ddof 1), min, quantiles and max are over the
    non-NaN values.
    """
    cfg = load_config(config_path) if config_path is not None else None
    for path in (plot, html_path):
        if path is not None:
            check_output_path(path, [output_path])
    frame = read_transactions(output_path)
    columns, empty = _described_columns(frame, cfg, repr(output_path), repr(str(config_path)))
    roles = _roles(cfg)
    table = _summary(frame, columns, empty, roles)
    click.echo(f"{output_path}: {len(frame):,} rows, {len(columns)} target columns")
    click.echo(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    warnings = fill_warnings(frame, cfg) if cfg is not None else []
    for line in warnings:
        click.echo(f"warning: {line}", err=True)
    if plot is not None or html_path is not None:
        aggs = {c: t.agg for t in cfg.targets for c in t.output_columns} if cfg is not None else {}
        fig = _histogram_figure(frame, columns, empty, dict(zip(table["column"], table["rate"])), roles, aggs)
        if plot is not None:
            _save_figure(fig, plot)
            click.echo(f"wrote {plot}")
        if html_path is not None:
            _write_html(html_path, f"gpu-targets describe {Path(output_path).name}", table, fig, warnings)
            click.echo(f"wrote {html_path}")


if __name__ == "__main__":  # python -m gpu_targets.cli
    main()
