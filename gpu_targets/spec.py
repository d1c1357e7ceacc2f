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
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "AGGREGATIONS",
    "Columns",
    "Config",
    "ConfigError",
    "DURATION_UNITS_NS",
    "PERIODS",
    "Target",
    "Window",
    "load_config",
    "parse_duration",
]

PERIODS = ("hour", "day", "week", "month", "quarter", "year")
PERIOD_MODES = ("expanding", "full", "next")
DURATION_MODES = ("trailing", "forward")
AGGREGATIONS = ("count", "sum", "mean", "min", "max", "std", "any", "topk")
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


def parse_duration(text: str) -> int:
    """Parse a SPEC.md duration string into integer nanoseconds.

    Parameters
    ----------
    text : str
        An integer followed by ``s``, ``min``, ``h``, ``d`` or ``w`` (``"7d"``, ``"30min"``).

    Returns
    -------
    int
        The duration in nanoseconds (> 0).

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
    if value <= 0:
        raise ValueError(f"{_short(text)} is not a positive duration")
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
    """A window: a calendar ``period`` or an absolute ``duration`` (SPEC.md 2.1).

    ``{period: P, mode: expanding|full|next}`` or ``{duration: D, mode: trailing|forward}``;
    exactly one of ``period`` and ``duration``.
    """

    period: Optional[Literal["hour", "day", "week", "month", "quarter", "year"]] = None
    duration: Optional[str] = None
    mode: Literal["expanding", "full", "next", "trailing", "forward"]

    @field_validator("duration")
    @classmethod
    def _check_duration(cls, v: Optional[str]) -> Optional[str]:
        if v is not None:
            parse_duration(v)
        return v

    @model_validator(mode="after")
    def _check_kind(self) -> "Window":
        if (self.period is None) == (self.duration is None):
            raise ValueError("give exactly one of 'period' and 'duration'")
        return self

    @property
    def kind(self) -> str:
        """``"period"`` or ``"duration"``."""
        return "period" if self.period is not None else "duration"

    @property
    def duration_ns(self) -> int:
        """The duration in nanoseconds (duration windows only)."""
        if self.duration is None:
            raise AttributeError("a period window has no duration")
        return parse_duration(self.duration)

    @property
    def looks_ahead(self) -> bool:
        """True for windows that include later transactions: ``next`` and ``forward``, and
        ``full`` (the rest of the current period). Such targets are labels, not features."""
        return self.mode in ("full", "next", "forward")


class Target(_Model):
    """One synthetic target (SPEC.md section 2).

    The output is one float32 column named ``name`` (``topk``: ``k`` columns
    ``name_1`` .. ``name_k``).
    """

    name: str
    agg: Literal["count", "sum", "mean", "min", "max", "std", "any", "topk"]
    k: Optional[int] = None
    mcc: Optional[Union[int, list[int]]] = None
    sign: Literal["any", "negative", "positive"] = "any"
    abs: bool = False
    window: Window
    fill: float = 0.0

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
        w = self.window
        allowed = PERIOD_MODES if w.period is not None else DURATION_MODES
        if w.mode not in allowed:
            raise _KeyProblem(
                "window.mode", f"mode {w.mode!r} does not belong to a {w.kind} window; allowed: {', '.join(allowed)}"
            )
        return self

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
    targets: list[Target] = Field(min_length=1)

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

    @property
    def output_columns(self) -> list[str]:
        """All target column names in config order (``topk`` expanded)."""
        return [c for t in self.targets for c in t.output_columns]

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
    "period": ", ".join(PERIODS),
    "mode": "expanding, full, next (period windows); trailing, forward (duration windows)",
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
