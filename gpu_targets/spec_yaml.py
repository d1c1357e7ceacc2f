"""Reading a config's YAML: PyYAML's safe loader, strict about keys given twice, with
errors that name the file and line (a :class:`~gpu_targets.spec.ConfigError`).

Called by :func:`gpu_targets.spec.load_config` for a path or a YAML string.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

from .spec import ConfigError, _short

__all__ = ["read_yaml"]


def _strict_loader():
    """PyYAML's safe loader (the C one when libyaml is there: ~10x faster) that rejects a
    key given twice in one mapping instead of keeping the last."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class StrictLoader(base):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` merges; flatten_mapping handles it
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:  # a list or mapping as a key
                    raise yaml.constructor.ConstructorError(
                        None, None, f"a key must be a plain value, not {type(key).__name__}", key_node.start_mark
                    ) from None
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {_short(key, 60)} (a key may be given once)", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    return StrictLoader


def read_yaml(source: Union[str, os.PathLike]) -> Any:
    """The YAML document at the path ``source``, or in the string ``source`` (a string is a
    path when it has no newline and ends in .yaml/.yml, names a file, or has no colon).

    Raises
    ------
    ConfigError
        The file is missing, unreadable, not UTF-8, or not valid YAML (with its line).
    """
    import yaml

    text: str
    where: str
    text_ = str(source)
    is_path = isinstance(source, os.PathLike) or (
        "\n" not in text_ and (text_.endswith((".yaml", ".yml")) or os.path.exists(text_) or ":" not in text_)
    )
    if is_path:
        path = Path(source)
        if not path.is_file():
            raise ConfigError("", f"config file {str(path)!r} not found")
        try:
            text, where = path.read_text(encoding="utf-8"), str(path)
        except UnicodeDecodeError as err:
            raise ConfigError("", f"config file {str(path)!r} is not UTF-8 text (byte {err.start}: "
                                  f"{err.object[err.start:err.start + 1]!r})") from None
        except OSError as err:
            raise ConfigError("", f"cannot read config file {str(path)!r}: {err.strerror or err}") from None
    else:
        text, where = str(source), "<string>"
    try:
        return yaml.load(text, Loader=_strict_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError("", f"{where}{line}: not valid YAML ({getattr(err, 'problem', err)})") from None
