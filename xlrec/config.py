"""Run configuration: one dataclass, one place for defaults.

Resolution order (later wins): the dataclass defaults below, the per-dataset defaults
from the paper's Table 3 (`DATASET_DEFAULTS`), a YAML file (`--config`), then flags.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from xlrec.config_types import coerce, show
from xlrec.errors import ConfigError


@dataclass
class PrepConfig:
    """Preprocessing settings; part of the processed-data cache key."""

    min_rating: float | None = None  # None: every rating is an interaction (implicit feedback)
    min_user_interactions: int = 0  # k-core thresholds; 0 disables
    min_item_interactions: int = 0
    kcore_iterate: bool = True  # repeat the filter until nothing changes (a fixed point)
    # synthetic generator size (ignored by real datasets)
    synthetic_users: int = 1000
    synthetic_items: int = 500
    synthetic_mean_len: int = 40
    synthetic_seed: int = 0


@dataclass
class TrainConfig:
    """Everything one training run needs; flattened into MLflow params by the platform."""

    model: str = "xlstm"
    dataset: str = "ml-100k"
    max_len: int = 50
    seed: int = 42
    # architecture
    embedding_dim: int = 64
    num_heads: int = 2
    num_blocks: int = 1
    dropout: float = 0.2
    slstm_at: list[int] = field(default_factory=lambda: [0])  # xlstm-s only
    mask_prob: float = 0.2  # bert4rec only
    # bert4rec only: share of training windows that mask only their last item, the samples
    # BERT4Rec adds "to better match the sequential recommendation task" (Sun et al. 2019, 3.6)
    mask_last_share: float = 0.0
    # sasrec/bert4rec: score items with the input item embedding (the original papers' weight
    # tying) instead of a separate output layer; off = the paper's untied layout (Table 6 counts)
    tied_output: bool = False
    # sasrec/bert4rec block layout. ffn_mult: feed-forward width as a multiple of embedding_dim
    # (unset = the family's own: SASRec's original 1, BERT4Rec's 4); output_bias: a per-item
    # bias in the output layer; norm_first false = post-LN blocks and no final norm
    # (nn.TransformerEncoderLayer's default); output_head: a dense layer and activation before
    # the output layer (BERT4Rec's prediction head). configs/paper/ holds the layouts whose
    # parameter counts are the paper's Table 4 rows.
    ffn_mult: int | None = None
    output_bias: bool = False
    norm_first: bool = True
    output_head: bool = False
    # optimisation
    lr: float = 1e-3
    weight_decay: float = 0.0
    # Adam's second-moment decay; the original SASRec trains with 0.98 (torch's default 0.999)
    adam_beta2: float = 0.999
    scheduler: str = "none"  # none | step | cosine
    step_size: int = 10
    gamma: float = 0.5
    epochs: int = 200
    batch_size: int = 128
    grad_clip: float = 1.0
    # exponential moving average of the weights, updated after every optimizer step; validation,
    # the best-epoch checkpoint and the test use the averaged weights. 0 = off
    ema_decay: float = 0.0
    patience: int = 3
    # early stopping may end the run only from this epoch on (Lightning's min_epochs; Keras calls
    # it start_from_epoch); the best-validation weights are still tracked from epoch 1
    min_epochs: int = 0
    sample_mode: str = "window"  # window (all positions) | prefix (the paper's scheme)
    # Window mode: a new window every `window_stride` targets (0 = max_len, no overlap). With a
    # smaller stride, windows overlap and the earlier positions serve as context only, so every
    # target still counts once per epoch but sees up to max_len items of history.
    window_stride: int = 0
    # evaluation
    exclude_seen: bool = True
    cold_start_threshold: int = 5
    eval_batch_size: int = 1024
    # hardware
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    kernel: str = "auto"  # xlstm kernels: auto | triton | native
    amp: bool = True  # bf16 autocast on CUDA
    # replay the training step as one CUDA graph where it can be (CUDA, causal model, window
    # mode; see xlrec.device.use_cuda_graph); launch-bound small models train several times faster
    cuda_graph: bool = True
    num_threads: int = 0  # torch CPU threads; 0 = torch's default
    # data
    source: str | None = None  # mirror directory or base URL
    prep: PrepConfig = field(default_factory=PrepConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The paper's Table 3 (embedding dim, heads, blocks, batch size) and Table 1 presets.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "ml-100k": {"embedding_dim": 64, "num_heads": 2, "num_blocks": 1, "batch_size": 128},
    "ml-1m": {
        "embedding_dim": 128, "num_heads": 2, "num_blocks": 2, "batch_size": 128,
        "prep": {"min_item_interactions": 5},
    },
    "ml-10m": {"embedding_dim": 128, "num_heads": 2, "num_blocks": 2, "batch_size": 1024},
    "ml-20m": {"embedding_dim": 128, "num_heads": 2, "num_blocks": 2, "batch_size": 1024},
    "steam": {
        "embedding_dim": 256, "num_heads": 8, "num_blocks": 4, "batch_size": 1024,
        "prep": {"min_user_interactions": 5, "min_item_interactions": 5},
    },
    "synthetic": {"embedding_dim": 64, "num_heads": 2, "num_blocks": 1, "batch_size": 128},
}


# Per-model settings on top of Table 3, chosen on validation Recall@10 (never on test) with
# benchmarks/accuracy.py on ML-100K; see BENCHMARKS.md. The transformer baselines use 2 blocks
# (the paper's Table 5). Window batches count windows: with window_stride 10 a batch of 64
# windows trains ~640 targets, vs 128 targets in a prefix-mode batch of 128.
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "xlstm": {"window_stride": 10, "batch_size": 64, "dropout": 0.3, "lr": 2e-3, "scheduler": "cosine",
              "epochs": 30, "min_epochs": 15},
    "sasrec": {"num_blocks": 2, "window_stride": 10, "batch_size": 128, "dropout": 0.2, "ema_decay": 0.998,
               "min_epochs": 20},
    "bert4rec": {"num_blocks": 2, "batch_size": 64, "dropout": 0.1, "ema_decay": 0.98},
    "gru4rec": {"window_stride": 10, "batch_size": 64, "dropout": 0.3, "ema_decay": 0.99},
    "lstm": {"window_stride": 10, "batch_size": 64, "dropout": 0.3, "ema_decay": 0.998},
}


_TRAIN_HINTS = typing.get_type_hints(TrainConfig)
_PREP_HINTS = typing.get_type_hints(PrepConfig)


def _merge(cfg: TrainConfig, overrides: dict[str, Any], origin: str) -> TrainConfig:
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    prep_known = {f.name for f in dataclasses.fields(PrepConfig)}
    values = cfg.to_dict()
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "prep":
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: 'prep' must be a mapping of preprocessing settings, got {show(value)}.")
            unknown = set(value) - prep_known
            if unknown:
                raise ConfigError(
                    f"{origin}: unknown preprocessing setting(s) {sorted(map(str, unknown))}. "
                    f"Known settings are: {', '.join(sorted(prep_known))}."
                )
            values["prep"].update({k: coerce(f"prep.{k}", v, _PREP_HINTS[k], origin)
                                   for k, v in value.items() if v is not None})
        elif key in prep_known:
            values["prep"][key] = coerce(key, value, _PREP_HINTS[key], origin)
        elif key in known:
            values[key] = coerce(key, value, _TRAIN_HINTS[key], origin)
        else:
            raise ConfigError(
                f"{origin}: unknown setting {show(key)}. Known settings are: "
                f"{', '.join(sorted(known | prep_known))}."
            )
    prep = PrepConfig(**values.pop("prep"))
    return TrainConfig(**values, prep=prep)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist. Pass --config with the path of a YAML file.")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"Config file {path} is not UTF-8 text (byte {exc.start} cannot be decoded); it may be a "
                          f"binary file. Pass --config with the path of a YAML file.") from None
    except OSError as exc:
        raise ConfigError(f"Config file {path} cannot be read ({exc.strerror or exc}). Check the path and its "
                          f"permissions.") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())  # PyYAML's message spans lines; the error is one paragraph
        raise ConfigError(f"Config file {path} is not valid YAML ({reason}). Fix the file and run again.") from None
    except RecursionError:
        raise ConfigError(f"Config file {path} is nested too deeply to be a settings file. Fix the file and "
                          f"run again.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of settings, got {type(data).__name__}.")
    return data


def resolve_config(
    model: str | None = None,
    dataset: str | None = None,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> TrainConfig:
    """Build the final config: defaults < dataset defaults (Table 3) < model defaults < YAML < flags."""
    file_values = load_yaml(config_file) if config_file else {}
    overrides = dict(overrides or {})
    for values, origin in ((file_values, f"config file {config_file}"), (overrides, "command line")):
        for key in ("model", "dataset"):  # needed as names before anything else is merged
            if values.get(key) is not None:
                values[key] = coerce(key, values[key], str, origin)
    dataset = dataset or overrides.pop("dataset", None) or file_values.get("dataset") or TrainConfig.dataset
    model = model or overrides.pop("model", None) or file_values.get("model") or TrainConfig.model
    overrides.pop("dataset", None)
    overrides.pop("model", None)
    cfg = TrainConfig(model=model, dataset=dataset)
    cfg = _merge(cfg, DATASET_DEFAULTS.get(dataset, {}), f"defaults for {dataset}")
    if dataset == "ml-100k":
        cfg = _merge(cfg, MODEL_DEFAULTS.get(model, {}), f"defaults for {model} on {dataset}")
    cfg = _merge(cfg, file_values, f"config file {config_file}")
    cfg = _merge(cfg, overrides, "command line")
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    checks = [
        (cfg.max_len >= 2, f"--max-len must be at least 2, got {cfg.max_len}"),
        (cfg.embedding_dim > 0, f"embedding_dim must be positive, got {cfg.embedding_dim}"),
        (cfg.num_blocks > 0, f"num_blocks must be positive, got {cfg.num_blocks}"),
        (cfg.num_heads > 0 and cfg.embedding_dim % cfg.num_heads == 0,
         f"embedding_dim ({cfg.embedding_dim}) must be divisible by num_heads ({cfg.num_heads})"),
        (0.0 <= cfg.dropout < 1.0, f"dropout must be in [0, 1), got {cfg.dropout}"),
        (cfg.lr > 0, f"lr must be positive, got {cfg.lr}"),
        (0.0 < cfg.adam_beta2 < 1.0, f"adam_beta2 must be in (0, 1), got {cfg.adam_beta2}"),
        (cfg.batch_size > 0, f"batch_size must be positive, got {cfg.batch_size}"),
        (0.0 <= cfg.ema_decay < 1.0, f"ema_decay must be in [0, 1), got {cfg.ema_decay}"),
        (cfg.epochs >= 0, f"epochs must be >= 0, got {cfg.epochs}"),
        (cfg.min_epochs >= 0, f"min_epochs must be >= 0, got {cfg.min_epochs}"),
        (cfg.scheduler in ("none", "step", "cosine"), f"scheduler must be none, step or cosine, got {cfg.scheduler!r}"),
        (0 <= cfg.window_stride <= cfg.max_len, f"window_stride must be in [0, max_len], got {cfg.window_stride}"),
        (cfg.sample_mode in ("window", "prefix"), f"sample_mode must be window or prefix, got {cfg.sample_mode!r}"),
        (cfg.kernel in ("auto", "triton", "native"), f"kernel must be auto, triton or native, got {cfg.kernel!r}"),
        (cfg.ffn_mult is None or cfg.ffn_mult > 0, f"ffn_mult must be positive, got {cfg.ffn_mult}"),
        (0.0 < cfg.mask_prob < 1.0, f"mask_prob must be in (0, 1), got {cfg.mask_prob}"),
        (0.0 <= cfg.mask_last_share <= 1.0, f"mask_last_share must be in [0, 1], got {cfg.mask_last_share}"),
        (cfg.cold_start_threshold >= 3, f"cold_start_threshold must be at least 3, got {cfg.cold_start_threshold}"),
        (cfg.weight_decay >= 0, f"weight_decay must be >= 0, got {cfg.weight_decay}"),
        (cfg.grad_clip >= 0, f"grad_clip must be >= 0 (0 disables clipping), got {cfg.grad_clip}"),
        (cfg.patience >= 0, f"patience must be >= 0, got {cfg.patience}"),
        (cfg.eval_batch_size > 0, f"eval_batch_size must be positive, got {cfg.eval_batch_size}"),
        (cfg.step_size > 0, f"step_size must be positive, got {cfg.step_size}"),
        (0.0 < cfg.gamma <= 1.0, f"gamma must be in (0, 1], got {cfg.gamma}"),
        (cfg.num_threads >= 0, f"num_threads must be >= 0 (0 = torch's default), got {cfg.num_threads}"),
        # numpy's and torch's generators take seeds in [0, 2**32)
        (0 <= cfg.seed < 2 ** 32, f"seed must be in [0, 2**32), got {cfg.seed}"),
        (all(b >= 0 for b in cfg.slstm_at), f"slstm_at must list block indices >= 0, got {cfg.slstm_at}"),
        (cfg.prep.min_user_interactions >= 0,
         f"min_user_interactions must be >= 0, got {cfg.prep.min_user_interactions}"),
        (cfg.prep.min_item_interactions >= 0,
         f"min_item_interactions must be >= 0, got {cfg.prep.min_item_interactions}"),
        (cfg.prep.synthetic_users > 0, f"synthetic_users must be positive, got {cfg.prep.synthetic_users}"),
        (cfg.prep.synthetic_items > 0, f"synthetic_items must be positive, got {cfg.prep.synthetic_items}"),
        (cfg.prep.synthetic_mean_len > 0, f"synthetic_mean_len must be positive, got {cfg.prep.synthetic_mean_len}"),
        (0 <= cfg.prep.synthetic_seed < 2 ** 32,
         f"synthetic_seed must be in [0, 2**32), got {cfg.prep.synthetic_seed}"),
    ]
    layout = {"tied_output": cfg.tied_output, "ffn_mult": cfg.ffn_mult is not None, "output_bias": cfg.output_bias,
              "norm_first": not cfg.norm_first, "output_head": cfg.output_head}
    if cfg.model not in ("sasrec", "bert4rec") and any(layout.values()):
        set_here = ", ".join(k for k, v in layout.items() if v)
        checks.append((False, f"{set_here} only shape the sasrec and bert4rec layouts; model {cfg.model!r} "
                              f"has no such setting, so remove it"))
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"Invalid configuration: {message}. Fix the flag or the --config file and run again.")
