"""Config errors as users read them: pydantic's validation errors turned into
:class:`~gpu_targets.spec.ConfigError` problems, each with its key path
(``targets[3].window.duration``), the target's name, the bad value, what is allowed and
the likely fix of a misspelt key or value (SPEC.md section 4).

Called by :func:`gpu_targets.spec.load_config` when validation fails; nothing else.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from pydantic import ValidationError

from .spec import (
    _ALLOWED_BY_KEY,
    Columns,
    Config,
    ConfigError,
    FormatOptions,
    Target,
    Where,
    Window,
    _DuplicateName,
    _KeyProblem,
    _short,
)

__all__ = ["from_validation_error"]


#: The member tags pydantic puts in an error's location when a union is tried (not user keys).
_UNION_TAGS = ("function-", "list[", "int", "str", "date")


def _loc_to_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(_UNION_TAGS) and out:
            continue  # union member tags added by pydantic, not user keys
        else:
            out += ("." if out else "") + str(part)
    return out


def _target_label(raw: Any, loc: tuple) -> str:
    if len(loc) >= 2 and loc[0] == "targets" and isinstance(loc[1], int):
        try:
            name = raw["targets"][loc[1]].get("name")
        except (KeyError, IndexError, TypeError, AttributeError):
            name = None
        if isinstance(name, str):
            return f" (target {_short(name, 60)})"
    return ""


#: The model that validates a key's value (where to look for a misspelt key's fix).
_MODEL_OF_KEY: dict = {"columns": Columns, "targets": Target, "window": Window, "format_options": FormatOptions,
                       "where": Where}
#: The tags of ``targets[]``'s members (:data:`gpu_targets.spec.AnyTarget`), dropped from locations.
_TARGET_TAGS = ("aggregated", "derived")


def _known_keys(loc: tuple) -> list[str]:
    """The keys allowed beside the last part of ``loc`` (a target's, a window's...)."""
    parents = [str(p) for p in loc[:-1] if isinstance(p, str) and not str(p).startswith(_UNION_TAGS)]
    model = _MODEL_OF_KEY.get(parents[-1]) if parents else Config
    return [f.alias or k for k, f in model.model_fields.items()] if model is not None else []




def _did_you_mean(word: Any, candidates: list[str]) -> str:
    close = difflib.get_close_matches(str(word), candidates, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def from_validation_error(err: ValidationError, raw: Any) -> ConfigError:
    """Every problem pydantic found, each with its key path, value and what is allowed.

    A misspelt required key shows up as "missing" plus "unknown key" beside it: it is
    reported once, as the unknown key (what the user wrote) with the likely fix."""
    errors = err.errors(include_url=False)
    for e in errors:  # a target is validated as one member of targets[]: its tag is not a user key
        e["loc"] = tuple(p for p in e["loc"] if p not in _TARGET_TAGS)
    explained_missing: set = set()
    for e in errors:
        if e["type"] != "extra_forbidden":
            continue
        parent = tuple(e["loc"])[:-1]
        missing = [str(x["loc"][-1]) for x in errors if x["type"] == "missing" and tuple(x["loc"])[:-1] == parent]
        close = difflib.get_close_matches(str(e["loc"][-1]), missing, n=1, cutoff=0.6)
        if close:  # the unknown key is the missing one misspelt: one problem, not two
            explained_missing.add((*map(str, parent), close[0]))
            e["_hint"] = f"; did you mean {close[0]!r}?"
        else:
            e["_hint"] = _did_you_mean(e["loc"][-1], _known_keys(tuple(e["loc"])))
    # a value tried against each member of a union fails once per member: one problem
    # per key, the most specific (deepest) member's
    by_key: dict = {}
    for e in errors:
        if e["type"] == "missing" and tuple(map(str, e["loc"])) in explained_missing:
            continue
        loc = tuple(e["loc"])
        tag = next((i for i, part in enumerate(loc) if isinstance(part, str) and part.startswith(_UNION_TAGS)
                    and i > 0), None)
        key = loc[:tag] if tag is not None else loc
        if key not in by_key or len(loc) > len(by_key[key]["loc"]):
            by_key[key] = e
    problems = [_one_problem(e, raw) for e in by_key.values()]
    return ConfigError.of_problems(problems)


def _one_problem(e: dict, raw: Any) -> ConfigError:
    loc = tuple(e["loc"])
    path = _loc_to_path(loc)
    msg = e["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    etype = e["type"]
    value = e.get("input")
    if etype == "missing":
        msg = "required key is missing"
        value = None
    elif etype == "extra_forbidden":
        msg = f"unknown key (value {_short(value)}){e.get('_hint', '')}"
    elif not isinstance(value, dict):
        msg = f"{msg} (got {_short(value)})"
        if etype == "literal_error":
            msg += _did_you_mean(value, re.findall(r"'([^']*)'", str(e.get("ctx", {}).get("expected", ""))))
    key = str(loc[-1]) if loc else ""
    allowed = _ALLOWED_BY_KEY.get(key, "") if etype != "extra_forbidden" else ""
    problem = e.get("ctx", {}).get("error")
    if isinstance(problem, _KeyProblem):
        path = f"{path}.{problem.key}" if path else problem.key
        msg = str(problem)
        m = re.match(r"targets\[(\d+)\]", path)
        if m:  # a rule of the whole config broken at one target: name it
            loc = ("targets", int(m.group(1)))
    if isinstance(problem, _DuplicateName):
        d = problem
        path = f"targets[{d.index}].name"
        msg = str(d)
        value = d.name
        loc = ("targets", d.index)
    return ConfigError(path + _target_label(raw, loc), msg, value, allowed)
