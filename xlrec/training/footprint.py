"""How much memory a run will take, estimated from its settings before anything is built.

Every size a user can give passes its type and range checks (a dimension of 10^9 is an integer),
and a saved model's config is capped; what is left is the product of sizes: an embedding of
10^9 x 1,683 items, windows of 10^7 positions, a synthetic dataset of 10^12 users. The estimate
below is the run's big arrays from its settings and the dataset's shape (published counts for
the named datasets, the generator's settings for `synthetic`, the row count for a file of the
user's own), each named by the setting that drives it. A run that would not fit in what the
device has free is refused with one paragraph naming that setting, before any data is read or
any model is built. Estimates err high (fp32 everywhere, the biggest batch): a run refused here
would have failed later, after minutes of work or with the machine swapping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import psutil
import torch

from xlrec.catalog.datasets import count_rows
from xlrec.data_prep.stats import PUBLISHED
from xlrec.errors import ConfigError
from xlrec.settings import TrainConfig
from xlrec.training.losses import chunk_logits

# named datasets without published counts here: the SASRec paper's Steam (Table 1)
_SHAPES = {name: (users, items, inter) for name, (_, inter, users, items) in PUBLISHED.items()}
_SHAPES["steam"] = (334_730, 13_047, 3_700_000)
FLOAT = 4  # bytes per float32 value
INDEX = 8  # bytes per int64 value
# what a run may use of the memory the device has free: the rest is the process, the allocator's
# slack and other work on the machine
USABLE_SHARE = 0.9


@dataclass(frozen=True)
class Part:
    what: str
    bytes: float
    settings: tuple[str, ...]  # what its size is a product of; the one furthest above its default is named


def dataset_shape(cfg: TrainConfig) -> tuple[int, int, int]:
    """(users, items, interactions) the run will prepare, without reading the data."""
    if cfg.dataset == "synthetic":
        p = cfg.prep
        return p.synthetic_users, p.synthetic_items, p.synthetic_users * p.synthetic_mean_len
    if cfg.data_file is not None:
        from pathlib import Path

        rows = count_rows(Path(cfg.data_file)) if Path(cfg.data_file).is_file() else 0
        return rows // 2 + 1, rows // 2 + 1, rows  # at most half the rows are new users, half new items
    users, items, inter = _SHAPES.get(cfg.dataset, (0, 0, 0))
    share = cfg.prep.user_fraction
    return math.ceil(users * share), items, math.ceil(inter * share)


def parts(cfg: TrainConfig, shape: tuple[int, int, int], data_only: bool = False, runs: int = 1) -> list[Part]:
    """The run's big arrays, in bytes (`data_only`: preparing the dataset alone; `runs`: that many
    runs of `cfg` in one process, a grouped or stacked cell's seeds, which share the dataset)."""
    users, items, inter = shape
    arch = cfg.arch
    dim = int(getattr(arch, "embedding_dim", 64))
    blocks = int(getattr(arch, "num_blocks", 1))
    length = cfg.max_len
    out = []
    if cfg.dataset == "synthetic":  # the generator holds a users x (20 x mean length) matrix
        mean = cfg.prep.synthetic_mean_len
        # the setting furthest above its default is the one to lower
        sizes = ("synthetic_users", "synthetic_mean_len")
        out.append(Part("the synthetic generator's sequences", users * 20 * mean * INDEX, sizes))
        out.append(Part("the synthetic dataset", inter * INDEX * 3, sizes))
    else:
        out.append(Part("the prepared dataset", inter * INDEX * 3, ("user_fraction",)))
    if data_only:
        return out
    shared = len(out)
    # embedding and output layer, blocks; weights, gradients and Adam's two moments (+ the average)
    params = 2 * (items + 1) * dim + blocks * 12 * dim * dim + length * dim
    copies = 4 + (1 if cfg.ema_decay > 0 else 0)
    out.append(
        Part("the model's parameters and optimizer state", params * FLOAT * copies, ("embedding_dim", "num_blocks"))
    )
    windows = inter * (1 if cfg.sample_mode == "prefix" else max(1, length // max(1, cfg.window_stride or length)))
    out.append(Part("an epoch's windows", windows * INDEX * 2, ("max_len",)))
    batch_rows = cfg.batch_size * (length + 1)
    activations = batch_rows * dim * FLOAT * (16 * blocks + 4)
    out.append(Part("a training batch's activations", activations, ("batch_size", "max_len", "embedding_dim")))
    max_logits = chunk_logits("cpu" if cfg.device == "cpu" else "cuda", items + 1)
    logits = min(batch_rows * (items + 1), max(max_logits, items + 1))
    out.append(Part("the loss's logits", logits * FLOAT * 3, ("batch_size", "max_len")))
    eval_users = min(cfg.eval_batch_size, max(1, users))
    out.append(Part("an evaluation batch's scores", eval_users * (items + 1) * FLOAT * 3, ("eval_batch_size",)))
    histories = eval_users * length * dim * FLOAT * (4 * blocks + 2)
    out.append(Part("an evaluation batch's histories", histories, ("max_len", "eval_batch_size", "embedding_dim")))
    if runs > 1:
        out[shared:] = [Part(f"{p.what} (x{runs} seeds)", p.bytes * runs, p.settings) for p in out[shared:]]
    return out


def free_bytes(device: torch.device) -> tuple[float, str]:
    """What the run's device has free, and its name for the message."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return float(free), f"the GPU {torch.cuda.get_device_name(device)}"
    return float(psutil.virtual_memory().available), "this machine's memory"


def _size(n: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n / 2**10:,.0f} KiB"


def check_fits(
    cfg: TrainConfig,
    device: torch.device,
    shape: tuple[int, int, int] | None = None,
    what: str = "This run",
    data_only: bool = False,
    runs: int = 1,
) -> None:
    """Refuse a run (or `runs` runs of `cfg` in one process) whose estimated memory exceeds what its
    device has free (one paragraph naming the setting behind the biggest part)."""
    shape = shape or dataset_shape(cfg)
    found = parts(cfg, shape, data_only, runs)
    need = sum(p.bytes for p in found)
    free, where = free_bytes(device)
    if need <= USABLE_SHARE * free:
        return
    big = max(found, key=lambda p: p.bytes)
    setting = max(big.settings, key=lambda key: _above_default(cfg, key))
    raise ConfigError(
        f"{what} would need about {_size(need)} of memory, more than the {_size(free)} free in {where}: "
        f"{big.what} alone is about {_size(big.bytes)} ({_shape_text(shape)}). Lower {setting} "
        f"(now {_shown(_value(cfg, setting))}) or run on a device with more memory; nothing was read or built."
    )


def _value(cfg: TrainConfig, key: str) -> object:
    for holder in (cfg, cfg.arch, cfg.prep):
        if hasattr(holder, key):
            return getattr(holder, key)
    return None


def _above_default(cfg: TrainConfig, key: str) -> float:
    """How many times its default a setting is (the defaults a dataclass declares)."""
    value = _value(cfg, key)
    for holder in (cfg, cfg.arch, cfg.prep):
        field = getattr(type(holder), "__dataclass_fields__", {}).get(key)
        if field is not None and isinstance(field.default, (int, float)) and field.default:
            return float(value) / float(field.default) if isinstance(value, (int, float)) else 0.0
    return 0.0


def _shown(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _shape_text(shape: tuple[int, int, int]) -> str:
    users, items, inter = shape
    return f"{users:,} users, {items:,} items, {inter:,} interactions"
