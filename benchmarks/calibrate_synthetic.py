"""Calibrate :func:`gpu_targets.datasets.synthetic_transactions` on the SDSJ 2016 sample.

Reads ``sberbank_sdsj2016_transactions_partial.parquet`` (real, anonymized Sberbank card
transactions: 259,999 rows, 571 customers, 457 days; see ``shared/data/README.md``) and
writes ``gpu_targets/data/sdsj2016_calibration.json``, the only thing the generator reads
at run time. Run it once and commit the json::

    python benchmarks/calibrate_synthetic.py [--data PATH] [--out PATH]

What is estimated (every figure comes from that one file):

* ``mcc``: the ``TOP`` most frequent MCCs with their shares of all rows, and an ``other``
  bucket (its total share, spread over the remaining codes by their observed counts).
* ``amount``: per MCC (``other`` pooled): share of credits (``amount > 0``), mean and sd of
  ``ln|amount|`` for debits and for credits (MCC/sign cells with fewer than ``MIN_CELL``
  rows use the pooled figures of that sign); the spread of per-user mean log amounts
  (``user_log_sd``). The per-MCC sds are *within-user* sds, so that a user offset plus
  the MCC noise reproduces the observed total spread.
* ``time``: the observation window (days), the share of rows stamped exactly
  ``00:00:00`` (SDSJ posts some purchases with a date only), 24 hourly weights of the
  other rows, and inter-arrival times. Gaps are measured on an "activity clock" on which
  the time-of-day distribution is uniform (each wall-clock second is stretched by its
  density), so that generated gaps can be mapped back through the same monotone warp.
  Stored: quantiles (0.1% ... 99.9%) of ``ln(gap seconds)`` minus the user's own mean
  (the shape of a user's gap distribution; its level follows from the user's count).
* ``users``: concentration ``a`` of a Dirichlet(a * shares) prior on a user's MCC
  preferences, by the method of moments on per-user MCC shares (a smaller ``a`` means
  more specialised users); the spread of activity (transactions per user, and per day of
  the user's span: median and sd of its log), which the generator leaves to the caller's
  ``tx_per_user``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sberbank_sdsj2016_transactions_partial.parquet"
OUT = ROOT / "gpu_targets" / "data" / "sdsj2016_calibration.json"

TOP = 60  # MCCs with their own entry; the rest share one "other" bucket
MIN_CELL = 30  # fewest rows for an MCC/sign cell to get its own amount figures
MIN_USER = 20  # fewest rows (gaps) for a user to enter the heterogeneity estimates
# probabilities of the stored log-gap quantiles: percentiles plus finer tails; the
# generator draws between the 0.1% and 99.9% points (the extremes are single gaps)
GAP_PROBS = [0.001, 0.002, 0.005] + [i / 100 for i in range(1, 100)] + [0.995, 0.998, 0.999]
SEED = 2016  # only for de-quantising whole seconds and 00:00:00 stamps


def load(path: Path) -> pd.DataFrame:
    df = pd.read_parquet(path, columns=["customer_id", "tr_datetime", "mcc_code", "amount"])
    # "<day> HH:MM:SS" with seconds up to 60: parse by arithmetic, not strptime
    d = df["tr_datetime"].str.extract(r"(\d+) (\d\d):(\d\d):(\d\d)").astype("int64").to_numpy()
    out = pd.DataFrame(
        {
            "user": df["customer_id"].to_numpy(np.int64),
            "day": d[:, 0],
            "sec": d[:, 1] * 3600 + d[:, 2] * 60 + d[:, 3],  # may reach 86400 (":60")
            "mcc": df["mcc_code"].to_numpy(np.int64),
            "amount": df["amount"].to_numpy(np.float64),
        }
    )
    return out


def mcc_table(df: pd.DataFrame) -> dict:
    # descending by count, ties by code (deterministic)
    counts = df["mcc"].value_counts().sort_index().sort_values(ascending=False, kind="stable")
    n = len(df)
    top, rest = counts.iloc[:TOP], counts.iloc[TOP:]
    return {
        "codes": [int(c) for c in top.index],
        "shares": [round(float(v) / n, 6) for v in top.to_numpy()],
        "other_share": round(float(rest.sum()) / n, 6),
        "other_codes": [int(c) for c in rest.index],
        "other_counts": [int(v) for v in rest.to_numpy()],
    }


def amount_model(df: pd.DataFrame, codes: list[int]) -> dict:
    cat = np.where(df["mcc"].isin(codes), df["mcc"], -1)  # -1 = other
    log_abs = np.log(np.abs(df["amount"].to_numpy()))
    credit = df["amount"].to_numpy() > 0
    pooled = {s: (log_abs[credit == s].mean(), log_abs[credit == s].std(ddof=1)) for s in (False, True)}

    # cell means (MCC x sign), with the pooled fallback for thin cells
    frame = pd.DataFrame({"cat": cat, "credit": credit, "y": log_abs, "user": df["user"].to_numpy()})
    cells = frame.groupby(["cat", "credit"])["y"].agg(["mean", "std", "count"])

    def cell(c: int, s: bool) -> tuple[float, float]:
        if (c, s) in cells.index and cells.loc[(c, s), "count"] >= MIN_CELL:
            row = cells.loc[(c, s)]
            return float(row["mean"]), float(row["std"])
        return float(pooled[s][0]), float(pooled[s][1])

    # per-user level of ln|amount| after removing the MCC/sign cell mean
    key = list(zip(cells.index.get_level_values(0), cells.index.get_level_values(1)))
    cell_mean = {k: cell(*k)[0] for k in key}
    frame["resid"] = frame["y"] - [cell_mean[k] for k in zip(frame["cat"], frame["credit"])]
    g = frame.groupby("user")["resid"].agg(["mean", "var", "count"])
    g = g[g["count"] >= MIN_USER]
    between = g["mean"].var(ddof=1) - (g["var"] / g["count"]).mean()
    user_sd = float(np.sqrt(max(between, 0.0)))

    keys = ("credit_share", "debit_log_mean", "debit_log_sd", "credit_log_mean", "credit_log_sd")
    out = {k: [] for k in keys}
    for c in list(codes) + [-1]:
        sel = cat == c
        out["credit_share"].append(round(float(credit[sel].mean()), 5))
        for s, name in ((False, "debit"), (True, "credit")):
            m, sd = cell(c, s)
            within = np.sqrt(max(sd * sd - user_sd * user_sd, (0.5 * sd) ** 2))
            out[f"{name}_log_mean"].append(round(m, 4))
            out[f"{name}_log_sd"].append(round(float(within), 4))
    out["user_log_sd"] = round(user_sd, 4)
    return out


def time_model(df: pd.DataFrame, rng: np.random.Generator) -> dict:
    sec = np.minimum(df["sec"].to_numpy(), 86399)  # ":60" at 23:59:60 stays in its day
    midnight = sec == 0
    m = float(midnight.mean())
    hours = np.bincount(sec[~midnight] // 3600, minlength=24).astype(np.float64)
    w = hours / hours.sum()

    # activity clock: fraction of the day's activity before this instant
    cum = np.concatenate([[0.0], np.cumsum(w)])
    h = sec // 3600
    within_hour = (sec - h * 3600 + rng.random(len(sec))) / 3600.0  # de-quantise seconds
    frac = m + (1.0 - m) * (cum[h] + w[h] * within_hour)
    frac[midnight] = m * rng.random(int(midnight.sum()))  # 00:00:00 fills the atom [0, m)
    act = (df["day"].to_numpy() + frac) * 86400.0

    t = pd.DataFrame({"user": df["user"].to_numpy(), "act": act}).sort_values(["user", "act"], kind="stable")
    gap = t.groupby("user")["act"].diff().to_numpy()
    users = t["user"].to_numpy()
    ok = ~np.isnan(gap)
    lg = np.log(gap[ok])
    lu = users[ok]
    g = pd.DataFrame({"user": lu, "lg": lg}).groupby("user")["lg"].agg(["mean", "var", "count"])
    user_mean = g["mean"].reindex(lu).to_numpy()
    centred = lg - user_mean
    q = np.quantile(centred, GAP_PROBS)
    return {
        "window_days": int(df["day"].max() - df["day"].min() + 1),
        "midnight_share": round(m, 5),
        "hour_weights": [round(float(x), 6) for x in w],
        "log_gap_probs": [round(p, 4) for p in GAP_PROBS],
        "log_gap_quantiles": [round(float(x), 4) for x in q],
    }


def activity(df: pd.DataFrame) -> dict:
    """Spread of per-user activity: row counts, and rows per day of the user's span."""
    t = df["day"] * 86400 + df["sec"]
    g = t.groupby(df["user"]).agg(["min", "max", "count"])
    per_day = g["count"] / np.maximum((g["max"] - g["min"]) / 86400, 1.0)
    q = np.quantile(g["count"], [0.0, 0.25, 0.5, 0.75, 1.0])
    return {
        "tx_count_quartiles": [int(round(x)) for x in q],
        "tx_per_day_median": round(float(per_day.median()), 4),
        "tx_per_day_log_sd": round(float(np.log(per_day).std(ddof=1)), 4),
    }


