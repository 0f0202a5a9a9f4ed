"""xlrec's logged-model format (version 2): no pickle anywhere.

An MLflow model directory whose MLmodel carries `metadata.xlrec` (the xlrec flavor entry)
and whose pyfunc data folder `data/xlrec/` holds three plain files:
- `model.safetensors`: the weights (safetensors: a JSON header plus raw tensor bytes),
- `config.yaml`: the run's TrainConfig in its flat form (`TrainConfig.to_dict`, read with yaml.safe_load
  and checked by xlrec.platform.registry.saved_config),
- `item_map.json`: contiguous item index -> raw item id and title.

Why hand-written instead of `mlflow.pytorch.load_model`: that unpickles `data/model.pth`, and
unpickling runs whatever code the file names (a registered model is writable by anyone who can
reach an unauthenticated tracking server). Here the model is rebuilt from a validated config
whose sizes are capped, its expected tensor shapes are computed on the meta device (no memory),
and the safetensors header must match them before a byte of weights is read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from xlrec.errors import XlrecError
from xlrec.platform.registry.saved_config import config_from_dict
from xlrec.settings import TrainConfig
from xlrec.training.footprint import check_fits, dataset_shape

FORMAT_VERSION = 2
DATA_DIR = "data/xlrec"  # pyfunc copies `data_path` (a folder named xlrec) to data/xlrec
WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
ITEM_MAP = "item_map.json"
FLAVOR = {
    "format_version": FORMAT_VERSION,
    "data": DATA_DIR,
    "weights": WEIGHTS,
    "config": CONFIG,
    "item_map": ITEM_MAP,
}
LEGACY_PICKLE = "data/model.pth"

MAX_ITEMS = 10_000_000
# the item map's size cap, checked before it is parsed: 128 bytes per item is room for an id and a long title
MAX_ITEM_MAP_BYTES = 128 * MAX_ITEMS
MAX_PARAMETERS = 250_000_000  # 1 GB of float32; the largest real model here has ~9M


@dataclass
class ModelFiles:
    model: Any  # SequentialRecommender (imported lazily: torch is heavy)
    config: TrainConfig
    item_ids: list[str]
    titles: list[str]


def write_model_dir(folder: Path, state_dict: dict, cfg: TrainConfig, item_map_file: Path) -> Path:
    """Write weights, config and item map into `folder` (the pyfunc data_path)."""
    from safetensors.torch import save_file

    from xlrec.platform import artifacts

    folder.mkdir(parents=True, exist_ok=True)
    # clone: safetensors refuses tensors that share memory (tied layers); contiguous CPU copies are plain
    save_file({k: v.detach().cpu().clone().contiguous() for k, v in state_dict.items()}, str(folder / WEIGHTS))
    artifacts.write_config(folder / CONFIG, cfg)
    (folder / ITEM_MAP).write_bytes(item_map_file.read_bytes())
    return folder


# --- recognising the layout -------------------------------------------------------------------


def read_mlmodel(model_dir: Path, where: str) -> dict:
    path = model_dir / "MLmodel"
    if not path.is_file():
        raise XlrecError(
            f"{where} is not an MLflow model directory (no MLmodel file). Pass a registered model "
            f"(models:/NAME@ALIAS) or a directory written by `xlrec registry download`."
        )
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise XlrecError(
            f"The MLmodel file of {where} is not valid YAML ({str(exc).splitlines()[0]}); the model "
            f"is damaged. Re-register it by training again."
        ) from None
    if not isinstance(data, dict):
        raise XlrecError(f"The MLmodel file of {where} holds no mapping; the model is damaged.")
    return data


def check_layout(model_dir: Path, where: str, run_id: str | None = None) -> Path:
    """The data folder of an xlrec format-2 model; refuse old pickled models without opening them."""
    mlmodel = read_mlmodel(model_dir, where)
    entry = (mlmodel.get("metadata") or {}).get("xlrec") if isinstance(mlmodel.get("metadata"), dict) else None
    flavors: dict = mlmodel["flavors"] if isinstance(mlmodel.get("flavors"), dict) else {}
    run_id = run_id or (mlmodel.get("run_id") if isinstance(mlmodel.get("run_id"), str) else None)
    if not isinstance(entry, dict):
        if "pytorch" in flavors or (model_dir / LEGACY_PICKLE).exists():
            run = run_id or "RUN_ID"
            raise XlrecError(
                f"{where} was saved by an older xlrec as a pickle ({LEGACY_PICKLE}, MLflow's `pytorch` flavor). "
                f"xlrec no longer loads pickled models, because unpickling a file runs code it names. Re-register "
                f"it in the safe format by training again with that run's settings: `mlflow artifacts download "
                f"-u runs:/{run}/config.yaml -d .` then `xlrec train --config config.yaml`."
            )
        raise XlrecError(
            f"{where} is not an xlrec model (its MLmodel has no xlrec flavor entry, only "
            f"{', '.join(sorted(flavors)) or 'no flavors'}). Pass a model logged by `xlrec train`."
        )
    version = entry.get("format_version")
    if version != FORMAT_VERSION:
        raise XlrecError(
            f"{where} uses xlrec model format {version!r}; this xlrec reads format {FORMAT_VERSION}. "
            f"Use the xlrec version that logged it, or re-train it with this one."
        )
    # The file names are fixed by the format, never taken from the (untrusted) MLmodel as paths.
    if {k: entry.get(k) for k in FLAVOR} != FLAVOR:
        raise XlrecError(
            f"{where} has an xlrec flavor entry with unexpected file names ({entry}); the model is "
            f"damaged or was not written by xlrec."
        )
    data = model_dir / DATA_DIR
    missing = [name for name in (WEIGHTS, CONFIG, ITEM_MAP) if not (data / name).is_file()]
    if missing:
        raise XlrecError(
            f"{where} lacks {', '.join(DATA_DIR + '/' + m for m in missing)}; the model is incomplete. "
            f"Download or register it again."
        )
    return data


def read_item_map(path: Path, where: str) -> tuple[list[str], list[str]]:
    size = path.stat().st_size
    if size > MAX_ITEM_MAP_BYTES:  # before parsing: a file past the cap costs minutes and gigabytes to read
        raise XlrecError(
            f"The item_map.json of {where} is {size:,} bytes, over xlrec's limit of {MAX_ITEM_MAP_BYTES:,} "
            f"({MAX_ITEMS:,} items of ids and titles); it was not read and nothing was built."
        )
    try:
        data = json.loads(path.read_text())
        ids, titles = data["item_ids"], data["titles"]
        ok = (
            isinstance(ids, list)
            and isinstance(titles, list)
            and len(ids) == len(titles) >= 2
            and all(isinstance(x, str) for x in ids)
            and all(isinstance(x, str) for x in titles)
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):  # RecursionError: deep nesting
        ok = False
    if not ok:
        raise XlrecError(f"The item_map.json of {where} is not a map of item ids and titles; the model is damaged.")
    if len(ids) - 1 > MAX_ITEMS:
        raise XlrecError(
            f"The item_map.json of {where} lists {len(ids) - 1} items, over xlrec's limit of "
            f"{MAX_ITEMS}; nothing was built."
        )
    return ids, titles


# --- weights ------------------------------------------------------------------------------------


def _expected_tensors(cfg: TrainConfig, num_items: int, where: str) -> dict[str, tuple[tuple[int, ...], Any]]:
    """Names, shapes and dtypes of the model's state, from a build on the meta device (no memory)."""
    import torch

    from xlrec.rec_models import build_model

    with torch.device("meta"):
        skeleton = build_model(cfg.model, num_items, cfg, kernel="native")
    state = skeleton.state_dict()
    total = sum(v.numel() for v in state.values())
    if total > MAX_PARAMETERS:
        raise XlrecError(
            f"The config.yaml of {where} describes a model of {total:,} parameters, over xlrec's limit "
            f"of {MAX_PARAMETERS:,}; nothing was built."
        )
    return {k: (tuple(v.shape), v.dtype) for k, v in state.items()}


