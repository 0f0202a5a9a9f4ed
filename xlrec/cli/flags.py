"""Command-line flags derived from the settings dataclasses: a setting's flag, type and help text
come from its field (xlrec.settings.setting), never from a second list.

Every flag defaults to None ("not given"), so the layers below it (defaults, --config) keep their
values; a value is only parsed here (its type, leniently: MLproject passes "" for an unset
parameter and 50.0 for an integer) and checked where every config is checked (xlrec.config).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from typing import Any

from xlrec.settings import SettingInfo
from xlrec.settings.types import SUPPORTED_TYPES, inner_type


def lenient(typ: type) -> Callable[[str], Any]:
    """Parse a flag value; "" means "not given" and "50.0" is a valid int (MLproject passes
    empty strings for unset parameters and has no integer type)."""

    def parse(text: str):
        if text == "":
            return None
        if typ is int:
            try:
                value = float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
            if value != int(value):
                raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
            return int(value)
        if typ is float:
            try:
                return float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        return typ(text)

    parse.__name__ = typ.__name__
    return parse


def lenient_list(typ: type) -> Callable[[str], Any]:
    """A list setting as comma-separated values (`--slstm-at 0,2`)."""
    item = lenient(typ)

    def parse(text: str):
        if text == "":
            return None
        return [item(x.strip()) for x in text.split(",") if x.strip()]

    parse.__name__ = f"list of {typ.__name__}"
    return parse


def parse_bool(text: str) -> bool | None:
    if text == "":
        return None
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_flag(p: argparse._ActionsContainer, flag: str, **kwargs: Any) -> None:
    """A flag, and for a multi-word one its underscore spelling, unlisted: `mlflow run -P max_len=64`
    passes a parameter its MLproject entry does not declare as `--max_len 64`."""
    p.add_argument(flag, **kwargs)
    under = "--" + flag[2:].replace("-", "_")
    if under != flag:
        p.add_argument(under, **{**kwargs, "help": argparse.SUPPRESS})


def add_switch(p: argparse._ActionsContainer, name: str, on_help: str, off_help: str, dest: str | None = None) -> None:
    """`--NAME` (or `--NAME=false`, as MLproject passes it) and `--no-NAME`; unset is None (the default)."""
    dest = dest or name.replace("-", "_")
    group = p.add_mutually_exclusive_group()
    add_flag(group, f"--{name}", dest=dest, nargs="?", const=True, type=parse_bool, default=None, help=on_help)
    group.add_argument(f"--no-{name}", dest=dest, action="store_false", help=off_help)


def _help(info: SettingInfo) -> str:
    text = info.help or info.name
    if info.choices:
        text += f": {' | '.join(map(str, info.choices))}"
    return text


def add_setting_flags(p: argparse._ActionsContainer, infos: Iterable[SettingInfo]) -> list[SettingInfo]:
    """One flag per setting that has one (a switch pair for a boolean); returns those added."""
    added = []
    existing = {opt for action in p._actions for opt in action.option_strings}
    for info in infos:
        if info.flag is None or info.flag in existing:
            continue
        existing.add(info.flag)
        if info.is_switch:
            add_switch(
                p,
                info.flag[2:],
                f"{_help(info)} (default {str(info.default).lower()})",
                f"the opposite of --{info.flag[2:]}",
                dest=info.name,
            )
        else:
            scalar = inner_type(info.hint)
            is_list = scalar is list
            if is_list:
                parse = lenient_list(inner_type(info.hint, of_list=True))
            else:
                assert scalar in SUPPORTED_TYPES, (info.name, info.hint)
                parse = lenient(scalar)
            add_flag(p, info.flag, dest=info.name, type=parse, default=None, help=_help(info))
        added.append(info)
    return added


def given(args: argparse.Namespace, infos: Iterable[SettingInfo]) -> dict[str, Any]:
    """The settings' values from the parsed flags (None: not given)."""
    return {info.name: getattr(args, info.name, None) for info in infos}
