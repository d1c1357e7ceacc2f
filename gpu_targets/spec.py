"""What a synthetic target is: the config model of ``SPEC.md`` and its validation.

This module imports nothing heavy (no NumPy, no engine): a config is validated, and every
error reported as a :class:`ConfigError`, before any data is read. Rooms: the vocabulary
(constants, :class:`ConfigError`, durations) is :mod:`.spec_base`; one target (window,
``where:``, derived targets) :mod:`.spec_target`; this module the config as a whole and
:func:`load_config`; :mod:`.spec_errors` words pydantic's errors, :mod:`.spec_yaml`
reads YAML. Everything is importable from here.

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
import os
from typing import Any, Literal, Optional, Union

from pydantic import Field, ValidationError, field_validator, model_validator

from .spec_base import (  # noqa: F401 - the vocabulary, used here and re-exported
    AGGREGATIONS,
    ConfigError,
    DERIVATIONS,
    DURATION_MODES,
    DURATION_UNITS_NS,
    FORMATS,
    MAX_DURATION_NS,
    MAX_K,
    MAX_PERIODS,
    MAX_ROWS,
    PERIODS,
    PERIOD_MODES,
    ROWS_MODES,
    STRING_VALUE_AGGREGATIONS,
    TIME_AGGREGATIONS,
    TIME_UNITS,
    WHERE_OPERATORS,
    parse_duration,
    _DURATION_ALLOWED,
    _DURATION_RE,
    _DuplicateName,
    _KeyProblem,
    _Model,
    _NAME_RE,
    _short,
)
from .spec_target import AnyTarget, Derived, Target, Where, Window  # noqa: F401

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
