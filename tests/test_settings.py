"""Settings per model family: the packaged defaults, keys of other families, and one validation
for a config from flags and YAML and one read back from a saved model's config.yaml."""

from __future__ import annotations

import json

import pytest
import yaml

from xlrec.catalog.datasets import DATASETS
from xlrec.catalog.models import BUILTIN as MODELS
from xlrec.catalog.models import settings_class
from xlrec.config import resolve_config
from xlrec.config.defaults import DEFAULTS_FILE
from xlrec.errors import ConfigError
from xlrec.platform.artifacts import write_config
from xlrec.platform.registry.saved_config import config_from_dict
from xlrec.rec_models import build_model
from xlrec.settings import RUN_HINTS

# The resolved defaults of every model on every dataset, generated from the code before the settings
# were split per family (commit 572c63c: flat TrainConfig, DATASET_DEFAULTS, MODEL_DEFAULTS), less the
# keys a family does not have. RUN and ARCH are the dataclass defaults; CHANGED what differs from them.
RUN = {
    "max_len": 50,
    "seed": 42,
    "lr": 0.001,
    "weight_decay": 0.0,
    "adam_beta2": 0.999,
    "scheduler": "none",
    "step_size": 10,
    "gamma": 0.5,
    "epochs": 200,
    "batch_size": 128,
    "grad_clip": 1.0,
    "ema_decay": 0.0,
    "patience": 3,
    "min_epochs": 0,
    "sample_mode": "window",
    "window_stride": 0,
    "exclude_seen": True,
    "cold_start_threshold": 5,
    "split": "leave_last_two",
    "temporal_val_quantile": 0.8,
    "temporal_test_quantile": 0.9,
    "temporal_targets": "first",
    "shuffle_train_sequences": False,
    "eval_batch_size": 1024,
    "device": "auto",
    "kernel": "auto",
    "amp": True,
    "cuda_graph": True,
    "compile": False,
    "num_threads": 0,
    "store_outage_s": 45.0,
    "source": None,
    "data_file": None,
    "columns": None,
    "titles_file": None,
    "defaults_from": None,
    "tuned_defaults": None,
}
PREP = {
    "min_rating": None,
    "min_user_interactions": 0,
    "min_item_interactions": 0,
    "kcore_iterate": True,
    "user_fraction": 1.0,
    "item_fraction": 1.0,
    "synthetic_users": 1000,
    "synthetic_items": 500,
    "synthetic_mean_len": 40,
    "synthetic_seed": 0,
}
_BACKBONE = {"embedding_dim": 64, "num_heads": 2, "num_blocks": 1, "dropout": 0.2}
_LAYOUT = {"tied_output": False, "ffn_mult": None, "output_bias": False, "norm_first": True, "output_head": False}
ARCH = {
    "xlstm": _BACKBONE,
    "xlstm-s": {**_BACKBONE, "slstm_at": [0]},
    "sasrec": {**_BACKBONE, **_LAYOUT},
    "bert4rec": {**_BACKBONE, **_LAYOUT, "mask_prob": 0.2, "mask_last_share": 0.0},
    "gru4rec": {"embedding_dim": 64, "num_blocks": 1, "dropout": 0.2},
    "lstm": {"embedding_dim": 64, "num_blocks": 1, "dropout": 0.2},
    "pop": {},
}
_ML1M = {"embedding_dim": 128, "num_blocks": 2, "prep": {"min_item_interactions": 5}}
_ML10M = {"embedding_dim": 128, "num_blocks": 2, "batch_size": 1024}
_STEAM = {
    "embedding_dim": 256,
    "num_heads": 8,
    "num_blocks": 4,
    "batch_size": 1024,
    "prep": {"min_user_interactions": 5, "min_item_interactions": 5},
}
_STEAM_RNN = {k: v for k, v in _STEAM.items() if k != "num_heads"}
_TABLE3 = {"ml-1m": _ML1M, "ml-10m": _ML10M, "ml-20m": _ML10M, "steam": _STEAM, "synthetic": {}}
_TABLE3_RNN = {**_TABLE3, "steam": _STEAM_RNN}


