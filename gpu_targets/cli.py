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
from .describe import (described_columns, empty_value, fill_warnings, histogram_figure, summary_table,
                       target_roles, target_summary, time_columns, write_html)
from .spec import FORMATS, Config, ConfigError, Derived, Target, load_config
from .transactions import DataError

__all__ = ["main", "target_summary"]  # target_summary: from .describe, kept importable here

BACKENDS = ("auto", "reference", "cpu", "cuda")

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
def _window_text(target: Target) -> str:
    w = target.window
    text = f"{w.period or w.duration or f'{w.rows} rows'} {w.mode}"
    if w.n_periods != 1:
        text = f"{w.periods} {w.period}s {w.mode}"
    if w.offset:
        text += f" offset {w.offset}"
    return text


def _filter_text(target: Target) -> str:
    parts = []
    if target.mcc is not None:
        parts.append("mcc " + ",".join(str(c) for c in target.mcc))
    if target.sign != "any":
        parts.append(target.sign)
    for w in target.where or ():
        parts.append(f"{w.column} " + " ".join(f"{op} {list(v) if isinstance(v, tuple) else v}"
                                                for op, v in w.conditions))
    if target.value is not None:
        parts.append(f"value {target.value}")
    if target.abs:
        parts.append("abs")
    return "; ".join(parts) or "-"


def _config_table(cfg: Config):
    import pandas as pd

    rows = []
    for t in cfg.targets:
        if isinstance(t, Derived):
            rows.append({"column": t.name, "agg": t.derive, "window": "-", "filter": "of " + ", ".join(t.of),
                         "empty": empty_value(t)})
            continue
        for i, col in enumerate(t.output_columns, start=1):
            agg = f"topk k={t.k} #{i}" if t.agg == "topk" else (f"quantile q={t.q:g}" if t.agg == "quantile" else t.agg)
            rows.append({"column": col, "agg": agg, "window": _window_text(t), "filter": _filter_text(t),
                         "empty": empty_value(t)})
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
    columns, empty = described_columns(frame, cfg, repr(output_path), repr(str(config_path)))
    roles = target_roles(cfg)
    table = summary_table(frame, columns, empty, roles, time_columns(cfg))
    click.echo(f"{output_path}: {len(frame):,} rows, {len(columns)} target columns")
    click.echo(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    warnings = fill_warnings(frame, cfg) if cfg is not None else []
    for line in warnings:
        click.echo(f"warning: {line}", err=True)
    if plot is not None or html_path is not None:
        aggs = {c: getattr(t, "agg", "derive") for t in cfg.targets for c in t.output_columns} if cfg is not None else {}
        try:
            fig = histogram_figure(frame, columns, empty, dict(zip(columns, table["rate"])), roles, aggs)
        except ImportError as err:
            raise click.ClickException(f"--plot and --html need matplotlib: {err}") from None
        if plot is not None:
            suffix = plot.suffix.lstrip(".").lower() or "png"
            with replacing(plot) as tmp:
                fig.savefig(tmp, format=suffix, dpi=100)
            click.echo(f"wrote {plot}")
        if html_path is not None:
            write_html(html_path, f"gpu-targets describe {Path(output_path).name}", table, fig, warnings)
            click.echo(f"wrote {html_path}")


if __name__ == "__main__":  # python -m gpu_targets.cli
    main()
