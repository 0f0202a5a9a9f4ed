"""The model registry: a model name -> its class and its settings class, loaded when used.

Three sources, one namespace:
- the built-in models below;
- installed plugins: a package registers `NAME = "package.module:Class"` in the entry-point group
  `xlrec.models` (its pyproject's `[project.entry-points."xlrec.models"]`), no edit to xlrec;
- `--model package.module:Class` for a class not installed as a package: registered for this
  process under the class's `name`, and through XLREC_MODELS (`NAME=package.module:Class,...`)
  for the processes it starts (a sweep's Ray workers). A user may set XLREC_MODELS too.

A saved or registered model records only its name, never code to import: loading it resolves
the name here, so a plugin model loads only where its plugin is installed (RELIABILITY.md).

A model class declares `name`, `settings_class` (a `ModelSettings` dataclass) and optionally
`defaults_file` (a YAML file beside its module: per dataset, the settings it starts from). What
a model must satisfy to be trained (a `SequentialRecommender`, its output shapes) is checked by
xlrec.rec_models.build_model; what can be checked without building one is checked here, once,
and every breach is a PluginError naming the plugin and the fix.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
import threading
import typing
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from xlrec.errors import ConfigError
from xlrec.settings import PREP_HINTS, RUN_HINTS, ModelSettings
from xlrec.settings.fields import settings_of
from xlrec.settings.types import SUPPORTED_TYPES

ENTRY_POINT_GROUP = "xlrec.models"
ENV_VAR = "XLREC_MODELS"
BUILTIN: dict[str, str] = {
    "xlstm": "xlrec.rec_models.xlstm:XLSTMRec",
    "xlstm-s": "xlrec.rec_models.xlstm:XLSTMSRec",
    "sasrec": "xlrec.rec_models.sasrec:SASRec",
    "bert4rec": "xlrec.rec_models.bert4rec:BERT4Rec",
    "gru4rec": "xlrec.rec_models.rnn:GRU4Rec",
    "lstm": "xlrec.rec_models.rnn:LSTMRec",
    "pop": "xlrec.rec_models.pop:PopRec",
}
_RESERVED = {"model", "dataset", "prep", "arch"}  # run-config structure, never a family setting


class PluginError(ConfigError):
    """A model plugin that breaks the interface: one paragraph naming it and the fix."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    target: str  # "package.module:Class"
    origin: str  # where the name came from, for messages: "built-in", "plugin package 'x'", ...

    @property
    def builtin(self) -> bool:
        return self.origin == "built-in"

    def load(self) -> type:
        """The model class, imported and checked once per process."""
        return _load(self)

    @property
    def settings(self) -> type[ModelSettings]:
        settings: type[ModelSettings] = self.load().settings_class  # type: ignore[attr-defined]
        return settings

    def defaults_path(self) -> Path | None:
        """The plugin's defaults file (its `defaults_file`, beside its module), if it ships one."""
        cls = self.load()
        name = getattr(cls, "defaults_file", None)
        if not name:
            return None
        module = importlib.import_module(cls.__module__)
        path = Path(module.__file__ or ".").parent / name
        if not path.is_file():
            raise self.error(
                f"declares defaults_file {name!r}, but {path} does not exist",
                "ship the file inside the package (package data) or remove defaults_file",
            )
        return path

    def error(self, problem: str, fix: str) -> PluginError:
        what = f"Model {self.name!r} ({self.target}, {self.origin})"
        return PluginError(f"{what} {problem}; {fix}. Until then choose another model: {', '.join(names())}.")


_lock = threading.Lock()
_session: dict[str, ModelEntry] = {}  # `--model module:Class` registered in this process


def _split(target: str) -> tuple[str, str] | None:
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr or not all(p.isidentifier() for p in [*module.split("."), *attr.split(".")]):
        return None
    return module, attr


def _from_env() -> dict[str, ModelEntry]:
    out: dict[str, ModelEntry] = {}
    for item in filter(None, (x.strip() for x in os.environ.get(ENV_VAR, "").split(","))):
        name, sep, target = item.partition("=")
        if not sep or _split(target.strip()) is None:
            raise ConfigError(
                f"{ENV_VAR} holds {item!r}, which is not NAME=package.module:Class. Fix or unset {ENV_VAR}."
            )
        out[name.strip()] = ModelEntry(name.strip(), target.strip(), f"from {ENV_VAR}")
    return out


@functools.cache
def _plugins() -> tuple[ModelEntry, ...]:
    """Installed plugins (entry points), read once per process; names only, nothing imported."""
    entries = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        entries.append(ModelEntry(ep.name, ep.value, f"plugin package {dist.name if dist else '?'!r}"))
    return tuple(entries)


def entries() -> dict[str, ModelEntry]:
    """Every model name -> its entry: built-ins first, then plugins, XLREC_MODELS and this process's."""
    found: dict[str, ModelEntry] = {name: ModelEntry(name, target, "built-in") for name, target in BUILTIN.items()}
    with _lock:
        session = dict(_session)
    for entry in [*_plugins(), *_from_env().values(), *session.values()]:
        other = found.get(entry.name)
        if other is not None and other.target != entry.target:
            taken = "a built-in model" if other.builtin else f"{other.target} ({other.origin})"
            raise PluginError(
                f"Model {entry.name!r} of {entry.target} ({entry.origin}) has a name already taken by {taken}; "
                f"give the plugin's entry point (or the class's `name`) another name, or uninstall one of them."
            )
        found[entry.name] = entry
    return found


def names() -> list[str]:
    return list(entries())


