"""A setting is one dataclass field: its type annotation, its default and its help text.

`setting(default, "help")` is `dataclasses.field` with the help (and, where a setting needs them,
its flag's name or its allowed values) kept in the field's metadata. Everything a user sees of a
setting is read from there: the command-line flag (`--embedding-dim`, xlrec.cli.flags), the YAML
key of a --config file or a sweep spec, the spec's grid axis and the MLflow param (the field's
name, `TrainConfig.to_dict`). So a new setting is one line in its dataclass and nothing else.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterator
from dataclasses import MISSING
from typing import Any


def setting(
    default: Any = MISSING,
    help: str = "",
    *,
    factory: Callable[[], Any] | None = None,
    flag: str | None = "",
    choices: tuple[Any, ...] | None = None,
    key: str | None = "",
    minimum: float | None = None,
    parse: Callable[[Any], Any] | None = None,
) -> Any:
    """A dataclass field that is a user-facing setting.

    `flag`: the command-line flag; "" derives it from the name (`max_len` -> `--max-len`), None
    means the setting has no flag of its own (it is set from another flag, e.g. `data_file` from
    `--dataset PATH`). `choices`: the values the setting accepts (shown in the help and checked
    where the config is checked). `key`: where a file holds it ("" = its name; a dotted path such
    as `resources.cpus_per_trial` in a sweep spec; None = in no file). `minimum`: the smallest
    value a number may take. `parse`: reads a value its type annotation cannot describe (a GPU
    share or `auto`), raising ValueError with the reason.
    """
    metadata = {"help": help, "flag": flag, "choices": choices, "key": key, "minimum": minimum, "parse": parse}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class SettingInfo:
    """What a setting's field declares, as the CLI, the spec reader and the docs read it."""

    name: str
    hint: Any  # the resolved type annotation
    default: Any
    help: str
    flag: str | None  # "--max-len", or None for a setting without a flag of its own
    choices: tuple[Any, ...] | None
    key: str | None = None  # its place in a file (dotted), or None
    minimum: float | None = None
    parse: Callable[[Any], Any] | None = None

    @property
    def is_switch(self) -> bool:
        """A boolean setting: `--NAME` / `--no-NAME` on the command line."""
        return self.hint is bool


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def settings_of(cls: type, skip: tuple[str, ...] = (), declared_only: bool = False) -> Iterator[SettingInfo]:
    """The settings a dataclass declares, in declaration order (ClassVars are not fields). A
    model's settings class may use plain defaults (`dim: int = 64`): every field is a setting;
    `declared_only` keeps only the fields made with `setting` (a sweep spec's structure is not)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init or (declared_only and "help" not in f.metadata):
            continue
        flag, key = f.metadata.get("flag", ""), f.metadata.get("key", "")
        if f.default is not MISSING:
            default = f.default
        else:
            default = f.default_factory() if f.default_factory is not MISSING else None
        yield SettingInfo(
            name=f.name,
            hint=hints[f.name],
            default=default,
            help=f.metadata.get("help", ""),
            flag=flag_name(f.name) if flag == "" else flag,
            choices=f.metadata.get("choices"),
            key=f.name if key == "" else key,
            minimum=f.metadata.get("minimum"),
            parse=f.metadata.get("parse"),
        )


def hints_of(cls: type, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Setting name -> its type annotation."""
    return {s.name: s.hint for s in settings_of(cls, skip)}
