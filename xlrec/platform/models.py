"""Load a logged/registered model back: the module, its config and its item map."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from xlrec.config import PrepConfig, TrainConfig
from xlrec.device import Runtime
from xlrec.errors import XlrecError
from xlrec.rec_models import SequentialRecommender, build_model


@dataclass
class LoadedModel:
    model: SequentialRecommender
    config: TrainConfig
    item_ids: list[str]
    titles: list[str]
    local_path: Path
    run_id: str | None


def _config_from_yaml(path: Path) -> TrainConfig:
    raw = yaml.safe_load(path.read_text())
    prep = PrepConfig(**raw.pop("prep"))
    return TrainConfig(**raw, prep=prep)


def resolve_model_uri(uri: str) -> tuple[str, str | None]:
    """Check a models:/ or runs:/ URI exists; return it with the producing run id."""
    client = MlflowClient()
    run_id = None
    try:
        if uri.startswith("models:/"):
            ref = uri[len("models:/"):]
            if "@" in ref:
                name, alias = ref.split("@", 1)
                mv = client.get_model_version_by_alias(name, alias)
            else:
                name, _, ver = ref.partition("/")
                mv = client.get_model_version(name, ver) if ver.isdigit() else None
                if mv is None:
                    raise XlrecError(f"Model URI {uri!r} must be models:/NAME@ALIAS or models:/NAME/VERSION.")
            run_id = mv.run_id
        elif uri.startswith("runs:/"):
            run_id = uri[len("runs:/"):].split("/", 1)[0]
            client.get_run(run_id)
    except MlflowException as exc:
        raise XlrecError(
            f"Model {uri!r} was not found in the registry at {mlflow.get_tracking_uri()} ({exc.message.splitlines()[0]}). "
            f"List what exists with `xlrec registry list`, and check --tracking-uri."
        ) from None
    return uri, run_id


def load_model(uri: str, rt: Runtime, dst: str | Path | None = None) -> LoadedModel:
    """Download the model (with config.yaml and item_map.json) and rebuild it for `rt`."""
    uri, run_id = resolve_model_uri(uri)
    target = Path(dst) if dst else Path(tempfile.mkdtemp(prefix="xlrec-model-"))
    target.mkdir(parents=True, exist_ok=True)
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(target)))
    except (MlflowException, OSError) as exc:
        raise XlrecError(f"Could not download model {uri!r}: {exc}. Check the URI and the tracking server.") from None
    for extra in ("config.yaml", "item_map.json"):  # mlflow.pytorch stores extra_files under extra_files/
        if not (local / extra).exists() and (local / "extra_files" / extra).exists():
            shutil.copy2(local / "extra_files" / extra, local / extra)
    cfg = _config_from_yaml(local / "config.yaml")
    item_map = json.loads((local / "item_map.json").read_text())
    import mlflow.pytorch as mlflow_pytorch  # aliased: a bare `import mlflow.pytorch` here made `mlflow` local

    logged = mlflow_pytorch.load_model(str(local), map_location="cpu")
    # Rebuild with this runtime's kernels (e.g. Triton on CUDA) and copy the weights in.
    model = build_model(cfg.model, len(item_map["item_ids"]) - 1, cfg, rt.kernel)
    model.load_state_dict(logged.state_dict())
    model.to(rt.device).eval()
    return LoadedModel(model=model, config=cfg, item_ids=item_map["item_ids"], titles=item_map["titles"],
                       local_path=local, run_id=run_id)
