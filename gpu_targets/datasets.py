"""Synthetic bank-card transactions calibrated on real data (SDSJ 2016).

:func:`synthetic_transactions` makes a transactions table in the input format of
``SPEC.md`` (``user_id``, ``timestamp``, ``amount``, ``mcc``) of any size, fast and
deterministically, for tests and benchmarks. Its figures (MCC mix, amounts, inter-arrival
times, time of day, how much users differ) come from
``gpu_targets/data/sdsj2016_calibration.json``, which ``benchmarks/calibrate_synthetic.py``
computed from the Sberbank Data Science Journey 2016 sample
(``sberbank_sdsj2016_transactions_partial.parquet``: 259,999 real, anonymized card
transactions of 571 clients over 457 days). Only that json file is read at run time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
import pandas as pd

__all__ = ["load_calibration", "synthetic_transactions"]

_CALIBRATION = "sdsj2016_calibration.json"
_DAY = 86_400
_UNIT_PER_S = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_TIME_UNITS = (None, "s", "ms", "us", "ns", "D")


def load_calibration() -> dict:
    """The calibration figures used by :func:`synthetic_transactions` (a fresh dict).

    Keys: ``source`` (where the figures come from), ``mcc`` (top codes and their shares,
    the ``other`` bucket), ``amount`` (per-MCC credit share and log-normal parameters,
    the last entry of each list being the ``other`` bucket, and the spread of per-user
    amount levels), ``time`` (window, midnight share, hourly weights, log inter-arrival
    quantiles) and ``users`` (Dirichlet concentration of per-user MCC preferences, the
    spread of activity in SDSJ, for reference). See
    ``benchmarks/calibrate_synthetic.py`` for how each is estimated.
    """
    text = resources.files("gpu_targets").joinpath("data", _CALIBRATION).read_text(encoding="utf-8")
    return json.loads(text)


class _Curve:
    """A piecewise-linear map of [0, 1] tabulated on a uniform grid of ``size`` cells.

    ``curve(x)`` equals ``np.interp(x, xp, fp)`` up to the grid (exactly at the grid
    points, and monotone if ``fp`` is) but costs a multiply and two small-table lookups
    per element instead of a binary search; it overwrites and returns ``x``.
    """

    def __init__(self, xp, fp, size: int):
        grid = np.linspace(0.0, 1.0, size + 1)
        self.values = np.interp(grid, xp, fp)
        self.slopes = np.diff(self.values)
        self.size = size

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x *= self.size
        i = x.astype(np.intp)
        np.clip(i, 0, self.size - 1, out=i)
        x -= i  # position within the cell
        x *= self.slopes[i]
        x += self.values[i]
        return x


@dataclass(frozen=True)
class _Model:
    """The calibration as arrays; K = number of MCC categories (top codes + "other")."""

    codes: np.ndarray  # int32 [K], the last one a placeholder for "other"
    mcc_alpha: np.ndarray  # float64 [K], Dirichlet parameters = concentration * shares
    other_codes: np.ndarray  # int32 [M]
    other_p: np.ndarray  # float64 [M]
    credit_share: np.ndarray  # float64 [K]
    log_mean: np.ndarray  # float64 [2K]: index 2k = debit of category k, 2k + 1 = credit
    log_sd: np.ndarray  # float64 [2K]
    user_log_amount_sd: float
    log_gap: _Curve  # uniform -> ln(gap seconds) minus the user's mean (inverse CDF)
    span_s: float  # activity-clock seconds from a user's first to last transaction
    warp: _Curve  # fraction of an activity-clock day -> wall-clock second of the day


@lru_cache(maxsize=1)
def _model() -> _Model:
    c = load_calibration()
    mcc, amt, tm = c["mcc"], c["amount"], c["time"]
    shares = np.array(mcc["shares"] + [mcc["other_share"]], dtype=np.float64)
    shares /= shares.sum()
    other_counts = np.asarray(mcc["other_counts"], dtype=np.float64)
    m = float(tm["midnight_share"])
    w = np.asarray(tm["hour_weights"], dtype=np.float64)
    w /= w.sum()
    # the first m of each activity day is stamped 00:00:00, the rest spreads over the hours
    warp_x = np.concatenate([[0.0], m + (1.0 - m) * np.cumsum(np.concatenate([[0.0], w]))])
    warp_y = np.concatenate([[0.0], np.arange(25, dtype=np.float64) * 3600.0])
    warp_x[-1] = 1.0
    return _Model(
        codes=np.asarray(mcc["codes"] + [-1], dtype=np.int32),
        mcc_alpha=float(c["users"]["mcc_concentration"]) * shares,
        other_codes=np.asarray(mcc["other_codes"], dtype=np.int32),
        other_p=other_counts / other_counts.sum(),
        credit_share=np.asarray(amt["credit_share"], dtype=np.float64),
        log_mean=np.column_stack([amt["debit_log_mean"], amt["credit_log_mean"]]).ravel().astype(np.float64),
        log_sd=np.column_stack([amt["debit_log_sd"], amt["credit_log_sd"]]).ravel().astype(np.float64),
        user_log_amount_sd=float(amt["user_log_sd"]),
        log_gap=_Curve(tm["log_gap_probs"], tm["log_gap_quantiles"], 1 << 12),
        span_s=(int(tm["window_days"]) - 1) * float(_DAY),
        warp=_Curve(warp_x, warp_y, 1 << 16),
    )


def _rows_per_user(tx_per_user, n_users: int, rng: np.random.Generator) -> np.ndarray:
    if isinstance(tx_per_user, (tuple, list)):
        if len(tx_per_user) != 2:
            raise ValueError(f"tx_per_user must be an int or a (lo, hi) pair, got {tx_per_user!r}")
        lo, hi = (int(v) for v in tx_per_user)
        if not 0 <= lo <= hi:
            raise ValueError(f"tx_per_user=(lo, hi) needs 0 <= lo <= hi, got {tx_per_user!r}")
        return rng.integers(lo, hi, size=n_users, endpoint=True, dtype=np.int64)
    k = int(tx_per_user)
    if k != tx_per_user or k < 0 or isinstance(tx_per_user, bool):
        raise ValueError(f"tx_per_user must be a non-negative int or a (lo, hi) pair, got {tx_per_user!r}")
    return np.full(n_users, k, dtype=np.int64)


def synthetic_transactions(
    n_users: int,
    tx_per_user: int | tuple[int, int] = 512,
    seed: int = 0,
    *,
    start: str = "2021-01-01",
    time_unit: str | None = None,
    shuffle: bool = False,
    user_id_start: int = 0,
) -> pd.DataFrame:
    """Synthetic card transactions whose statistics follow the SDSJ 2016 data.

    Parameters
    ----------
    n_users : int
        Number of users (``user_id_start`` ... ``user_id_start + n_users - 1``).
    tx_per_user : int or (int, int), default 512
        Transactions per user: exactly this many, or a ``(lo, hi)`` pair from which each
        user's count is drawn uniformly in ``[lo, hi]`` (both ends included). A user with
        0 transactions has no row. Every history spans the same 457 days, so this sets
        how busy users are: the default 512 is about 1.1 transactions a day (SDSJ users:
        median 0.83 a day, 372 in all, quartiles 180 and 618).
    seed : int, default 0
        Seed of :func:`numpy.random.default_rng`; the same arguments give the same table.
    start : str, default "2021-01-01"
        Day 0 (parsed by :class:`pandas.Timestamp`; a time of day is dropped, an aware
        time is taken in UTC). Every user's first transaction falls on day 0 and the
        last (of users with 2 or more) on day 456.
    time_unit : {None, "s", "ms", "us", "ns", "D"}, default None
        ``None``: ``timestamp`` is ``datetime64[ns]`` (naive, meaning UTC). Otherwise it is
        an int64 count of that unit since 1970-01-01 (``"D"``: whole days, the floor of the
        datetime), as accepted with the same ``time_unit`` in a config (SPEC.md 1).
    shuffle : bool, default False
        False: rows sorted by ``(user_id, timestamp)``. True: the same rows in a random
        (seeded) order.
    user_id_start : int, default 0
        First user id.

    Returns
    -------
    pandas.DataFrame
        ``n = sum of the per-user counts`` rows (``n_users * tx_per_user`` for an int),
        with columns

        ============= ==================== ==================================================
        ``user_id``   int64                user id
        ``timestamp`` datetime64[ns]       UTC, whole seconds (int64 counts of ``time_unit``
                                           when given)
        ``amount``    float64              rounded to cents, never 0; negative = debit
                                           (purchase, withdrawal), positive = credit. In the
                                           anonymized units of the SDSJ data: a typical debit
                                           is ``exp(9..11)``, i.e. about 10^4
        ``mcc``       int32                ISO 18245 merchant category code
        ============= ==================== ==================================================

        Equal timestamps within a user occur (e.g. at 00:00:00, as in the real data).

    Raises
    ------
    ValueError
        Negative ``n_users`` or counts, a bad ``tx_per_user`` or ``time_unit``, or a
        ``start`` that puts the timestamps outside the ``datetime64[ns]`` range
        (1677-2262; only without ``time_unit`` or with ``"ns"``).

    Notes
    -----
    The model, drawn independently per user (the figures in parentheses are those of
    ``gpu_targets/data/sdsj2016_calibration.json``, all estimated from
    ``sberbank_sdsj2016_transactions_partial.parquet`` by
    ``benchmarks/calibrate_synthetic.py``):

    * **MCC**: a user's MCC preferences are ``Dirichlet(a * shares)`` over the 60 most
      frequent SDSJ codes plus an "other" bucket, where ``shares`` are the SDSJ row shares
      (6011 ATM cash 22.5%, 5411 grocery 17.1%, 4814 telecom 13.3%, 4829 transfers 9.4%,
      6010 cash desk 6.9%, ..., 5912 pharmacy 2.6%; "other" 2.1%, spread over the 121
      remaining SDSJ codes by their counts) and ``a`` (5.86) is fitted by the method of
      moments to the spread of per-user MCC shares. Each transaction's MCC is then drawn
      from its user's preferences, so users differ as real ones do but a large sample
      keeps the SDSJ shares.
    * **Amount**: credit (``amount > 0``) with the MCC's SDSJ credit share (overall 10%;
      6010 96%, 6011 15%, 5411 0.1%); ``ln|amount|`` is normal with the mean and
      within-user sd of that MCC and sign in SDSJ, plus a per-user level ~ N(0, 0.62).
    * **Time**: a user's history covers the SDSJ observation window (457 days). The
      gaps between consecutive transactions have the shape of the SDSJ distribution of
      ``ln(gap)`` around each user's mean (its quantiles 0.1% ... 99.9%: bursts of
      seconds to minutes as well as pauses of weeks), scaled so that they add up to the
      window; a user's activity level thus follows from its count. Gaps run on an
      *activity clock*, which a monotone warp maps to wall-clock time with the SDSJ time
      of day: 13.6% of the rows at exactly 00:00:00 (SDSJ stamps some purchases with a
      date only), the rest spread by the 24 SDSJ hourly weights (peak 12:00-14:00,
      fewest 01:00-03:00), uniformly within the hour, truncated to whole seconds. The
      SDSJ clock is treated as UTC.

    MCC, amount and time are independent given the user. Rows are built sorted (no sort
    is needed), all steps are vectorised NumPy: 4096 users x 4096 transactions (16.7 M
    rows, about 470 MB) take a few seconds on one core.

    Examples
    --------
    >>> import pandas as pd
    >>> from gpu_targets.datasets import synthetic_transactions
    >>> df = synthetic_transactions(3, 4, seed=1)
    >>> df.shape
    (12, 4)
    >>> df.dtypes.astype(str).tolist()
    ['int64', 'datetime64[ns]', 'float64', 'int32']
    >>> df.groupby("user_id").size().tolist()
    [4, 4, 4]
    >>> days = synthetic_transactions(3, 4, seed=1, time_unit="D")["timestamp"]
    >>> bool((days == (df["timestamp"] - pd.Timestamp("1970-01-01")).dt.days).all())
    True
    """
    if int(n_users) != n_users or n_users < 0:
        raise ValueError(f"n_users must be a non-negative int, got {n_users!r}")
    if time_unit not in _TIME_UNITS:
        raise ValueError(f"time_unit must be one of {_TIME_UNITS}, got {time_unit!r}")
    n_users = int(n_users)
    origin = pd.Timestamp(start)
    if origin.tzinfo is not None:
        origin = origin.tz_convert("UTC").tz_localize(None)
    origin_s = int((origin.normalize() - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1))
    m = _model()
    ns_max_s = np.iinfo(np.int64).max // 1_000_000_000
    if time_unit in (None, "ns") and not -ns_max_s <= origin_s <= ns_max_s - m.span_s - 2 * _DAY:
        raise ValueError(f"start={start!r}: timestamps would leave the datetime64[ns] range (1677-2262)")
    K = len(m.codes)
    rng = np.random.default_rng(seed)

    # --- users: row counts and traits --------------------------------------------------
    counts = _rows_per_user(tx_per_user, n_users, rng)
    n = int(counts.sum())
    pref = rng.gamma(m.mcc_alpha, size=(n_users, K))  # Dirichlet(a * shares), unnormalised
    amount_level = rng.normal(0.0, m.user_log_amount_sd, size=n_users)
    phase = rng.random(n_users) * _DAY  # activity-clock time of the first transaction
    user = np.repeat(np.arange(n_users, dtype=np.int64), counts)  # user index of each row
    first = np.cumsum(counts) - counts  # each user's first row

    # --- time: a user's gaps, scaled to span the window, on the activity clock -------
    t = m.log_gap(rng.random(n))  # ln gap, up to the user's level
    np.exp(t, out=t)
    has_rows = counts > 0
    lo, cnt = first[has_rows], counts[has_rows]
    t[lo] = 0.0  # a user's first row has no gap
    np.cumsum(t, out=t)  # one running sum over all users
    base, total = t[lo], t[lo + cnt - 1] - t[lo]
    scale = np.divide(m.span_s, total, out=np.zeros_like(total), where=total > 0)
    t *= np.repeat(scale, cnt)  # first row -> phase, last row -> phase + span
    t += np.repeat(phase[has_rows] - base * scale, cnt)
    np.maximum(t, 0.0, out=t)  # (rounding of the running sum)
    t /= _DAY
    day = np.floor(t)
    t -= day  # fraction of the activity day
    sec = m.warp(t)  # (in place: `t` is gone)
    np.floor(sec, out=sec)
    np.minimum(sec, _DAY - 1, out=sec)
    day *= _DAY
    day += sec
    del t, sec
    t_s = day.astype(np.int64)  # seconds since `start`, non-decreasing within a user
    del day
    t_s += origin_s

    # --- MCC: inverse CDF of each row's user preferences, one searchsorted -----------
    cdf = np.cumsum(pref, axis=1)
    cdf /= np.where(cdf[:, -1:] > 0, cdf[:, -1:], 1.0)
    cdf[:, -1] = 1.0
    cdf += np.arange(n_users, dtype=np.float64)[:, None]  # user u's row lies in [u, u + 1]
    u = rng.random(n)
    u += user
    cat = np.searchsorted(cdf.ravel(), u, side="right")
    del u, cdf
    cat -= user * K
    np.clip(cat, 0, K - 1, out=cat)  # u + user may round up to user + 1
    mcc = m.codes[cat]
    other = np.flatnonzero(cat == K - 1)
    mcc[other] = rng.choice(m.other_codes, size=len(other), p=m.other_p)

    # --- amount: sign by MCC, log-normal size by MCC and sign, per-user level ---------
    credit = rng.random(n) < m.credit_share[cat]
    cat *= 2
    cat += credit  # index into the (debit, credit) tables
    amount = m.log_sd[cat] * rng.standard_normal(n, dtype=np.float32)
    amount += m.log_mean[cat]
    del cat
    amount += amount_level[user]
    np.exp(amount, out=amount)
    np.round(amount, 2, out=amount)
    np.maximum(amount, 0.01, out=amount)
    np.negative(amount, out=amount, where=~credit)
    del credit

    user += user_id_start  # user index -> user id
    user_id = user

    # --- output ------------------------------------------------------------------------
    if time_unit is None:
        t_s *= 1_000_000_000
        timestamp = t_s.view("datetime64[ns]")
    elif time_unit == "D":
        timestamp = t_s // _DAY
    else:
        t_s *= _UNIT_PER_S[time_unit]
        timestamp = t_s

    if shuffle:
        perm = rng.permutation(n)
        user_id, timestamp, amount, mcc = user_id[perm], timestamp[perm], amount[perm], mcc[perm]
    return pd.DataFrame(
        {"user_id": user_id, "timestamp": timestamp, "amount": amount, "mcc": mcc},
        copy=False,
    )