def get(name: str) -> ModelEntry:
    """The entry of model `name`, or of `package.module:Class` (registered for this process)."""
    if ":" in name:
        return register_target(name)
    known = entries()
    if name not in known:
        raise ConfigError(
            f"Unknown model {name!r}. Choose one of: {', '.join(known)}; or install a plugin that registers it "
            f"(entry-point group {ENTRY_POINT_GROUP!r}), or pass --model package.module:Class."
        )
    return known[name]


def register_target(target: str) -> ModelEntry:
    """`--model package.module:Class`: import it, register it under its `name` for this process and
    (XLREC_MODELS) the processes it starts; the entry."""
    parts = _split(target)
    if parts is None:
        raise ConfigError(
            f"--model {target!r} is not package.module:Class. Pass a model name ({', '.join(names())}) or the "
            f"import path of a model class, e.g. --model my_models.fmlp:FMLPRec."
        )
    probe = ModelEntry(target, target, "--model module:Class")
    cls = _import(probe)
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.strip() or ":" in name or "/" in name:
        raise probe.error(
            "has no usable `name` (the name its runs and registered models carry)",
            'set a class attribute such as name = "my-model" (no ":" or "/")',
        )
    entry = ModelEntry(name, target, "--model module:Class")
    known = entries()
    if name in known and known[name].target != target:
        raise PluginError(
            f"Model {target} is named {name!r}, a name already taken by {known[name].target} "
            f"({known[name].origin}); give the class another `name`."
        )
    with _lock:
        _session[name] = entry
        extra = _from_env()
        extra[name] = entry
        os.environ[ENV_VAR] = ",".join(f"{e.name}={e.target}" for e in extra.values())
    _load(entry)
    return entry


def registered(name: str) -> ModelEntry | None:
    """The entry of a registered name, importing nothing a name could point at: for names read
    from a saved model, which must never name code to import."""
    return None if ":" in name else entries().get(name)


def not_installed(name: str, where: str) -> ConfigError:
    """A saved model whose model is not registered here (a plugin's, not installed)."""
    return ConfigError(
        f"{where} was trained with model {name!r}, which is not registered in this environment (built-in models: "
        f"{', '.join(BUILTIN)}). If it is a plugin's model, install the package that registers {name!r} in the "
        f"entry-point group {ENTRY_POINT_GROUP!r} (or set {ENV_VAR}={name}=package.module:Class) and run again; "
        f"a saved model never names code to import, so it cannot load without its plugin."
    )


def model_class(name: str) -> type:
    return get(name).load()


def settings_class(name: str) -> type[ModelSettings]:
    return get(name).settings


def _import(entry: ModelEntry) -> type:
    parts = _split(entry.target)
    if parts is None:
        raise entry.error("is not a package.module:Class reference", "fix the entry point's value")
    module_name, attr = parts
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # any failure of third-party code at import is the plugin's
        raise entry.error(
            f"cannot be imported ({type(exc).__name__}: {exc})",
            "install the package that provides it (pip install ...) or fix its import",
        ) from None
    if not isinstance(obj, type):
        raise entry.error(f"names a {type(obj).__name__}, not a class", "point it at the model class")
    return obj


_loaded: dict[tuple[str, str], type] = {}


def _load(entry: ModelEntry) -> type:
    key = (entry.name, entry.target)
    if key in _loaded:
        return _loaded[key]
    cls = _import(entry)
    _check_settings(entry, cls)
    _loaded[key] = cls
    return cls


def _check_settings(entry: ModelEntry, cls: type) -> None:
    settings = getattr(cls, "settings_class", None)
    valid = isinstance(settings, type) and issubclass(settings, ModelSettings) and settings is not ModelSettings
    if not (valid and dataclasses.is_dataclass(settings)):  # (and below: a ModelSettings dataclass)
        raise entry.error(
            "has no settings class",
            "declare a @dataclass subclass of xlrec.settings.ModelSettings with the model's settings and set "
            "settings_class = ThatClass on the model (an empty dataclass for a model without settings)",
        )
    assert isinstance(settings, type)
    try:
        settings()
    except TypeError as exc:
        raise entry.error(
            f"has a settings class {settings.__name__} that cannot be built with its defaults ({exc})",
            "give every field a default",
        ) from None
    run = set(RUN_HINTS) | set(PREP_HINTS) | _RESERVED
    for info in settings_of(settings):
        if info.name in run:
            raise entry.error(
                f"declares the setting {info.name!r} in {settings.__name__}, which is a run setting of every model",
                f"rename it (e.g. {entry.name.replace('-', '_')}_{info.name}), or read the run's value instead",
            )
        if not _supported(info.hint):
            raise entry.error(
                f"declares the setting {info.name!r} of type {info.hint!r}, which flags and YAML cannot carry",
                "use int, float, bool, str, a list of one of them, or one of them | None",
            )


def _supported(hint: Any) -> bool:
    args = typing.get_args(hint)
    if type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return len(inner) == 1 and _supported(inner[0])
    if typing.get_origin(hint) is list:
        return typing.get_args(hint)[0] in SUPPORTED_TYPES
    return hint in SUPPORTED_TYPES


def all_settings_classes() -> dict[str, type[ModelSettings]]:
    """Every model's settings class (imports every model: the CLI's flags and the spec checks need
    them). A setting name has one type across the families that have it: a flag, a sweep's `--set`
    and a search space pass the same value to every model."""
    classes = {name: entry.settings for name, entry in entries().items()}
    seen: dict[str, tuple[str, Any]] = {}
    for name, cls in classes.items():
        for info in settings_of(cls):
            first = seen.setdefault(info.name, (name, info.hint))
            if first[1] != info.hint:
                raise get(name).error(
                    f"declares {info.name!r} as {info.hint!r}, but model {first[0]!r} has it as {first[1]!r} (one "
                    f"setting name, one type: flags and sweeps give it to every model)",
                    "rename the setting or use the same type",
                )
    return classes