def load_weights(model, path: Path, expected: dict, where: str) -> None:
    """Check the safetensors header against `expected` (names and shapes), then load strictly."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            header = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise XlrecError(
            f"The weights file {WEIGHTS} of {where} is not a valid safetensors file ({exc}); the model is damaged."
        ) from None
    missing, unexpected = sorted(set(expected) - set(header)), sorted(set(header) - set(expected))
    if missing or unexpected:
        raise XlrecError(
            f"The weights file {WEIGHTS} of {where} does not match the model its config.yaml describes "
            f"(missing tensors: {missing[:5]}; unexpected tensors: {unexpected[:5]})."
        )
    for name, (shape, _) in expected.items():
        if header[name] != shape:
            raise XlrecError(
                f"Tensor {name!r} in {WEIGHTS} of {where} has shape {list(header[name])}, but the model "
                f"its config.yaml describes needs {list(shape)}; the model files do not belong together."
            )
    tensors = load_file(str(path), device="cpu")
    for name, (_, dtype) in expected.items():
        if tensors[name].dtype != dtype:
            raise XlrecError(f"Tensor {name!r} in {WEIGHTS} of {where} is {tensors[name].dtype}, expected {dtype}.")
    model.load_state_dict(tensors, strict=True)


def load_model_dir(data: Path, where: str, kernel: str = "native", device: str = "cpu") -> ModelFiles:
    """Rebuild the model in `data` (a checked data folder) for `kernel` on `device`."""
    from xlrec.rec_models import build_model

    try:
        raw = yaml.safe_load((data / CONFIG).read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise XlrecError(f"The config.yaml of {where} is not valid YAML ({str(exc).splitlines()[0]}).") from None
    cfg = config_from_dict(raw, where)
    item_ids, titles = read_item_map(data / ITEM_MAP, where)
    # its sizes are within LIMITS one by one; their product must fit the device before anything is built
    users, _, interactions = dataset_shape(cfg)  # evaluate prepares the model's dataset too
    shape = (users, len(item_ids) - 1, interactions)
    check_fits(cfg, torch.device(device), shape=shape, what=f"Loading {where}")
    expected = _expected_tensors(cfg, len(item_ids) - 1, where)
    model = build_model(cfg.model, len(item_ids) - 1, cfg, kernel)
    load_weights(model, data / WEIGHTS, expected, where)
    model.to(device).eval()
    return ModelFiles(model=model, config=cfg, item_ids=item_ids, titles=titles)
