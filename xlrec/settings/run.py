"""The run's settings (`TrainConfig`), preprocessing's (`PrepConfig`) and the base of a model
family's (`ModelSettings`): plain typed dataclasses, no resolution and no registry.

Each field is declared once with `setting(default, help)`: its flag, YAML key, sweep-spec axis and
MLflow param follow from it (xlrec.settings.fields). A model family declares its own settings
dataclass beside its model (`XLSTMSettings` in xlrec/rec_models/xlstm.py, nanoGPT's `GPTConfig`
style), nested in the run config as `arch`; users still see one flat namespace (`embedding_dim`,
not `arch.embedding_dim`: `TrainConfig.to_dict`). Resolution (defaults, files, flags) is
xlrec.config's, one floor up.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from xlrec.errors import ConfigError
from xlrec.settings.fields import hints_of, setting


@dataclass
class PrepConfig:
    """Preprocessing settings; part of the processed-data cache key."""

    min_rating: float | None = setting(None, "keep only ratings >= this (default: every rating is an interaction)")
    min_user_interactions: int = setting(0, "k-core: minimum interactions per user (0 disables)")
    min_item_interactions: int = setting(0, "k-core: minimum interactions per item (0 disables)")
    kcore_iterate: bool = setting(True, "repeat the k-core filter until nothing changes (a fixed point)")
    # a fixed random order of the users, so a smaller share is a subset of a larger one
    user_fraction: float = setting(
        1.0, "keep this share of the users, before the k-core filter (a fixed random subset; scaling studies)"
    )
    # a fixed random order of the items: a sparse cut of a dataset (short sequences from long ones)
    item_fraction: float = setting(
        1.0, "keep the interactions with this share of the items, before the k-core filter (a fixed random subset)"
    )
    synthetic_users: int = setting(1000, "synthetic dataset: number of users")
    synthetic_items: int = setting(500, "synthetic dataset: number of items")
    synthetic_mean_len: int = setting(40, "synthetic dataset: mean sequence length")
    synthetic_seed: int = setting(0, "synthetic dataset: generator seed")


@dataclass
class ModelSettings:
    """Base of a model family's settings (nanoGPT's GPTConfig): the fields its model is built from.

    A family subclasses this beside its model and checks its own fields in `validate`. `exclusive`
    names settings that only this family has and that are refused, not ignored, for a model
    without them (xlrec.config.build_config).
    """

    exclusive: ClassVar[tuple[str, ...]] = ()

    def validate(self) -> None:
        """Raise ConfigError (through `check`) for the first invalid field."""


def check(checks: list[tuple[bool, str]]) -> None:
    """Raise the ConfigError of the first failed (ok, message) pair."""
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"Invalid configuration: {message}. Fix the flag or the --config file and run again.")


@dataclass(kw_only=True)
class TrainConfig:
    """Everything one training run needs; `to_dict` is the flat form of MLflow params and config.yaml."""

    model: str = setting("xlstm", "the model: a built-in (xlstm, sasrec, ...), an installed plugin's, or module:Class")
    dataset: str = setting(
        "ml-100k",
        "ml-100k | ml-1m | ml-10m | ml-20m | steam | synthetic, or the path of your own file "
        "(.inter, .txt, .csv, .tsv, .parquet)",
    )
    max_len: int = setting(50, "maximum history length L")
    seed: int = setting(42, "random seed (same seed, config and device give identical metrics)")
    # the model family's settings: an instance of the settings class its model declares
    # (read them as cfg.arch.embedding_dim, ...)
    arch: ModelSettings
    # optimisation
    lr: float = setting(1e-3, "Adam learning rate")
    weight_decay: float = setting(0.0, "Adam weight decay")
    adam_beta2: float = setting(0.999, "Adam second-moment decay (torch's default 0.999; the original SASRec 0.98)")
    scheduler: str = setting("none", "learning-rate schedule", choices=("none", "step", "cosine"))
    step_size: int = setting(10, "step schedule: epochs between decays")
    gamma: float = setting(0.5, "step schedule: decay factor")
    epochs: int = setting(200, "maximum number of epochs")
    batch_size: int = setting(128, "training batch size (windows, or prefixes in prefix mode)")
    grad_clip: float = setting(1.0, "gradient-norm clipping (0 disables)")
    # validation, the best-epoch checkpoint and the test use the averaged weights
    ema_decay: float = setting(
        0.0, "exponential moving average of the weights after every step, e.g. 0.99 (0 disables)"
    )
    patience: int = setting(3, "early-stopping patience in epochs (validation Recall@10)")
    # Lightning's min_epochs, Keras' start_from_epoch; the best weights are tracked from epoch 1
    min_epochs: int = setting(0, "early stopping may end the run only from this epoch on")
    sample_mode: str = setting(
        "window", "window (all positions) | prefix (the paper's one prefix per target)", choices=("window", "prefix")
    )
    # With a smaller stride, windows overlap and the earlier positions serve as context only, so every
    # target still counts once per epoch but sees up to max_len items of history.
    window_stride: int = setting(
        0, "window mode: a new window every this many targets; smaller overlaps windows for more context (0 = max_len)"
    )
    # evaluation
    exclude_seen: bool = setting(
        True, "rank only items not in the user's history (default; --no-exclude-seen ranks every item: the paper's)"
    )
    cold_start_threshold: int = setting(5, "users with fewer interactions form the cold-start group")
    # the evaluation protocol (xlrec.data_prep.split); runs of different protocols are never compared
    split: str = setting(
        "leave_last_two",
        "leave_last_two (each user's last item is the test target, the one before it validation) | temporal "
        "(global time cutoffs: validation and test windows by timestamp)",
        choices=("leave_last_two", "temporal"),
    )
    temporal_val_quantile: float = setting(
        0.8, "temporal split: the validation window starts at this quantile of all timestamps"
    )
    temporal_test_quantile: float = setting(
        0.9, "temporal split: the test window starts at this quantile of all timestamps"
    )
    temporal_targets: str = setting(
        "first",
        "temporal split: which interactions of a window are targets, each user's first in it or all of them",
        choices=("first", "all"),
    )
    # "Does It Look Sequential?" (2024): how much of a model's accuracy is the order of its inputs
    shuffle_train_sequences: bool = setting(
        False, "train on each user's training interactions in a random (seeded) order; evaluation keeps the order"
    )
    eval_batch_size: int = setting(1024, "evaluation batch size")
    # hardware
    device: str = setting("auto", "auto | cpu | cuda | cuda:N")
    kernel: str = setting("auto", "mLSTM kernels", choices=("auto", "triton", "native"))
    amp: bool = setting(True, "bf16 autocast on CUDA")
    # launch-bound small models train several times faster (xlrec.device.use_cuda_graph)
    cuda_graph: bool = setting(True, "on CUDA, replay the training step of causal models as one CUDA graph")
    # Inductor fuses the encoder's elementwise chains (norms, gates, autocast casts) that otherwise
    # launch one small kernel each; it costs a compilation per process, cached on disk after
    compile: bool = setting(False, "on CUDA, train through a torch.compile'd encoder")
    num_threads: int = setting(0, "torch CPU threads (0 = torch's default)")
    # a tracking server restarted mid-sweep is down for tens of seconds; one that died for good
    # must still fail the run within a minute, not let it train for hours logging nothing
    store_outage_s: float = setting(
        45.0,
        "how long a run goes on while its tracking store does not answer, its metrics kept and sent once it "
        "answers again (then the run fails)",
    )
    # data
    source: str | None = setting(None, "mirror directory or base URL (else XLREC_DATA_MIRROR)")
    # a user's own file (`--dataset PATH`; `dataset` is then its sanitised stem): its absolute path,
    # the --columns map and the --titles side file, so a saved config says where its data came from
    data_file: str | None = setting(None, "the absolute path of --dataset PATH", flag=None)
    columns: str | None = setting(
        None, "your file's columns: user=COL,item=COL[,time=COL][,rating=COL][,title_item=COL,title=COL]"
    )
    titles_file: str | None = setting(
        None, "CSV/TSV of item ids and titles for your own file (README: Your own data)", flag="--titles"
    )
    # the named dataset whose defaults a user's file started from (xlrec.catalog.datasets.nearest_defaults)
    defaults_from: str | None = setting(None, "the named dataset whose defaults a file of your own starts from")
    # where `xlrec tune` chose this run's model settings: the per-dataset defaults file and its
    # `chosen_by` (xlrec.config.defaults.load_tuned); set by resolution, logged with the run
    tuned_defaults: str | None = setting(None, "the tuned defaults file the settings came from", flag=None)
    prep: PrepConfig = field(default_factory=PrepConfig)

    def to_dict(self) -> dict[str, Any]:
        """The flat settings (the family's in place of `arch`, `prep` nested): what config.yaml
        holds, what MLflow params are named after, and what `build_config` takes back."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "arch":
                out.update(dataclasses.asdict(self.arch))
            else:
                value = getattr(self, f.name)
                out[f.name] = dataclasses.asdict(value) if f.name == "prep" else value
        return out


# the run's and preprocessing's own settings -> their annotations
RUN_HINTS = hints_of(TrainConfig, skip=("arch", "prep"))
PREP_HINTS = hints_of(PrepConfig)
