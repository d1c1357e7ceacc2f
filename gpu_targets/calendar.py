"""Calendar periods and time conversion (SPEC.md 2.1), shared by every engine.

Time inside the engines is ``int64`` nanoseconds since 1970-01-01 UTC. Calendar periods
are integer indices of the *local wall-clock* time: the UTC instant plus the time zone's
offset at that instant, resolved here (with pandas' tz database) before any kernel runs.

The scalar functions :func:`period_index` and :func:`civil_from_days` are plain Python on
integers so that one definition is compiled by ``numba.njit`` for the CPU engine and by
``numba.cuda.jit(device=True)`` for the CUDA engine: the two cannot drift apart.

Period indices (``local_ns`` = local wall-clock nanoseconds since 1970-01-01 00:00):

==========  =============================================
``hour``    floor(local_ns / 3.6e12)
``day``     floor(local_ns / 8.64e13)
``week``    floor((day + 3) / 7): ISO weeks, Monday 00:00
``month``   (year - 1970) * 12 + (month - 1)
``quarter`` (year - 1970) * 4 + (month - 1) // 3
``year``    year - 1970
==========  =============================================
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.extending import register_jitable

from .spec import PERIODS

__all__ = [
    "NS_PER_DAY",
    "NS_PER_HOUR",
    "PERIOD_CODES",
    "civil_from_days",
    "local_wall_clock_ns",
    "utc_offset_table",
    "period_index",
    "period_of_day",
    "period_indices",
]

NS_PER_HOUR = 3_600_000_000_000
NS_PER_DAY = 86_400_000_000_000

#: Integer code of each period, as passed to kernels.
PERIOD_CODES = {name: i for i, name in enumerate(PERIODS)}
HOUR, DAY, WEEK, MONTH, QUARTER, YEAR = range(6)


@register_jitable
def civil_from_days(days):
    """Proleptic Gregorian (year, month) of a day count since 1970-01-01.

    Integer-only, valid for any int64 day count; from H. Hinnant, "chrono-Compatible
    Low-Level Date Algorithms" (``civil_from_days``), written for floor division.

    Parameters
    ----------
    days : int
        Days since 1970-01-01 (negative before).

    Returns
    -------
    (int, int)
        ``(year, month)`` with month in 1..12.
    """
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return year, month


@register_jitable
def period_of_day(day, period):
    """Index of a day-based period (``day`` .. ``year``) containing a local day.

    Parameters
    ----------
    day : int
        Local days since 1970-01-01 (floor of local ns / 8.64e13).
    period : int
        A code from :data:`PERIOD_CODES`, ``day`` (1) or longer.
    """
    if period == 1:
        return day
    if period == 2:
        return (day + 3) // 7
    year, month = civil_from_days(day)
    if period == 3:
        return (year - 1970) * 12 + (month - 1)
    if period == 4:
        return (year - 1970) * 4 + (month - 1) // 3
    return year - 1970


@register_jitable
def period_index(local_ns, period):
    """Integer index of the calendar period containing a local wall-clock time.

    Parameters
    ----------
    local_ns : int
        Local wall-clock nanoseconds since 1970-01-01 00:00 (int64).
    period : int
        A code from :data:`PERIOD_CODES` (0 hour .. 5 year).

    Returns
    -------
    int
        The period index of SPEC.md 2.1 (floor semantics before 1970).
    """
    if period == 0:
        return local_ns // 3_600_000_000_000
    return period_of_day(local_ns // 86_400_000_000_000, period)


def local_wall_clock_ns(utc_ns: np.ndarray, timezone: str) -> np.ndarray:
    """Local wall-clock time of UTC instants.

    Parameters
    ----------
    utc_ns : ndarray of int64, shape (n,)
        Nanoseconds since 1970-01-01 UTC.
    timezone : str
        IANA name. ``"UTC"`` returns the input unchanged (no copy).

    Returns
    -------
    ndarray of int64, shape (n,)
        ``utc_ns`` plus the zone's UTC offset at each instant (DST and historical
        offsets from the tz database), i.e. nanoseconds since local 1970-01-01 00:00.
    """
    if timezone in ("UTC", "Etc/UTC", "GMT", "Etc/GMT", "Z"):
        return utc_ns
    import pandas as pd

    idx = pd.DatetimeIndex(utc_ns.view("datetime64[ns]")).tz_localize("UTC").tz_convert(timezone)
    return np.asarray(idx.tz_localize(None).asi8, dtype=np.int64)


def utc_offset_table(timezone: str, lo_ns: int, hi_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """The zone's UTC offsets over ``[lo_ns, hi_ns]`` as a step function (small, host side).

    For the CUDA engine: the table goes to the device once and every row's local time is
    ``t + offset[searchsorted(start, t, side="right") - 1]`` there, instead of sending the
    whole time column to the host for pandas' conversion.

    The offset is read from the tz database (pandas) on an hourly grid over the range;
    between two grid points whose offsets differ, the instant of the change is found by
    bisection to the nanosecond. Two changes less than an hour apart would be missed: no
    zone of the tz database has them.

    Parameters
    ----------
    timezone : str
        IANA name.
    lo_ns, hi_ns : int
        First and last UTC instant to cover (ns since 1970-01-01), ``lo_ns <= hi_ns``.

    Returns
    -------
    start : ndarray of int64, shape (m,)
        UTC instant (ns) from which each offset holds; ``start[0]`` is int64 min (the
        first offset also covers everything before ``lo_ns``).
    offset : ndarray of int64, shape (m,)
        UTC offset in ns (local wall clock minus UTC) from ``start[j]`` on.
    """
    import pandas as pd

    def offsets(t):
        idx = pd.DatetimeIndex(np.asarray(t, dtype=np.int64).view("datetime64[ns]")).tz_localize("UTC")
        return np.asarray(idx.tz_convert(timezone).tz_localize(None).asi8, dtype=np.int64) - np.asarray(idx.asi8)

    int64 = np.iinfo(np.int64)
    lo = max(int(lo_ns) - int(lo_ns) % NS_PER_HOUR, int64.min + NS_PER_HOUR)
    hi = min(int(hi_ns) + NS_PER_HOUR, int64.max - NS_PER_HOUR)  # the grid ends past hi_ns, inside int64
    grid = np.arange(lo, hi + 1, NS_PER_HOUR, dtype=np.int64)
    off = offsets(grid)
    change = np.flatnonzero(off[1:] != off[:-1])
    # bisection: offset(a) == off[change], offset(b) != it; find the first b
    a, b = grid[change].copy(), grid[change + 1].copy()
    while (b - a > 1).any():
        mid = a + (b - a) // 2
        same = offsets(mid) == off[change]
        a = np.where(same, mid, a)
        b = np.where(same, b, mid)
    start = np.concatenate([[np.iinfo(np.int64).min], b]).astype(np.int64)
    return start, np.concatenate([off[:1], off[change + 1]]).astype(np.int64)


@njit(cache=True)
def _period_indices(local_ns, code):
    out = np.empty(local_ns.shape[0], dtype=np.int64)
    for i in range(local_ns.shape[0]):
        out[i] = period_index(local_ns[i], code)
    return out


def period_indices(local_ns: np.ndarray, period: str) -> np.ndarray:
    """Vectorised :func:`period_index` (used outside the kernels).

    Parameters
    ----------
    local_ns : ndarray of int64, shape (n,)
    period : str
        One of ``hour, day, week, month, quarter, year``.

    Returns
    -------
    ndarray of int64, shape (n,)

    Raises
    ------
    ValueError
        Unknown period.
    """
    if period not in PERIOD_CODES:
        raise ValueError(f"unknown period {period!r}; allowed: {', '.join(PERIODS)}")
    return _period_indices(np.ascontiguousarray(local_ns, dtype=np.int64), PERIOD_CODES[period])
