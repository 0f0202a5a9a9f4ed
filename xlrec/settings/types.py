"""Settings values checked against their dataclass annotations: the one place types are enforced.

Hand-written rather than a validation library: the rules are few and strict on purpose (a
quoted "no" is not a boolean, 1.5 is not an integer, NaN is not a learning rate), and every
refusal must name the setting, the value, the expected type and where the value came from.
"""

from __future__ import annotations

import math
import numbers
import re
import typing
from typing import Any

from xlrec.errors import ConfigError

# YAML 1.1 (PyYAML) reads 1e-3 (no dot) as a string; such strings are numbers, nothing else is.
_YAML11_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
# the scalar types a setting may have (alone, in a list, or with None)
SUPPORTED_TYPES = (int, float, bool, str)


def inner_type(hint: Any, of_list: bool = False) -> Any:
    """The scalar type of a setting's annotation (`int | None` -> int), `list` for a list setting,
    or with `of_list` the type of a list setting's items (`list[int]` -> int)."""
    args = typing.get_args(hint)
    if type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return inner_type(inner[0], of_list) if len(inner) == 1 else hint
    if typing.get_origin(hint) is list:
        return typing.get_args(hint)[0] if of_list else list
    return hint


def describe(hint: Any) -> str:
    args = typing.get_args(hint)
    if type(None) in args:
        return " or ".join(describe(a) for a in args if a is not type(None)) + " or null"
    if typing.get_origin(hint) is list:
        return f"a list of {describe(typing.get_args(hint)[0]).removeprefix('an ').removeprefix('a ')}s"
    return {int: "an integer", float: "a finite number", bool: "true or false", str: "a string"}.get(hint, str(hint))


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def coerce(key: str, value: Any, hint: Any, origin: str) -> Any:
    """`value` as the type `hint` of setting `key` (from `origin`), or a ConfigError."""
    args = typing.get_args(hint)
    if type(None) in args:
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            try:
                return coerce(key, value, inner[0], origin)
            except ConfigError:
                pass
        raise _type_error(key, value, hint, origin)
    if typing.get_origin(hint) is list:
        if not isinstance(value, list):
            raise _type_error(key, value, hint, origin)
        elem = typing.get_args(hint)[0]
        try:
            return [coerce(key, v, elem, origin) for v in value]
        except ConfigError:
            raise _type_error(key, value, hint, origin) from None
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
    elif hint is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        number = _number(value)
        if number is not None and math.isfinite(number) and number.is_integer():
            return int(number)
    elif hint is float:
        number = _number(value)
        if number is not None and math.isfinite(number):
            return number
    elif hint is str:
        if isinstance(value, str):
            return value
    else:  # a field type this loader does not know: a programming error, not a user's
        raise TypeError(f"no coercion for setting {key!r} of type {hint!r}")
    raise _type_error(key, value, hint, origin)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        try:
            return float(value)
        except (OverflowError, ValueError):
            return None
    if isinstance(value, str) and _YAML11_FLOAT.fullmatch(value.strip()):
        return float(value)
    return None


def _type_error(key: str, value: Any, hint: Any, origin: str) -> ConfigError:
    finite = " (NaN and infinity are not accepted)" if hint in (float, float | None) else ""
    return ConfigError(
        f"{origin}: setting {key!r} must be {describe(hint)}{finite}, got {show(value)} "
        f"({type(value).__name__}). Fix the flag or the --config file and run again."
    )