def _searched(table3: dict, ml1m: dict, carried: dict) -> dict:
    """Paper Table 3 where no data is here, ML-1M's searched settings on ML-1M, and on ML-10M/20M/Steam
    the settings the rule carries over from the ML-1M search (max_len only for the MovieLens sets)."""
    out = {**table3, "ml-1m": {**_ML1M, **ml1m}}
    for name in ("ml-10m", "ml-20m"):
        out[name] = {**table3[name], **carried, "max_len": 200}
    out["steam"] = {**table3["steam"], **carried}
    return out


_RNN_1M = {"embedding_dim": 256, "num_blocks": 2, "lr": 0.00199, "dropout": 0.298, "batch_size": 64}
_RNN_1M = {**_RNN_1M, "max_len": 200, "ema_decay": 0.99, "patience": 5, "epochs": 100}
CHANGED = {
    "xlstm": {
        **_searched(
            _TABLE3,
            {"embedding_dim": 256, "num_heads": 4, "num_blocks": 4, "lr": 0.001, "dropout": 0.4, "batch_size": 64}
            | {"max_len": 200, "ema_decay": 0.998, "patience": 10, "epochs": 50},
            {"ema_decay": 0.998, "patience": 10},
        ),
        "ml-100k": {
            "num_blocks": 3,
            "dropout": 0.508,
            "lr": 0.00227,
            "scheduler": "cosine",
            "epochs": 80,
            "batch_size": 64,
            "min_epochs": 15,
            "window_stride": 10,
            "ema_decay": 0.99,
            "patience": 10,
            "max_len": 100,
        },
    },
    "xlstm-s": {**_TABLE3, "ml-100k": {}},
    "sasrec": {
        **_searched(
            _TABLE3,
            {"embedding_dim": 256, "num_heads": 4, "num_blocks": 3, "lr": 0.000647, "dropout": 0.128, "batch_size": 64}
            | {"max_len": 200, "ema_decay": 0.998, "patience": 5, "epochs": 100},
            {"ema_decay": 0.998, "patience": 5},
        ),
        "ml-100k": {"num_blocks": 2, "ema_decay": 0.998, "min_epochs": 20, "window_stride": 10},
    },
    "bert4rec": {
        **_searched(
            _TABLE3,
            {"embedding_dim": 128, "num_blocks": 2, "lr": 0.00071, "dropout": 0.118, "batch_size": 128}
            | {"max_len": 200, "ema_decay": 0.99, "patience": 10, "epochs": 100},
            {"ema_decay": 0.99, "patience": 10},
        ),
        "ml-100k": {"num_blocks": 2, "dropout": 0.1, "batch_size": 64, "ema_decay": 0.98},
    },
    "gru4rec": {
        **_searched(_TABLE3_RNN, _RNN_1M, {"ema_decay": 0.99, "patience": 5}),
        "ml-100k": {"num_blocks": 2, "lr": 0.00298, "dropout": 0.124, "batch_size": 64, "window_stride": 10}
        | {"ema_decay": 0.0, "patience": 10, "max_len": 200, "epochs": 60},
    },
    "lstm": {
        **_searched(_TABLE3_RNN, _RNN_1M, {"ema_decay": 0.99, "patience": 5}),
        "ml-100k": {"embedding_dim": 256, "num_blocks": 2, "lr": 0.00231, "dropout": 0.236, "batch_size": 256}
        | {"window_stride": 10, "ema_decay": 0.0, "patience": 10, "max_len": 200, "epochs": 60},
    },
    "pop": {
        "ml-100k": {},
        "ml-1m": {"prep": {"min_item_interactions": 5}},
        "ml-10m": {"batch_size": 1024},
        "ml-20m": {"batch_size": 1024},
        "steam": {"batch_size": 1024, "prep": _STEAM["prep"]},
        "synthetic": {},
    },
}
# the layout keys of another family, as a config.yaml written before the split holds them
OTHER_FAMILIES = {"num_heads": 8, "slstm_at": [0], "mask_prob": 0.2, "mask_last_share": 0.0, **_LAYOUT}


