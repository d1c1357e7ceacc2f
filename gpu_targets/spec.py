"""What a synthetic target is: the config model of ``SPEC.md`` and its validation.

This module imports nothing heavy (no NumPy, no engine): a config is validated, and every
error reported as a :class:`ConfigError`, before any data is read.

A config is loaded from a YAML file, a YAML string, a ``dict`` or built from the Python
objects below::

    >>> from gpu_targets.spec import load_config
    >>> cfg = load_config({"time_unit": "D", "targets": [
    ...     {"name": "grocery_daily_cumsum", "agg": "sum", "mcc": [5411],
    ...      "window": {"period": "day", "mode": "expanding"}}]})
    >>> cfg.targets[0].window.kind
    'period'
    >>> cfg.output_columns
    ['grocery_daily_cumsum']
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator,
                      model_validator)

__all__ = [
    "AGGREGATIONS",
    "Columns",
    "Config",
    "ConfigError",
    "DURATION_UNITS_NS",
    "Derived",
    "PERIODS",
    "Target",
    "Where",
    "Window",
    "load_config",
    "parse_duration",
]

PERIODS = ("hour", "day", "week", "month", "quarter", "year")
PERIOD_MODES = ("expanding", "full", "next", "previous")
DURATION_MODES = ("trailing", "forward")
ROWS_MODES = ("trailing", "forward")
AGGREGATIONS = ("count", "sum", "mean", "min", "max", "std", "any", "topk",
                "first", "last", "nunique", "median", "quantile", "time_to_next", "time_since_last")
#: [v2] Aggregations whose value column may hold strings (only its nulls and distinct values matter).
STRING_VALUE_AGGREGATIONS = ("count", "any", "nunique")
#: [v2] Times in seconds to the first element of a later window / since the last of an earlier one.
TIME_AGGREGATIONS = ("time_to_next", "time_since_last")
DERIVATIONS = ("ratio", "linear")
#: [v2] ``where:`` operators: (key, the condition in words).
WHERE_OPERATORS = ("in", "not_in", "eq", "ne", "gt", "ge", "lt", "le")
TIME_UNITS = ("s", "ms", "us", "ns", "D")
FORMATS = ("generic", "sdsj2016", "tabformer")

#: Nanoseconds per duration unit (SPEC.md 2.1: ``s``, ``min``, ``h``, ``d``, ``w``).
DURATION_UNITS_NS = {
    "s": 1_000_000_000,
    "min": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
    "d": 86400 * 1_000_000_000,
    "w": 7 * 86400 * 1_000_000_000,
}
# ASCII digits only (``\d`` would accept "٧d"); \Z, not $, which also matches before a final newline
_DURATION_RE = re.compile(r"\A[ \t]*(-?[0-9]+)[ \t]*(s|min|h|d|w)[ \t]*\Z")
_NAME_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")
#: Longest duration window: 36,500 days (100 years); longer ones overflow int64 ns sums of times.
MAX_DURATION_NS = 36_500 * 86_400 * 10**9
#: Largest ``k`` of a top-k target (one output column per place).
MAX_K = 1_000
#: Distinct ``(mcc, sign)`` filters one config may use (the engines' one 64-bit filter word).
MAX_FILTERS = 64
#: [v2] Largest ``periods: N`` of a period window (about 11 years of hours).
MAX_PERIODS = 100_000
#: [v2] Largest ``rows: N`` and ``offset: K`` of a rows window.
MAX_ROWS = 1 << 31
_DURATION_ALLOWED = "a positive integer followed by s, min, h, d or w (90s, 30min, 12h, 7d, 2w), at most 36500d"


def _short(value: Any, limit: int = 200) -> str:
    """``repr(value)`` of at most about ``limit`` characters, without building the whole
    repr first (a YAML alias bomb expands to billions of elements)."""
    import reprlib

    r = reprlib.Repr()
    r.maxstring = r.maxother = r.maxlong = limit
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = 8
    r.maxlevel = 3
    text = r.repr(value)
    if "..." not in text and len(text) <= limit:  # small: the plain repr (reprlib sorts dict keys)
        return repr(value)
    return text if len(text) <= limit + 20 else text[:limit] + "...'"


class ConfigError(ValueError):
    """A config that breaks SPEC.md section 4.

    Attributes
    ----------
    path : str
        Key path of the offending value, e.g. ``targets[3].window.duration``.
    value : Any
        The offending value (``None`` when a key is missing).
    allowed : str
        What would have been accepted.
    """

    def __init__(self, path: str, message: str, value: Any = None, allowed: str = ""):
        self.path = path
        self.value = value
        self.allowed = allowed
        text = f"{path}: {message}" if path else message
        if allowed:
            text += f"; allowed: {allowed}"
        #: Every problem found in the config, this one first (a config is checked whole,
        #: so three typos are reported in one run, not three).
        self.problems: list[ConfigError] = [self]
        super().__init__(text)

    @classmethod
    def of_problems(cls, problems: list["ConfigError"]) -> "ConfigError":
        """One error carrying several: ``path``/``value``/``allowed`` of the first, a
        message listing all of them (one per line after the first line)."""
        if len(problems) == 1:
            return problems[0]
        first = problems[0]
        err = cls(first.path, "", first.value, first.allowed)
        err.problems = list(problems)
        err.args = (f"{len(problems)} problems in the config:\n" + "\n".join(f"  {p}" for p in problems),)
        return err


def parse_duration(text: str, *, allow_zero: bool = False) -> int:
    """Parse a SPEC.md duration string into integer nanoseconds.

    Parameters
    ----------
    text : str
        An integer followed by ``s``, ``min``, ``h``, ``d`` or ``w`` (``"7d"``, ``"30min"``).
    allow_zero : bool
        Accept a zero duration (``"0s"``: a window's ``offset``, SPEC.md 2.1 [v2]).

    Returns
    -------
    int
        The duration in nanoseconds (> 0, or >= 0 with ``allow_zero``).

    Raises
    ------
    ValueError
        When the text does not match (ASCII digits only), the duration is zero or
        negative, or longer than ``MAX_DURATION_NS`` (36,500 days).

    Examples
    --------
    >>> parse_duration("90s")
    90000000000
    """
    m = _DURATION_RE.match(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"{_short(text)} is not a duration")
    value = int(m.group(1))
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{_short(text)} is not a {'non-negative' if allow_zero else 'positive'} duration")
    ns = value * DURATION_UNITS_NS[m.group(2)]
    if ns > MAX_DURATION_NS:
        raise ValueError(f"{_short(text)} is longer than the longest duration window, 36500d (100 years)")
    return ns


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Columns(_Model):
    """Names of the four role columns of SPEC.md section 1.

    ``user`` may name several columns (``[User, Card]``: TabFormer's cards, accounts
    within clients): a user is then one distinct tuple of their values.
    """

    user: Union[str, list[str]] = "user_id"
    time: str = "timestamp"
    amount: str = "amount"
    mcc: str = "mcc"

    @field_validator("user")
    @classmethod
    def _user_names(cls, v):
        if isinstance(v, list):
            if not v:
                raise ValueError("a composite user needs at least one column name")
            if len(set(v)) != len(v):
                raise ValueError(f"the user columns must be distinct, got {v}")
            return v[0] if len(v) == 1 else v
        return v

    @property
    def user_columns(self) -> list[str]:
        """The user column names as a list (one, or the parts of a composite user)."""
        return list(self.user) if isinstance(self.user, list) else [self.user]

    @model_validator(mode="after")
    def _distinct(self) -> "Columns":
        names = [*self.user_columns, self.time, self.amount, self.mcc]
        if len(set(names)) != len(names):
            raise ValueError(f"the role columns must be distinct, got {names}")
        return self


class Window(_Model):
    """A window (SPEC.md 2.1): exactly one of a calendar ``period``, an absolute
    ``duration`` or a number of transactions ``rows`` [v2], and a ``mode``.

    ``{period: P, mode: expanding|full|next|previous, periods: N}``,
    ``{duration: D, mode: trailing|forward, offset: G}`` (G a duration, default 0s) or
    ``{rows: N, mode: trailing|forward, offset: K}`` (K an integer, default 0).
    """

    period: Optional[Literal["hour", "day", "week", "month", "quarter", "year"]] = None
    duration: Optional[str] = None
    rows: Optional[int] = None
    mode: Literal["expanding", "full", "next", "previous", "trailing", "forward"]
    periods: Optional[int] = None
    offset: Optional[Union[str, int]] = None

    @field_validator("duration")
    @classmethod
    def _check_duration(cls, v: Optional[str]) -> Optional[str]:
        if v is not None:
            parse_duration(v)
        return v

    @model_validator(mode="after")
    def _check_kind(self) -> "Window":
        given = [k for k in ("period", "duration", "rows") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'period', 'duration' and 'rows'"
                             + (f" (got {', '.join(given)})" if given else ""))
        kind = given[0]
        allowed = {"period": PERIOD_MODES, "duration": DURATION_MODES, "rows": ROWS_MODES}[kind]
        if self.mode not in allowed:
            raise _KeyProblem("mode", f"mode {self.mode!r} does not belong to a {kind} window; "
                              f"allowed: {', '.join(allowed)}")
        if self.periods is not None:
            if kind != "period":
                raise _KeyProblem("periods", f"periods is for period windows, not a {kind} window")
            if isinstance(self.periods, bool) or not 1 <= self.periods <= MAX_PERIODS:
                raise _KeyProblem("periods", f"periods needs an integer N, 1 <= N <= {MAX_PERIODS} (got {self.periods!r})")
        if kind == "rows" and (isinstance(self.rows, bool) or not 1 <= self.rows <= MAX_ROWS):
            raise _KeyProblem("rows", f"rows needs an integer N, 1 <= N <= {MAX_ROWS} (got {self.rows!r})")
        if self.offset is not None:
            if kind == "period":
                raise _KeyProblem("offset", "offset is for duration and rows windows; a period window looks "
                                  "back with mode previous and periods")
            if kind == "duration":
                if not isinstance(self.offset, str):
                    raise _KeyProblem("offset", f"the offset of a duration window is a duration such as 1d or 0s "
                                      f"(got {_short(self.offset)})")
                try:
                    g = parse_duration(self.offset, allow_zero=True)
                except ValueError as err:
                    raise _KeyProblem("offset", f"{err}; give a duration such as 1d or 0s") from None
                if g + parse_duration(self.duration) > MAX_DURATION_NS:
                    raise _KeyProblem("offset", "duration + offset is longer than 36500d (100 years)")
            elif isinstance(self.offset, bool) or not isinstance(self.offset, int) \
                    or not 0 <= self.offset <= MAX_ROWS:
                raise _KeyProblem("offset", f"the offset of a rows window is an integer K, 0 <= K <= {MAX_ROWS} "
                                  f"(got {_short(self.offset)})")
        return self

    @property
    def kind(self) -> str:
        """``"period"``, ``"duration"`` or ``"rows"``."""
        if self.period is not None:
            return "period"
        return "duration" if self.duration is not None else "rows"

    @property
    def duration_ns(self) -> int:
        """The duration in nanoseconds (duration windows only)."""
        if self.duration is None:
            raise AttributeError("only a duration window has a duration")
        return parse_duration(self.duration)

    @property
    def n_periods(self) -> int:
        """N of a period window (``periods``, default 1)."""
        return 1 if self.periods is None else self.periods

    @property
    def offset_ns(self) -> int:
        """G of a duration window in nanoseconds (default 0)."""
        return parse_duration(self.offset, allow_zero=True) if self.kind == "duration" and self.offset else 0

    @property
    def offset_rows(self) -> int:
        """K of a rows window (default 0)."""
        return int(self.offset) if self.kind == "rows" and self.offset is not None else 0

    @property
    def is_v1(self) -> bool:
        """True for the windows of SPEC version 1: a period (N = 1, not ``previous``) or a
        duration without an offset."""
        if self.kind == "period":
            return self.n_periods == 1 and self.mode != "previous"
        return self.kind == "duration" and self.offset_ns == 0

    @property
    def looks_ahead(self) -> bool:
        """True for windows that can hold transactions later than the row (``full``,
        ``next``, ``forward``): their targets are labels; the others (``expanding``,
        ``previous``, ``trailing``) are features (SPEC.md 2.1)."""
        return self.mode in ("full", "next", "forward")


class Where(_Model):
    """One ``where:`` entry (SPEC.md 2.3 [v2]): a column and one or more conditions, all
    of which must hold; a null value fails every condition."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)

    column: str
    in_: Optional[list[Union[int, float, str]]] = Field(default=None, alias="in")
    not_in: Optional[list[Union[int, float, str]]] = None
    eq: Optional[Union[int, float, str]] = None
    ne: Optional[Union[int, float, str]] = None
    gt: Optional[Any] = None
    ge: Optional[Any] = None
    lt: Optional[Any] = None
    le: Optional[Any] = None

    @model_validator(mode="after")
    def _check_conditions(self) -> "Where":
        if not self.conditions:
            raise ValueError(f"a where entry needs a column and at least one of {', '.join(WHERE_OPERATORS)}")
        for op in ("gt", "ge", "lt", "le"):
            v = getattr(self, op)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise _KeyProblem(op, f"{op} compares numbers only (got {_short(v)})")
        for op in ("in_", "not_in"):
            if getattr(self, op) == []:
                raise _KeyProblem(op.rstrip("_"), "the list is empty")
        return self

    @property
    def conditions(self) -> list[tuple[str, Any]]:
        """``[(operator, value), ...]`` in the order of :data:`WHERE_OPERATORS`."""
        out = []
        for op in WHERE_OPERATORS:
            v = getattr(self, "in_" if op == "in" else op)
            if v is not None:
                out.append((op, tuple(v) if isinstance(v, list) else v))
        return out

    @property
    def key(self) -> tuple:
        """A hashable identity of the entry (equal entries make one filter)."""
        return (self.column, tuple(self.conditions))


class Target(_Model):
    """One synthetic target (SPEC.md section 2).

    The output is one float32 column named ``name`` (``topk``: ``k`` columns
    ``name_1`` .. ``name_k``).
    """

    name: str
    agg: Literal["count", "sum", "mean", "min", "max", "std", "any", "topk",
                 "first", "last", "nunique", "median", "quantile", "time_to_next", "time_since_last"]
    k: Optional[int] = None
    q: Optional[float] = None
    value: Optional[str] = None
    mcc: Optional[Union[int, list[int]]] = None
    sign: Literal["any", "negative", "positive"] = "any"
    where: Optional[list[Where]] = None
    abs: bool = False
    window: Window
    fill: float = 0.0

    @model_validator(mode="before")
    @classmethod
    def _time_fill(cls, data):
        """``fill`` defaults to NaN for time_to_next / time_since_last (censored)."""
        if isinstance(data, dict) and data.get("agg") in TIME_AGGREGATIONS and "fill" not in data:
            data = {**data, "fill": math.nan}
        return data

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(f"{_short(v)} is not a valid column name ([A-Za-z_][A-Za-z0-9_]*)")
        return v

    @field_validator("mcc")
    @classmethod
    def _check_mcc(cls, v):
        if v is None:
            return v
        codes = [v] if isinstance(v, int) else list(v)
        if not codes:
            raise ValueError("the mcc list is empty (omit 'mcc' to include every MCC)")
        for c in codes:
            if isinstance(c, bool) or not 0 <= c <= 9999:
                raise ValueError(f"{c!r} is not an MCC (an integer 0..9999)")
        return sorted(set(codes))

    @field_validator("fill", mode="before")
    @classmethod
    def _check_fill(cls, v):
        if isinstance(v, str) and v.strip().lower() in ("nan", ".nan"):
            return math.nan
        if isinstance(v, bool):
            raise ValueError("fill must be a number")
        return v

    @model_validator(mode="after")
    def _check_k(self) -> "Target":
        if self.agg == "topk":
            if self.k is None or isinstance(self.k, bool) or not 1 <= self.k <= MAX_K:
                raise _KeyProblem("k", f"topk needs an integer k >= 1 and <= {MAX_K} (got {self.k!r})")
        elif self.k is not None:
            raise _KeyProblem("k", f"k is only for agg topk, not {self.agg} (got k={self.k!r})")
        if self.agg == "quantile":
            if self.q is None or not 0.0 <= self.q <= 1.0:
                raise _KeyProblem("q", f"quantile needs a number q, 0 <= q <= 1 (got {self.q!r})")
        elif self.q is not None:
            raise _KeyProblem("q", f"q is only for agg quantile, not {self.agg} (got q={self.q!r})")
        w = self.window
        if self.agg == "time_to_next" and w.mode not in ("next", "forward"):
            raise _KeyProblem("window.mode", f"time_to_next needs a window whose rows all come after the "
                              f"transaction (mode next or forward), not {w.mode}")
        if self.agg == "time_since_last" and w.mode not in ("expanding", "previous", "trailing"):
            raise _KeyProblem("window.mode", f"time_since_last needs a window of earlier rows (mode expanding, "
                              f"previous or trailing), not {w.mode}")
        if self.where == []:
            raise _KeyProblem("where", "the where list is empty (omit 'where' to keep every row)")
        return self

    @property
    def is_v1(self) -> bool:
        """True when the target uses SPEC version 1 keys only (no ``where``, ``value``,
        v2 aggregation or v2 window)."""
        return (self.agg in AGGREGATIONS[:8] and self.where is None and self.value is None
                and self.window.is_v1)

    @property
    def output_columns(self) -> list[str]:
        """Output column names, in order."""
        if self.agg == "topk":
            return [f"{self.name}_{i}" for i in range(1, self.k + 1)]
        return [self.name]

    @property
    def mcc_codes(self) -> Optional[tuple[int, ...]]:
        """The MCC filter as a sorted tuple, or ``None`` for all MCCs."""
        return None if self.mcc is None else tuple(self.mcc)


class Derived(_Model):
    """A derived target (SPEC.md 2.4 [v2]): a ratio or linear combination of output
    columns of targets listed earlier, computed from their float32 values as float64.

    ``ratio``: a / b (exactly two inputs); ``linear``: coef_1 x_1 + coef_2 x_2 + ...
    (``coef`` default all 1.0). A result that is not finite (a zero denominator, a NaN
    input) is ``fill`` (default NaN).
    """

    name: str
    derive: Literal["ratio", "linear"]
    of: list[str] = Field(min_length=1)
    coef: Optional[list[float]] = None
    fill: float = math.nan

    _check_name = field_validator("name")(Target._check_name.__func__)
    _check_fill = field_validator("fill", mode="before")(Target._check_fill.__func__)

    @model_validator(mode="after")
    def _check_inputs(self) -> "Derived":
        if self.derive == "ratio":
            if len(self.of) != 2:
                raise _KeyProblem("of", f"ratio needs exactly two inputs, a / b (got {len(self.of)})")
            if self.coef is not None:
                raise _KeyProblem("coef", "coef is for derive: linear")
        elif self.coef is not None and len(self.coef) != len(self.of):
            raise _KeyProblem("coef", f"coef needs one number per input of 'of' ({len(self.of)}), got {len(self.coef)}")
        return self

    @property
    def output_columns(self) -> list[str]:
        """``[name]``."""
        return [self.name]

    @property
    def coefficients(self) -> list[float]:
        """``coef``, or all 1.0."""
        return list(self.coef) if self.coef is not None else [1.0] * len(self.of)


def _target_kind(data: Any) -> str:
    """The member of ``targets[]`` an entry is validated as: ``derived`` when it has a
    ``derive`` key, else ``aggregated``."""
    if isinstance(data, dict):
        return "derived" if "derive" in data else "aggregated"
    return "derived" if isinstance(data, Derived) else "aggregated"


AnyTarget = Annotated[Union[Annotated[Target, Tag("aggregated")], Annotated[Derived, Tag("derived")]],
                      Discriminator(_target_kind)]


class FormatOptions(_Model):
    """Options of the input adapter that the format key chooses."""

    #: ``sdsj2016``: the calendar date of day 0 of ``tr_datetime`` (the real one was
    #: hidden; default 1970-01-01). A date (YAML ``2014-08-01``) or an ISO string.
    start_date: Optional[_dt.date] = None

    @field_validator("start_date", mode="before")
    @classmethod
    def _iso_date(cls, v):
        if isinstance(v, _dt.datetime):
            raise ValueError(f"{_short(v)} is a date and time; give a date (2014-08-01)")
        if isinstance(v, str):
            try:
                v = _dt.date.fromisoformat(v)
            except ValueError:
                raise ValueError(f"{_short(v)} is not a date (YYYY-MM-DD, e.g. 2014-08-01)") from None
        if isinstance(v, _dt.date) and not _dt.date(1678, 1, 1) <= v <= _dt.date(2200, 1, 1):
            raise ValueError(f"{v} is outside 1678-01-01 .. 2200-01-01")
        return v


#: Columns an input adapter adds to the output (after the input's, before the targets).
ADDED_COLUMNS = {"sdsj2016": ("tr_timestamp",)}


class Config(_Model):
    """A config file (SPEC.md section 4)."""

    columns: Columns = Field(default_factory=Columns)
    time_unit: Optional[Literal["s", "ms", "us", "ns", "D"]] = None
    timezone: str = "UTC"
    on_invalid: Literal["error", "drop"] = "error"
    format: Literal["generic", "sdsj2016", "tabformer"] = "generic"
    format_options: FormatOptions = Field(default_factory=FormatOptions)
    targets: list[AnyTarget] = Field(min_length=1)

    @model_validator(mode="after")
    def _options_fit_the_format(self) -> "Config":
        if self.format_options.start_date is not None and self.format != "sdsj2016":
            raise _KeyProblem("format_options.start_date",
                              f"start_date sets day 0 of format sdsj2016's tr_datetime, not of format {self.format}")
        if self.format != "generic" and self.columns != Columns():
            raise _KeyProblem("columns", f"format {self.format} reads its own columns; 'columns' is for format "
                              "generic (name your columns there, or rename them to the format's)")
        for i, t in enumerate(self.targets):
            clash = [c for c in t.output_columns if c in ADDED_COLUMNS.get(self.format, ())]
            if clash:
                raise _KeyProblem(f"targets[{i}].name",
                                  f"{clash[0]!r} is the column format {self.format} adds to the output; rename the target")
        return self

    @field_validator("timezone")
    @classmethod
    def _check_tz(cls, v: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a path
            raise ValueError(f"{_short(v)} is not an IANA time zone name (e.g. UTC, Europe/Moscow)") from None
        return v

    @model_validator(mode="after")
    def _filters_fit(self) -> "Config":
        filters: dict[tuple, int] = {}
        for i, t in enumerate(self.targets):
            if not isinstance(t, Target):
                continue
            key = (t.mcc_codes, t.sign)
            if key not in filters:
                if len(filters) == MAX_FILTERS:
                    raise _KeyProblem(
                        f"targets[{i}]",
                        f"target {t.name!r} needs a distinct mcc/sign filter beyond the {MAX_FILTERS} a config may "
                        f"use (targets[0..{i - 1}] use {MAX_FILTERS}); split the config in two")
                filters[key] = i
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> "Config":
        seen: dict[str, int] = {}
        for i, t in enumerate(self.targets):
            for col in t.output_columns:
                if col in seen:
                    raise _DuplicateName(i, t.name, col, seen[col])
                seen[col] = i
        return self

    @model_validator(mode="after")
    def _derived_inputs_come_first(self) -> "Config":
        earlier: set = set()
        for i, t in enumerate(self.targets):
            if isinstance(t, Derived):
                for j, name in enumerate(t.of):
                    if name not in earlier:
                        later = any(name in u.output_columns for u in self.targets[i:])
                        raise _KeyProblem(f"targets[{i}].of[{j}]",
                                          f"{name!r} is {'a later' if later else 'not an'} output column; a derived "
                                          "target combines columns of targets listed before it")
            earlier.update(t.output_columns)
        return self

    @property
    def output_columns(self) -> list[str]:
        """All target column names in config order (``topk`` expanded)."""
        return [c for t in self.targets for c in t.output_columns]

    @property
    def aggregated(self) -> list[Target]:
        """The targets that aggregate transactions (not :class:`Derived`), in config order."""
        return [t for t in self.targets if isinstance(t, Target)]

    @property
    def is_v1(self) -> bool:
        """True when every target uses SPEC version 1 keys only."""
        return all(isinstance(t, Target) and t.is_v1 for t in self.targets)

    @property
    def label_flags(self) -> list[bool]:
        """Per output column: True for a label (its window can hold later transactions;
        a derived target when any of its inputs is one), False for a feature (SPEC.md 2.1)."""
        flags: dict[str, bool] = {}
        for t in self.targets:
            for c in t.output_columns:
                flags[c] = t.window.looks_ahead if isinstance(t, Target) else any(flags[x] for x in t.of)
        return [flags[c] for c in self.output_columns]

    def with_targets(self, names: list[str]) -> "Config":
        """A copy keeping only the named targets, in the given order."""
        by_name = {t.name: t for t in self.targets}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise ConfigError("targets", f"no target named {missing[0]!r}", missing[0], ", ".join(by_name))
        return self.model_copy(update={"targets": [by_name[n] for n in names]})


class _KeyProblem(ValueError):
    """A cross-field rule broken at a sub-key of the model being validated."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


class _DuplicateName(ValueError):
    def __init__(self, index: int, name: str, column: str, first: int):
        self.index, self.name, self.column, self.first = index, name, column, first
        super().__init__(f"duplicate output column {column!r} (already made by targets[{first}])")


_ALLOWED_BY_KEY = {
    "agg": ", ".join(AGGREGATIONS),
    "derive": ", ".join(DERIVATIONS),
    "period": ", ".join(PERIODS),
    "mode": "expanding, full, next, previous (period windows); trailing, forward (duration and rows windows)",
    "sign": "any, negative, positive",
    "time_unit": ", ".join(TIME_UNITS),
    "on_invalid": "error, drop",
    "format": ", ".join(FORMATS),
    "duration": _DURATION_ALLOWED,
}


def load_config(source: Union["Config", dict, str, os.PathLike]) -> Config:
    """Load and validate a config.

    Parameters
    ----------
    source : Config, dict, str or path-like
        A :class:`Config` (returned as is), a mapping with the keys of SPEC.md section 4,
        a path to a YAML file, or a YAML document as a string.

    Returns
    -------
    Config
        The validated, immutable config.

    Raises
    ------
    ConfigError
        With the key path (``targets[3].window.duration``), the bad value and what is
        allowed, or naming the file that cannot be read or parsed.
    """
    if isinstance(source, Config):
        return source
    raw: Any = source
    if isinstance(source, (str, os.PathLike)):
        from .spec_yaml import read_yaml

        raw = read_yaml(source)
    if not isinstance(raw, dict):
        raise ConfigError("", f"a config must be a mapping with a 'targets' list, got {type(raw).__name__}")
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        from .spec_errors import from_validation_error

        raise from_validation_error(err, raw) from None
