"""Render ``docs/config-reference.md`` from the pydantic model of :mod:`gpu_targets.spec`.

Keys, types, allowed values and defaults are read from the models (``Config``,
``Columns``, ``Target``, ``Window``); the error messages are those
:func:`gpu_targets.spec.load_config` raises for the bad configs of :data:`ERROR_CASES`,
run at generation time. Only the one-line meaning of each key is written here, in
:data:`MEANINGS`, and generation fails when a model key has no meaning or a meaning has
no key, so a key added to the model cannot be left out of the page.

``tests/test_docs.py`` and the docs hook check that the committed page equals a fresh
rendering. After changing the config model, regenerate it::

    .venv/bin/python docs/hooks/config_reference.py          # rewrites docs/config-reference.md
    .venv/bin/python docs/hooks/config_reference.py --check  # exit 1 when it is stale
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path

import yaml
from pydantic import BaseModel

from gpu_targets import spec
from gpu_targets.spec import Columns, Config, ConfigError, Derived, FormatOptions, Target, Where, Window, load_config

PAGE = Path(__file__).resolve().parents[1] / "config-reference.md"

#: model -> (section title, YAML path of its keys)
SECTIONS = [
    (Config, "Top level", ""),
    (Columns, "`columns`: the role columns", "columns."),
    (Target, "`targets[]`: one target", "targets[]."),
    (Window, "`targets[].window`: the window", "targets[].window."),
    (Where, "`targets[].where[]`: a filter on any column [v2]", "targets[].where[]."),
    (Derived, "`targets[]` with `derive`: a derived target [v2]", "targets[]."),
    (FormatOptions, "`format_options`: options of the input adapter", "format_options."),
]

#: (model, key) -> what the key means; every model field needs one.
MEANINGS = {
    (Config, "columns"): "Names of the four role columns of the input (SPEC.md 1). Extra input columns "
    "are carried through to the output untouched.",
    (Config, "time_unit"): "Unit of an integer time column, counted from 1970-01-01 UTC. Required when the "
    "time column holds integers (no unit is guessed); ignored for datetime and ISO-string columns.",
    (Config, "timezone"): "IANA time zone in which calendar periods are cut (local wall-clock time). "
    "Durations are absolute and do not depend on it. Naive datetimes are read as UTC.",
    (Config, "on_invalid"): "Rows with a null user or time: `error` stops with a message naming the column, "
    "the count and the first rows; `drop` leaves them out of the output and logs how many.",
    (Config, "format"): "Input schema: `generic` reads the `columns:` names; `sdsj2016` and `tabformer` read "
    "those datasets' own columns and encodings (the CLI's `--format` overrides this key).",
    (Config, "format_options"): "Options of the input adapter chosen by `format` (see its section below).",
    (FormatOptions, "start_date"): "`sdsj2016` only: the date of day 0 of `tr_datetime` (the real one was hidden; "
    "default 1970-01-01), so weeks and months are real ones; the output's `tr_timestamp` column is "
    "`tr_datetime` parsed from it.",
    (Config, "targets"): "The targets, at least one; their output columns follow the input's columns in this order.",
    (Columns, "user"): "The entity whose history is aggregated (card, client, account): integers or strings; a "
    "list of columns (`[client, card]`) makes each distinct tuple of their values one user (format generic).",
    (Columns, "time"): "datetime64 (any unit; naive = UTC), ISO-8601 strings, or integers with `time_unit`.",
    (Columns, "amount"): "The aggregated value: integers or floats; a null amount contributes to no window.",
    (Columns, "mcc"): "Merchant category code (integer); a null matches no `mcc:` filter.",
    (Target, "name"): "Output column name (`topk`: `name_1` .. `name_k`). Unique across the config, "
    "matching `[A-Za-z_][A-Za-z0-9_]*`, and not the name of an input column.",
    (Target, "agg"): "Aggregation of the values V(i) in the window (table below).",
    (Target, "k"): "Number of largest values kept by `topk` (1 <= k <= 1000, one output column each); only with `agg: topk`.",
    (Target, "mcc"): "Filter: only transactions with one of these MCCs (integers 0..9999; one integer is a "
    "one-element list). Omitted: every MCC, null included.",
    (Target, "sign"): "Filter on the sign of the amount, before `abs`: `negative` (amount < 0, e.g. debits), "
    "`positive` (amount > 0); zero passes only `any`.",
    (Target, "abs"): "Aggregate the absolute amount instead of the amount.",
    (Target, "window"): "Which transactions of the same user are aggregated (next section).",
    (Target, "fill"): "Value of an empty window for `mean`, `min`, `max`, `std` (also when fewer than 2 "
    "values), the missing places of `topk` and [v2] `first`, `last`, `median`, `quantile`, `time_to_next`, "
    "`time_since_last`; `count`, `sum`, `any` and `nunique` give 0. Default 0.0, and NaN for the two time "
    "aggregations (no event: censored). May be `.nan` or `\"nan\"`.",
    (Window, "period"): "A calendar period of local wall-clock time (weeks start on Monday, ISO).",
    (Window, "duration"): "An absolute duration: a positive integer and a unit (`90s`, `30min`, `12h`, `7d`, `2w`).",
    (Window, "mode"): "With `period`: `expanding` (period to date, up to and including the transaction), "
    "`full` (the whole period), `next` (the whole next period), `previous` (the period before). With "
    "`duration` D or `rows` N: `trailing` (up to the transaction), `forward` (strictly after it). "
    "Table below.",
    (Window, "rows"): "[v2] A number N >= 1 of the user's transactions in `(time, input row)` order "
    "(`trailing`: the N ending at the transaction, itself included; `forward`: the next N).",
    (Window, "periods"): "[v2] Period windows only: N >= 1 periods. `expanding`/`full`: the current "
    "period and the N - 1 before it; `next`: the N after it; `previous`: the N before it.",
    (Window, "offset"): "[v2] Duration windows: a gap G (`1d`, `0s`) between the transaction and the "
    "window (`trailing`: (t - G - D, t - G]; `forward`: (t + G, t + G + D]). Rows windows: K "
    "transactions skipped (an integer >= 0).",
    (Target, "q"): "[v2] The quantile, 0 <= q <= 1 (linear interpolation, numpy's default); only with "
    "`agg: quantile`.",
    (Target, "value"): "[v2] The input column aggregated instead of the amount: integers, floats or booleans; "
    "any column (strings too) for `count`, `any` and `nunique`.",
    (Target, "where"): "[v2] Filters on any input column, all of which must hold (next sections); `mcc` and "
    "`sign` are shorthands of such filters.",
    (Where, "column"): "The input column the conditions test (any column of the input, role columns included).",
    (Where, "in_"): "The value is one of these (numbers or strings).",
    (Where, "not_in"): "The value is none of these (a null still fails).",
    (Where, "eq"): "The value equals this number or string.",
    (Where, "ne"): "The value differs from this number or string (a null still fails).",
    (Where, "gt"): "The value is greater than this number (numeric columns only).",
    (Where, "ge"): "The value is at least this number.",
    (Where, "lt"): "The value is less than this number.",
    (Where, "le"): "The value is at most this number.",
    (Derived, "name"): "Output column name, as for an aggregated target.",
    (Derived, "derive"): "`ratio`: a / b of exactly two columns; `linear`: coef_1 x_1 + coef_2 x_2 + ...",
    (Derived, "of"): "Output columns of targets listed earlier (a `topk`'s `name_j` included), read as "
    "float32 values.",
    (Derived, "coef"): "`linear` only: one number per column of `of` (default all 1.0).",
    (Derived, "fill"): "The value where the result is not a finite number (a zero denominator, a NaN input).",
}

#: Window modes: (window kind, mode) -> W(i) from SPEC.md 2.1.
MODES = {
    ("period", "expanding"): "P(t_i) - N < P(t_j) <= P(t_i) and pos(j) <= pos(i): the period to date, "
    "including i, and the N - 1 periods before it",
    ("period", "full"): "P(t_i) - N < P(t_j) <= P(t_i): the whole period containing i and the N - 1 before it",
    ("period", "next"): "P(t_i) < P(t_j) <= P(t_i) + N: the N whole periods after i's",
    ("period", "previous"): "P(t_i) - N <= P(t_j) < P(t_i): the N whole periods before i's",
    ("duration", "trailing"): "t_i - G - D < t_j <= t_i - G (G = 0: also pos(j) <= pos(i), so including i)",
    ("duration", "forward"): "t_i + G < t_j <= t_i + G + D: strictly later transactions only",
    ("rows", "trailing"): "pos(i) - K - N < pos(j) <= pos(i) - K: the N transactions ending K before i",
    ("rows", "forward"): "pos(i) + K < pos(j) <= pos(i) + K + N: the N transactions after skipping K",
}

#: Aggregations: (value over V(i), value of an empty V(i)), SPEC.md 2.2.
AGGREGATIONS = {
    "count": ("number of values", "0"),
    "sum": ("sum (float64, compensated)", "0"),
    "mean": ("sum / count", "`fill`"),
    "min": ("smallest value", "`fill`"),
    "max": ("largest value", "`fill`"),
    "std": ("sample standard deviation (ddof = 1); fewer than 2 values give `fill`", "`fill`"),
    "any": ("1 if V(i) is not empty (a binary label)", "0"),
    "topk": ("the k largest values, descending, in columns `name_1` .. `name_k`; missing places get `fill`",
             "all `fill`"),
    "first": ("[v2] the value of the earliest row of V(i)", "`fill`"),
    "last": ("[v2] the value of the latest row of V(i)", "`fill`"),
    "nunique": ("[v2] the number of distinct values (-0.0 equals 0.0; strings allowed)", "0"),
    "median": ("[v2] the middle value, or the mean of the two middle ones", "`fill`"),
    "quantile": ("[v2] quantile `q`, linear interpolation between the sorted values (numpy's default)", "`fill`"),
    "time_to_next": ("[v2] seconds from the transaction to the earliest row of V(i) (`next`, `forward` windows)",
                     "`fill` (NaN by default: censored)"),
    "time_since_last": ("[v2] seconds since the latest row of V(i) other than the transaction itself "
                        "(`expanding`, `previous`, `trailing` windows)", "`fill` (NaN by default: censored)"),
}

_T = "{name: t, agg: sum, window: {period: day, mode: expanding}}"
#: (rule, a config breaking it as YAML): the message shown is what load_config raises for it.
ERROR_CASES = [
    ("unknown key", "targets: [{name: t, agg: sum, weight: 2, window: {period: day, mode: expanding}}]"),
    ("misspelt required key (named, with the likely fix)",
     "targets: [{name: t, agg: sum, windw: {period: day, mode: expanding}}]"),
    ("missing required key", "targets: [{name: t, agg: sum}]"),
    ("no targets", "targets: []"),
    ("wrong type (no coercion: `\"5411\"` is not an integer)",
     "targets: [{name: t, agg: sum, mcc: '5411', window: {period: day, mode: expanding}}]"),
    ("value not allowed", "targets: [{name: t, agg: medain, window: {period: day, mode: expanding}}]"),
    ("bad column name", "targets: [{name: 2x, agg: sum, window: {period: day, mode: expanding}}]"),
    ("duplicate name", f"targets: [{_T}, {_T}]"),
    ("output column clash (`topk` expands to `name_1..name_k`)",
     ("targets: [{name: a, agg: topk, k: 2, window: {period: day, mode: full}}, "
      "{name: a_1, agg: max, window: {period: day, mode: full}}]")),
    ("`topk` without `k`", "targets: [{name: t, agg: topk, window: {period: day, mode: full}}]"),
    ("`k` without `topk`", "targets: [{name: t, agg: max, k: 3, window: {period: day, mode: full}}]"),
    ("MCC out of range", "targets: [{name: t, agg: sum, mcc: [54110], window: {period: day, mode: expanding}}]"),
    ("empty MCC list", "targets: [{name: t, agg: sum, mcc: [], window: {period: day, mode: expanding}}]"),
    ("both `period` and `duration`",
     "targets: [{name: t, agg: sum, window: {period: day, duration: 1d, mode: expanding}}]"),
    ("neither `period` nor `duration`", "targets: [{name: t, agg: sum, window: {mode: trailing}}]"),
    ("mode of the other window kind", "targets: [{name: t, agg: sum, window: {period: day, mode: trailing}}]"),
    ("bad duration", "targets: [{name: t, agg: sum, window: {duration: 7days, mode: trailing}}]"),
    ("zero duration", "targets: [{name: t, agg: sum, window: {duration: 0d, mode: forward}}]"),
    ("`fill` not a number", "targets: [{name: t, agg: mean, fill: true, window: {period: day, mode: full}}]"),
    ("unknown time zone", f"timezone: Europe/Atlantis\ntargets: [{_T}]"),
    ("bad time unit", f"time_unit: minutes\ntargets: [{_T}]"),
    ("role columns not distinct", f"columns: {{user: id, time: id}}\ntargets: [{_T}]"),
    ("[v2] `quantile` without `q`", "targets: [{name: t, agg: quantile, window: {rows: 10, mode: trailing}}]"),
    ("[v2] `q` out of range", "targets: [{name: t, agg: quantile, q: 1.5, window: {rows: 10, mode: trailing}}]"),
    ("[v2] `q` without `quantile`", "targets: [{name: t, agg: median, q: 0.5, window: {rows: 10, mode: trailing}}]"),
    ("[v2] `periods` on a duration window",
     "targets: [{name: t, agg: sum, window: {duration: 7d, mode: trailing, periods: 2}}]"),
    ("[v2] `offset` on a period window",
     "targets: [{name: t, agg: sum, window: {period: month, mode: previous, offset: 1d}}]"),
    ("[v2] negative offset", "targets: [{name: t, agg: sum, window: {duration: 7d, mode: forward, offset: -1d}}]"),
    ("[v2] a rows window's offset is an integer",
     "targets: [{name: t, agg: sum, window: {rows: 5, mode: trailing, offset: 1d}}]"),
    ("[v2] both `rows` and `duration`", "targets: [{name: t, agg: sum, window: {rows: 5, duration: 1d, mode: forward}}]"),
    ("[v2] `time_to_next` on a past window",
     "targets: [{name: t, agg: time_to_next, window: {duration: 7d, mode: trailing}}]"),
    ("[v2] `time_since_last` on `full`", "targets: [{name: t, agg: time_since_last, window: {period: day, mode: full}}]"),
    ("[v2] `where` entry without a condition",
     "targets: [{name: t, agg: count, where: [{column: tr_type}], window: {rows: 5, mode: trailing}}]"),
    ("[v2] order operator with a string",
     "targets: [{name: t, agg: count, where: [{column: tr_type, gt: abc}], window: {rows: 5, mode: trailing}}]"),
    ("[v2] derived target naming a later target",
     "targets: [{name: r, derive: ratio, of: [a, b]}, {name: a, agg: sum, window: {rows: 5, mode: trailing}}, "
     "{name: b, agg: count, window: {rows: 5, mode: trailing}}]"),
    ("[v2] `ratio` of three columns",
     f"targets: [{_T.replace('name: t', 'name: a')}, {{name: r, derive: ratio, of: [a, a, a]}}]"),
    ("[v2] `coef` of another length",
     f"targets: [{_T.replace('name: t', 'name: a')}, {{name: r, derive: linear, of: [a], coef: [1.0, 2.0]}}]"),
]


def _type_text(annotation) -> tuple[str, list]:
    """(type in words, allowed literal values or []) of a field annotation."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is typing.Any:
        return "number", []
    if origin is typing.Annotated:  # a tagged union member, or the union of targets[]
        return _type_text(args[0])
    if origin is typing.Literal:
        kinds = {type(a) for a in args}
        if kinds != {str}:
            raise TypeError(f"no rendering for literal values {args!r}")
        return "string", list(args)
    if origin in (typing.Union, types.UnionType):
        parts = [a for a in args if a is not type(None)]
        texts, allowed = [], []
        for a in parts:
            text, values = _type_text(a)
            texts.append(text)
            allowed += values
        return " or ".join(texts), allowed
    if origin is list:
        (item,) = args
        text, _ = _type_text(item)
        return f"list of {text}s" if not text.startswith("mapping") else "list of mappings", []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping", []
    import datetime

    names = {str: "string", int: "integer", float: "number", bool: "boolean", datetime.date: "date (YYYY-MM-DD)"}
    if annotation in names:
        return names[annotation], []
    raise TypeError(f"no rendering for the annotation {annotation!r}: extend _type_text")