def _expected(model: str, dataset: str) -> dict:
    changed = {k: v for k, v in CHANGED[model][dataset].items() if k != "prep"}
    prep = {**PREP, **CHANGED[model][dataset].get("prep", {})}
    return {"model": model, "dataset": dataset, **RUN, **ARCH[model], **changed, "prep": prep}


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("dataset", list(DATASETS))
def test_resolved_defaults_are_pinned_for_every_model_and_dataset(model, dataset):
    got = resolve_config(model, dataset).to_dict()
    # json: 64 and 64.0 differ, as they would in MLflow params and config.yaml
    assert json.dumps(got, sort_keys=True) == json.dumps(_expected(model, dataset), sort_keys=True)


def test_pinned_table_covers_every_model_and_dataset():
    assert set(CHANGED) == set(MODELS) and all(set(v) == set(DATASETS) for v in CHANGED.values())


def test_defaults_file_names_the_source_of_every_entry_and_only_known_keys():
    data = yaml.safe_load(DEFAULTS_FILE.read_text())
    assert set(data) == {"datasets", "unseen", "models"}
    rule = data["unseen"]  # the rule for a dataset without an entry: its numbers, each of a known kind
    assert isinstance(rule.pop("chosen_by"), str)
    assert set(rule) == {
        "max_len_multiple",
        "max_len_min",
        "short_mean_len",
        "short_dropout_at_least",
        "short_patience_at_least",
    }
    assert rule["max_len_multiple"] >= 1 and rule["max_len_min"] >= 1 and 0 <= rule["short_dropout_at_least"] < 1
    assert set(data["datasets"]) == set(DATASETS) and set(data["models"]) <= set(MODELS)
    for dataset, entry in data["datasets"].items():
        assert isinstance(entry.pop("chosen_by"), str), dataset
        assert set(entry) <= set(RUN_HINTS) | {"prep"}, dataset
    for model, per_dataset in data["models"].items():
        assert set(per_dataset) <= set(DATASETS), model
        own = set(settings_class(model).__dataclass_fields__)
        for dataset, entry in per_dataset.items():
            assert isinstance(entry.pop("chosen_by"), str), (model, dataset)
            assert set(entry) <= set(RUN_HINTS) | own, (model, dataset)


def test_settings_of_other_families_are_type_checked_then_ignored():
    # a sweep passes the same --set values and sampled num_heads to every model
    cfg = resolve_config(
        "gru4rec", "synthetic", overrides={"num_heads": 4, "mask_prob": 0.5, "slstm_at": [1], "tied_output": False}
    )
    assert not {"num_heads", "mask_prob", "slstm_at", "tied_output"} & set(cfg.to_dict())
    with pytest.raises(ConfigError, match="setting 'mask_prob' must be a finite number"):
        resolve_config("gru4rec", "synthetic", overrides={"mask_prob": "high"})
    with pytest.raises(
        ConfigError,
        match="tied_output, ffn_mult only shape the sasrec and bert4rec layouts; "
        "model 'xlstm' has no such setting, so remove it",
    ):
        resolve_config("xlstm", "synthetic", overrides={"ffn_mult": 2, "tied_output": True})


def test_family_checks_run_for_the_family_only():
    with pytest.raises(ConfigError, match=r"mask_prob must be in \(0, 1\)"):
        resolve_config("bert4rec", "synthetic", overrides={"mask_prob": 1.0})
    with pytest.raises(ConfigError, match="slstm_at must list block indices >= 0"):
        resolve_config("xlstm-s", "synthetic", overrides={"slstm_at": [-1]})
    with pytest.raises(ConfigError, match="ffn_mult must be positive"):
        resolve_config("sasrec", "synthetic", overrides={"ffn_mult": 0})
    with pytest.raises(ConfigError, match="Unknown model 'nope'"):
        resolve_config("nope", "synthetic")
    # RNNs have no heads, so no divisibility rule
    assert resolve_config("gru4rec", "synthetic", overrides={"embedding_dim": 7}).arch.embedding_dim == 7


