"""What one target is (SPEC.md 2): its window, its ``where:`` filters and, for a
derived target, its inputs. :class:`Target` aggregates transactions, :class:`Derived`
combines earlier targets' columns; ``targets[]`` of a config holds either
(:data:`AnyTarget`, told apart by the ``derive`` key).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from .spec_base import (
    DURATION_MODES,
    MAX_DURATION_NS,
    MAX_K,
    MAX_PERIODS,
    MAX_ROWS,
    PERIOD_MODES,
    ROWS_MODES,
    TIME_AGGREGATIONS,
    WHERE_OPERATORS,
    AGGREGATIONS,
    _KeyProblem,
    _Model,
    _NAME_RE,
    _short,
    parse_duration,
)

__all__ = ["AnyTarget", "Derived", "Target", "Where", "Window"]


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
