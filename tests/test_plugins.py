"""Model plugins that break the interface get one paragraph naming the plugin and the fix, never a
traceback; a plugin's defaults resolve like a built-in model's. Each plugin here is a real module
in tmp_path, registered as a real installed distribution (a dist-info with its entry point, found by
importlib.metadata on PYTHONPATH), through XLREC_MODELS or as `--model module:Class`."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from helpers import run_xlrec, xlrec_env

GOOD = '''
from dataclasses import dataclass
import torch
from torch import nn
from xlrec.rec_models import SequentialRecommender
from xlrec.settings import ModelSettings, setting


@dataclass
class MeanSettings(ModelSettings):
    embedding_dim: int = setting(16, "width")
    window: int = setting(3, "mean-model: items averaged")


class MeanModel(SequentialRecommender):
    """The mean of the last `window` item embeddings: a causal model of a few lines."""

    name = "{name}"
    settings_class = MeanSettings
    defaults_file = {defaults_file!r}

    def __init__(self, num_items, settings, max_len, kernel="native"):
        super().__init__(num_items, settings, max_len)
        self.window = settings.window
        self.item_embedding = nn.Embedding(num_items + 1, settings.embedding_dim, padding_idx=0)
        self.output = nn.Linear(settings.embedding_dim, num_items + 1, bias=False)

    def encode(self, ids):
        x = self.item_embedding(ids).cumsum(1)
        shifted = torch.cat([torch.zeros_like(x[:, : self.window]), x[:, : -self.window]], 1)
        return {encode_return}
'''


def plugin(tmp_path: Path, module: str, *, name: str = "mean-model", body: str | None = None, **fmt) -> Path:
    """A module `module` in tmp_path/site; returns the folder to put on PYTHONPATH."""
    site = tmp_path / "site"
    site.mkdir(parents=True, exist_ok=True)
    fmt = {"name": name, "defaults_file": None, "encode_return": "x - shifted", **fmt}
    (site / f"{module}.py").write_text(textwrap.dedent(body if body is not None else GOOD.format(**fmt)))
    return site


def install(site: Path, dist: str, entry: str, target: str) -> None:
    """A distribution's metadata with one entry point in the group xlrec.models, as pip leaves it."""
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[xlrec.models]\n{entry} = {target}\n")


def train(tmp_path: Path, site: Path, *args: str, **env: str):
    cmd = ["train", "--dataset", "synthetic", "--synthetic-users", "40", "--epochs", "1", "--no-tracking"]
    cmd += ["--device", "cpu", "--max-len", "8", *args]
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    return run_xlrec(cmd, xlrec_env(tmp_path / "data", PYTHONPATH=path, **env), cwd=tmp_path)


def refused(proc) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("xlrec: error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def test_an_installed_plugin_trains_by_name_with_its_settings_as_flags(tmp_path):
    site = plugin(tmp_path, "mean_plugin")
    install(site, "mean-plugin", "mean-model", "mean_plugin:MeanModel")
    proc = train(tmp_path, site, "--model", "mean-model", "--window", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '"model": "mean-model"' in proc.stdout.splitlines()[-1]


@pytest.mark.parametrize(
    "fmt, body_edit, expected",
    [
        (
            {"encode_return": "(x - shifted)[:, -1]"},
            None,
            "returns (2, 16) from encode for a (2, 4) batch of item ids, not (2, 4, D)",
        ),
        ({}, ("settings_class = MeanSettings", "pass"), "has no settings class"),
        (
            {},
            ('window: int = setting(3, "mean-model: items averaged")', "lr: float = 0.1"),
            "'lr' in MeanSettings, which is a run setting",
        ),
        (
            {},
            ('embedding_dim: int = setting(16, "width")', 'embedding_dim: str = "16"'),
            "declares 'embedding_dim' as <class 'str'>",
        ),
        (
            {},
            ("import torch\n", "import torch\nimport not_a_module_anywhere\n"),
            "cannot be imported (ModuleNotFoundError",
        ),
        (
            {},
            ('window: int = setting(3, "mean-model: items averaged")', "window: dict = None"),
            "flags and YAML cannot carry",
        ),
    ],
    ids=["output-shape", "no-settings-class", "run-setting-clash", "type-clash", "import-error", "unsupported-type"],
)
def test_a_plugin_that_breaks_the_interface_gets_one_paragraph(tmp_path, fmt, body_edit, expected):
    body = GOOD.format(**{"name": "mean-model", "defaults_file": None, "encode_return": "x - shifted", **fmt})
    if body_edit:
        assert body_edit[0] in body
        body = body.replace(*body_edit)
    site = plugin(tmp_path, "mean_plugin", body=body)
    install(site, "mean-plugin", "mean-model", "mean_plugin:MeanModel")
    line = refused(train(tmp_path, site, "--model", "mean-model"))
    assert expected in line, line
    assert "Model 'mean-model' (mean_plugin:MeanModel, plugin package 'mean-plugin')" in line, line


def test_a_plugin_may_not_take_a_built_in_models_name(tmp_path):
    site = plugin(tmp_path, "mean_plugin")
    install(site, "shadow", "sasrec", "mean_plugin:MeanModel")
    line = refused(train(tmp_path, site, "--model", "sasrec"))
    assert "mean_plugin:MeanModel (plugin package 'shadow') has a name already taken by a built-in model" in line
    assert "give the plugin's entry point (or the class's `name`) another name" in line


def test_module_class_registers_for_the_command_and_needs_a_name(tmp_path):
    site = plugin(tmp_path, "mean_plugin")
    proc = train(tmp_path, site, "--model", "mean_plugin:MeanModel", "--window", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '"model": "mean-model"' in proc.stdout.splitlines()[-1]
    nameless = GOOD.format(name="", defaults_file=None, encode_return="x - shifted")
    site = plugin(tmp_path / "b", "nameless", body=nameless)
    line = refused(train(tmp_path, site, "--model", "nameless:MeanModel"))
    assert "has no usable `name`" in line
    line = refused(train(tmp_path, site, "--model", "nameless:NoSuchClass"))
    assert "cannot be imported (AttributeError" in line


def test_a_plugins_defaults_lie_between_its_dataclass_and_the_users_config(tmp_path, monkeypatch):
    """dataclass < the plugin's defaults file (per dataset) < --config < flags, as for built-ins."""
    site = plugin(tmp_path, "mean_plugin", defaults_file="mean_defaults.yaml")
    (site / "mean_defaults.yaml").write_text(
        "synthetic: {chosen_by: a test, window: 5, embedding_dim: 32, lr: 0.002}\nml-100k: {window: 7}\n"
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("XLREC_MODELS", "mean-model=mean_plugin:MeanModel")
    from xlrec.config import resolve_config

    cfg = resolve_config("mean-model", "synthetic")
    assert (cfg.arch.window, cfg.arch.embedding_dim, cfg.lr) == (5, 32, 0.002)
    assert resolve_config("mean-model", "ml-100k").arch.window == 7
    config = tmp_path / "c.yaml"
    config.write_text("window: 4\nlr: 0.003\n")
    cfg = resolve_config("mean-model", "synthetic", config, {"window": 2})
    assert (cfg.arch.window, cfg.arch.embedding_dim, cfg.lr) == (2, 32, 0.003)
    assert resolve_config("mean-model", "ml-1m").arch.window == 3  # no entry: the dataclass default
    (site / "mean_defaults.yaml").write_text("synthetic: [1, 2]\n")
    from xlrec.errors import ConfigError

    with pytest.raises(ConfigError, match="entry 'synthetic' is not a mapping of settings"):
        resolve_config("mean-model", "synthetic")