def _yaml_scalar(value) -> str:
    text = yaml.safe_dump(value, default_flow_style=True).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _default_text(field) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return f"`{_yaml_scalar(value.model_dump())}`"
        return f"`{_yaml_scalar(value)}`"
    if field.default is None:
        return "none"
    return f"`{_yaml_scalar(field.default)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _text(text: str) -> str:
    """Plain text (an error message) as a table cell: Markdown's special characters escaped."""
    for ch in "\\`*_[]>":
        text = text.replace(ch, "\\" + ch)
    return _cell(text.replace("<", "&lt;"))


def _check_meanings() -> None:
    fields = {(model, key) for model, _, _ in SECTIONS for key in model.model_fields}
    missing = sorted(f"{m.__name__}.{k}" for m, k in fields - MEANINGS.keys())
    extra = sorted(f"{m.__name__}.{k}" for m, k in MEANINGS.keys() - fields)
    if missing or extra:
        raise RuntimeError(
            f"docs/hooks/config_reference.py MEANINGS is out of step with gpu_targets.spec: "
            f"keys without a meaning {missing}, meanings without a key {extra}"
        )
    modes = typing.get_args(Window.model_fields["mode"].annotation)
    aggs = typing.get_args(Target.model_fields["agg"].annotation)
    if {m for _, m in MODES} != set(modes) or set(AGGREGATIONS) != set(aggs):
        raise RuntimeError(f"MODES/AGGREGATIONS differ from the model's modes {modes} and aggregations {aggs}")