def dirichlet_concentration(df: pd.DataFrame, codes: list[int], shares: list[float]) -> float:
    """Method of moments for a Dirichlet-multinomial with known mean ``shares``.

    E sum_k (p_uk - s_k)^2 = sum_k s_k (1 - s_k) * (1/n_u + (1 - 1/n_u) / (a + 1)).
    """
    cat = np.where(df["mcc"].isin(codes), df["mcc"], -1)
    s = pd.Series(list(shares) + [1.0 - sum(shares)], index=list(codes) + [-1])
    tab = pd.crosstab(df["user"], cat).reindex(columns=s.index, fill_value=0)
    n = tab.sum(axis=1)
    tab, n = tab[n >= MIN_USER], n[n >= MIN_USER]
    p = tab.div(n, axis=0)
    ss = ((p - s) ** 2).sum(axis=1)  # per user
    v = float((s * (1 - s)).sum())
    # sum_u ss_u = v * sum_u (1/n_u) + v * sum_u (1 - 1/n_u) * r,   r = 1 / (a + 1)
    r = (ss.sum() / v - (1 / n).sum()) / (1 - 1 / n).sum()
    return float(1.0 / r - 1.0)


def compact_json(obj, indent: int = 0) -> str:
    """JSON with one line per list (numbers stay on one line), indented dicts."""
    pad = " " * (indent + 2)
    if isinstance(obj, dict):
        items = [f"{pad}{json.dumps(k)}: {compact_json(v, indent + 2)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    return json.dumps(obj, ensure_ascii=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    df = load(args.data)
    rng = np.random.default_rng(SEED)
    mcc = mcc_table(df)
    calib = {
        "source": {
            "file": args.data.name,
            "description": "Sberbank Data Science Journey 2016 transactions.csv, first 259,999 rows "
            "(real, anonymized card transactions; amounts in anonymized units)",
            "rows": int(len(df)),
            "users": int(df["user"].nunique()),
            "days": int(df["day"].max() - df["day"].min() + 1),
            "script": "benchmarks/calibrate_synthetic.py",
        },
        "mcc": mcc,
        "amount": amount_model(df, mcc["codes"]),
        "time": time_model(df, rng),
        "users": {
            "mcc_concentration": round(dirichlet_concentration(df, mcc["codes"], mcc["shares"]), 4),
            **activity(df),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = compact_json(calib) + "\n"
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(text.encode())} bytes)")


if __name__ == "__main__":
    main()