def test_the_model_flag_wins_over_the_files_model(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: sasrec\ndataset: ml-1m\n")
    cfg = resolve_config("gru4rec", "ml-100k", f)
    assert (cfg.model, cfg.dataset, type(cfg.arch).__name__, cfg.ema_decay) == (
        "gru4rec",
        "ml-100k",
        "RNNSettings",
        0.0,
    )
    assert resolve_config(None, None, f).model == "sasrec"


@pytest.mark.parametrize("model", list(MODELS))
def test_passes_per_epoch_is_the_models(model):
    for mask_prob, masked_passes in ((0.2, 5), (0.15, 7), (0.3, 4)):  # ceil(1 / mask_prob)
        cfg = resolve_config(model, "synthetic", overrides={"mask_prob": mask_prob, "max_len": 8})
        assert build_model(model, 20, cfg).passes_per_epoch == (masked_passes if model == "bert4rec" else 1)


# --- a saved model's config.yaml ----------------------------------------------------------------------


@pytest.mark.parametrize("model", list(MODELS))
def test_a_written_config_reads_back_identically(model, tmp_path):
    cfg = resolve_config(model, "steam", overrides={"max_len": 20})
    path = write_config(tmp_path / "config.yaml", cfg)
    assert config_from_dict(yaml.safe_load(path.read_text()), "m") == cfg


def test_a_config_written_before_the_split_still_loads():
    """Models registered by earlier versions hold every family's keys in their config.yaml."""
    cfg = resolve_config("gru4rec", "steam")
    assert config_from_dict({**cfg.to_dict(), **OTHER_FAMILIES}, "m") == cfg


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"no_such_setting": 1}, "has unknown setting(s) ['no_such_setting']"),
        ({"prep": {**PREP, "old_filter": 1}}, "has unknown setting(s) ['prep.old_filter']"),
        ({"arch": {"embedding_dim": 8}}, "has unknown setting(s) ['arch']"),
        ({"num_blocks": None}, "lacks setting(s) ['num_blocks']"),
        ({"patience": None}, "lacks setting(s) ['patience']"),
        ({"prep": {k: v for k, v in PREP.items() if k != "kcore_iterate"}}, "lacks setting(s) ['prep.kcore_iterate']"),
    ],
)
def test_a_config_from_another_version_is_one_clear_error(change, needle):
    raw = {**resolve_config("gru4rec", "synthetic").to_dict(), **change}
    raw = {k: v for k, v in raw.items() if change.get(k, "") is not None}  # None in `change`: key left out
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw, "models:/m/1")
    text = str(err.value)
    assert text.startswith("The config.yaml of models:/m/1 ") and needle in text, text
    assert "re-train the model with this xlrec" in text and "\n" not in text


@pytest.mark.parametrize(
    "model, change, needle",
    [
        ("gru4rec", {"num_blocks": "2"}, "sets num_blocks to '2', which is not of type int"),
        ("gru4rec", {"mask_prob": "high"}, "sets mask_prob to 'high', which is not of type float"),
        ("gru4rec", {"slstm_at": 0}, "sets slstm_at to 0, which is not of type list[int]"),
        ("sasrec", {"ffn_mult": 1.5}, "sets ffn_mult to 1.5, which is not of type int | None"),
    ],
)
def test_a_saved_config_with_a_wrong_type_is_refused(model, change, needle):
    with pytest.raises(ConfigError) as err:
        config_from_dict({**resolve_config(model, "synthetic").to_dict(), **change}, "models:/m/1")
    assert str(err.value).startswith("The config.yaml of models:/m/1 ") and needle in str(err.value)


@pytest.mark.parametrize(
    "model, change, reason",
    [
        (
            "gru4rec",
            {"tied_output": True},
            "tied_output only shape the sasrec and bert4rec layouts; model 'gru4rec' has no such setting",
        ),
        ("bert4rec", {"mask_prob": 1.5}, "mask_prob must be in (0, 1)"),
        ("xlstm", {"dropout": 1.0}, "dropout must be in [0, 1)"),
        ("sasrec", {"window_stride": 80}, "window_stride must be in [0, max_len]"),
    ],
)
def test_a_saved_config_is_validated_by_the_code_flags_go_through(model, change, reason):
    with pytest.raises(ConfigError) as from_flags:
        resolve_config(model, "synthetic", overrides=change)
    with pytest.raises(ConfigError) as from_file:
        config_from_dict({**resolve_config(model, "synthetic").to_dict(), **change}, "models:/m/1")
    assert reason in str(from_flags.value)
    assert str(from_file.value) == f"The config.yaml of models:/m/1 is invalid: {from_flags.value}"