def _key_table(model: type[BaseModel], prefix: str) -> list[str]:
    lines = ["| key | type | default | allowed values | meaning |", "|---|---|---|---|---|"]
    for key, field in model.model_fields.items():
        type_text, literal = _type_text(field.annotation)
        allowed = spec._ALLOWED_BY_KEY.get(key, "")  # what the error message says is allowed
        if literal:
            allowed = ", ".join(f"`{v}`" for v in literal)
            if key in spec._ALLOWED_BY_KEY and key != "mode":
                expected = ", ".join(str(v) for v in literal)
                if spec._ALLOWED_BY_KEY[key] != expected:
                    raise RuntimeError(f"spec._ALLOWED_BY_KEY[{key!r}] is {spec._ALLOWED_BY_KEY[key]!r}, "
                                       f"the model allows {expected!r}")
        meaning = MEANINGS[(model, key)]
        lines.append(f"| `{prefix}{field.alias or key}` | {type_text} | {_default_text(field)} | {_cell(allowed) or '-'} "
                     f"| {_cell(meaning)} |")
    return lines


def _error_table() -> list[str]:
    lines = ["| rule | config | message (`ConfigError`) |", "|---|---|---|"]
    for rule, text in ERROR_CASES:
        try:
            load_config(yaml.safe_load(text))
        except ConfigError as err:
            message = str(err)
        else:
            raise RuntimeError(f"error case {rule!r} did not raise ConfigError: {text}")
        lines.append(f"| {_cell(rule)} | `{_cell(text.replace(chr(10), '; '))}` | {_text(message)} |")
    return lines


