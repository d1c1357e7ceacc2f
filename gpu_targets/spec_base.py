"""The vocabulary of a config: constants, :class:`ConfigError`, durations and the base
model every config model derives from (strict, frozen, no unknown keys).

Imported by :mod:`gpu_targets.spec` (which re-exports it) and :mod:`.spec_target`.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict

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


class _KeyProblem(ValueError):
    """A cross-field rule broken at a sub-key of the model being validated."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


class _DuplicateName(ValueError):
    def __init__(self, index: int, name: str, column: str, first: int):
        self.index, self.name, self.column, self.first = index, name, column, first
        super().__init__(f"duplicate output column {column!r} (already made by targets[{first}])")