def render() -> str:
    """The Markdown of ``docs/config-reference.md``."""
    _check_meanings()
    out = [
        "# Config reference",
        "",
        "<!-- Generated by docs/hooks/config_reference.py from gpu_targets.spec; do not edit by hand.",
        "     Regenerate with: .venv/bin/python docs/hooks/config_reference.py -->",
        "",
        "A config is a YAML file (or a `dict`, or a `gpu_targets.spec.Config`) read by",
        "`gpu_targets.load_config`; `gpu-targets validate CONFIG` checks one and lists its",
        "columns. Every key below is checked before any data is read: unknown keys and",
        "values of the wrong type are errors (no type coercion), and each error is one",
        "`ConfigError` naming the key path, the value and what is allowed. The meaning of a",
        "target is defined in [the spec](spec.md); the [guide](guide.md) draws it.",
        "",
        "```yaml",
        "columns: {user: user_id, time: timestamp, amount: amount, mcc: mcc}",
        "time_unit: s",
        "timezone: UTC",
        "on_invalid: error",
        "format: generic",
        "targets:",
        "  - {name: grocery_daily_cumsum, agg: sum, mcc: [5411], window: {period: day, mode: expanding}}",
        "  - {name: drug_mean_next_week, agg: mean, mcc: [5912], fill: .nan, window: {period: week, mode: next}}",
        "  - {name: top_atm_30d, agg: topk, k: 3, mcc: [6011], sign: negative, abs: true,",
        "     window: {duration: 30d, mode: trailing}}",
        "```",
        "",
    ]
    example = "\n".join(out[out.index("```yaml") + 1: out.index("```", out.index("```yaml") + 1)])
    load_config(yaml.safe_load(example))  # the example above must be valid
    for model, title, prefix in SECTIONS:
        out += [f"## {title}", ""]
        if model.__doc__:
            out += [" ".join(model.__doc__.split("\n\n")[0].split()), ""]
        out += _key_table(model, prefix) + [""]
        if model is Window:
            out += ["### Window modes", "",
                    "t is the time, pos(j) the rank of row j in its user's `(time, input row)` order,",
                    "P(t) the period index of t. Modes that look ahead make labels, not features.", "",
                    "| mode | window kind | W(i) | use |", "|---|---|---|---|"]
            example = {"period": {"period": "day"}, "duration": {"duration": "1d"}, "rows": {"rows": 1}}
            for (kind, m), definition in MODES.items():
                label = Window(**example[kind], mode=m).looks_ahead
                use = "label (looks ahead)" if label else "feature (past only)"
                out.append(f"| `{m}` | {kind} | {_cell(definition)} | {use} |")
            out += ["", "### Duration units", "", "| unit | seconds |", "|---|---:|"]
            out += [f"| `{u}` | {ns // 1_000_000_000:,} |" for u, ns in spec.DURATION_UNITS_NS.items()]
            out += [""]
        if model is Target:
            out += ["### Aggregations", "",
                    "V(i): the non-null values (the amount, or the `value` column; absolute with `abs`)",
                    "of W(i) passing the `mcc`, `sign` and `where` filters. Every target column is",
                    "float32; arithmetic is float64.", "",
                    "| agg | value | empty V(i) |", "|---|---|---|"]
            out += [f"| `{a}` | {_cell(v)} | {e} |" for a, (v, e) in AGGREGATIONS.items()]
            out += [""]
    out += [
        "## Errors",
        "",
        "Each row is a config breaking one rule and the message `load_config` gives for it",
        "(computed when this page was generated). The CLI prints the same message after",
        "`error: ` and exits with code 2.",
        "",
    ]
    out += _error_table() + [""]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
        if current != text:
            print(f"{PAGE} is stale: run .venv/bin/python docs/hooks/config_reference.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
