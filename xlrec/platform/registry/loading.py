"""Find, download and load logged/registered models, without ever unpickling anything.

xlrec's own loading path never calls `mlflow.pytorch.load_model`, `mlflow.pyfunc.load_model`
or `torch.load`: it downloads the model directory into a temporary folder that is always
removed (or reads a local download in place) and rebuilds the model from its validated
config and safetensors weights (xlrec.platform.registry.model_format).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from xlrec.device import Runtime
from xlrec.errors import XlrecError
from xlrec.platform.registry import model_format
from xlrec.rec_models import SequentialRecommender
from xlrec.settings import TrainConfig

ACCEPTED = (
    "models:/NAME@ALIAS (e.g. models:/sasrec-ml-100k@champion), models:/NAME/VERSION, runs:/RUN_ID/PATH "
    "(e.g. runs:/<run id>/model), or a local directory written by `xlrec registry download`"
)
_REGISTERED = re.compile(r"models:/([^/@]+)(?:@([A-Za-z0-9_\-]+)|/([0-9]+))")
_RUN = re.compile(r"runs:/([A-Za-z0-9]+)/([A-Za-z0-9_\-./]+)")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")  # file:, s3:, http:, models:... (never a local path)


@dataclass
class LoadedModel:
    model: SequentialRecommender
    config: TrainConfig
    item_ids: list[str]
    titles: list[str]
    run_id: str | None
    local: bool  # loaded from a local directory (no tracking server involved)


@dataclass
class ModelRef:
    uri: str
    run_id: str | None = None
    local_dir: Path | None = None


def parse_model_uri(uri: str) -> ModelRef:
    """Accept only the model reference forms xlrec knows; anything else is refused before any I/O."""
    if _REGISTERED.fullmatch(uri):
        return ModelRef(uri)
    m = _RUN.fullmatch(uri)
    if m and ".." not in m.group(2).split("/"):
        return ModelRef(uri, run_id=m.group(1))
    if uri.strip() and not _SCHEME.match(uri) and Path(uri).is_dir():
        return ModelRef(uri, local_dir=Path(uri))
    raise XlrecError(
        f"Model URI {uri!r} is not one xlrec accepts (an existing local directory, a registry or run "
        f"reference). Use one of: {ACCEPTED}. List registered models with `xlrec registry list`."
    )


def resolve_model_uri(uri: str) -> ModelRef:
    """Check a reference exists in the tracking server; fill in the producing run id."""
    ref = parse_model_uri(uri)
    if ref.local_dir is not None:
        return ref
    client = MlflowClient()
    try:
        m = _REGISTERED.fullmatch(uri)
        if m:
            name, alias, version = m.groups()
            mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
            ref.run_id = mv.run_id
        else:
            assert ref.run_id is not None, "a runs:/ URI names its run"
            client.get_run(ref.run_id)
    except MlflowException as exc:
        raise XlrecError(
            f"Model {uri!r} was not found in the registry at {mlflow.get_tracking_uri()} "
            f"({exc.message.splitlines()[0]}). "
            f"List what exists with `xlrec registry list`, and check --tracking-uri."
        ) from None
    return ref


def _download(ref: ModelRef, dst: Path) -> Path:
    """Copy the model's files into `dst` (nothing is loaded); return the model directory."""
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=ref.uri, dst_path=str(dst))
    except (MlflowException, OSError) as exc:
        raise XlrecError(
            f"Could not download model {ref.uri!r}: {str(exc).splitlines()[0]}. Check the URI and the tracking server."
        ) from None
    return Path(local)


def load_model(uri: str, rt: Runtime) -> LoadedModel:
    """Rebuild the model behind `uri` for runtime `rt` (kernels, device)."""
    ref = resolve_model_uri(uri)
    if ref.local_dir is not None:
        return _load_dir(ref.local_dir, ref, rt, local=True)
    with tempfile.TemporaryDirectory(prefix="xlrec-model-") as tmp:
        return _load_dir(_download(ref, Path(tmp)), ref, rt, local=False)


def _load_dir(model_dir: Path, ref: ModelRef, rt: Runtime, local: bool) -> LoadedModel:
    data = model_format.check_layout(model_dir, f"Model {ref.uri!r}", ref.run_id)
    files = model_format.load_model_dir(data, f"model {ref.uri!r}", rt.kernel, str(rt.device))
    run_id = ref.run_id
    if local:
        run_id = model_format.read_mlmodel(model_dir, ref.uri).get("run_id")
    return LoadedModel(
        model=files.model,
        config=files.config,
        item_ids=files.item_ids,
        titles=files.titles,
        run_id=run_id if isinstance(run_id, str) else None,
        local=local,
    )


# --- registry download: copy files, load nothing --------------------------------------------------


def _prepare_destination(dst: Path) -> list[Path]:
    """Refuse destinations that would merge or overwrite; create missing parents (returned for cleanup)."""
    dst = Path(os.path.abspath(dst))
    for parent in dst.parents:
        if parent.exists() and not parent.is_dir():
            raise XlrecError(
                f"Cannot download into {dst}: {parent} is a file, not a directory. Pass --dst as a new directory path."
            )
    if dst.exists() or dst.is_symlink():
        if not dst.is_dir():
            raise XlrecError(
                f"Cannot download into {dst}: it is an existing file. Pass --dst as a new (or empty) "
                f"directory; xlrec does not overwrite files."
            )
        if any(dst.iterdir()):
            raise XlrecError(
                f"Cannot download into {dst}: the directory is not empty, and xlrec does not merge a "
                f"model into (or overwrite) existing files. Pass a new or empty directory as --dst."
            )
    created: list[Path] = []
    for parent in reversed(dst.parents):
        if not parent.exists():
            try:
                parent.mkdir()
            except OSError as exc:
                _remove_created(created)
                raise XlrecError(
                    f"Cannot create {parent} for the download ({exc.strerror}). Pass a --dst in a writable location."
                ) from None
            created.append(parent)
    return created


def _remove_created(created: list[Path]) -> None:
    for path in reversed(created):
        try:
            path.rmdir()
        except OSError:
            pass


def download_model(uri: str, dst: Path) -> tuple[Path, Path, str | None]:
    """Download `uri` into the new or empty directory `dst`, atomically; return (dst, data folder, run id).

    The files land in a staging folder beside `dst`, their layout is checked (an old pickled
    model is reported as such without being opened), then one rename puts them in place. On any
    failure nothing is left: no staging folder, no partial `dst`, no parents it created."""
    ref = resolve_model_uri(uri)
    dst = Path(os.path.abspath(dst))
    created = _prepare_destination(dst)
    mode = dst.stat().st_mode & 0o7777 if dst.is_dir() else None
    try:
        try:
            staging = Path(tempfile.mkdtemp(prefix=f".{dst.name}.xlrec-download-", dir=dst.parent))
        except OSError as exc:
            raise XlrecError(
                f"Cannot write to {dst.parent} ({exc.strerror}). Pass a --dst in a writable location."
            ) from None
        try:
            local = _download(ref, staging)
            data = model_format.check_layout(local, f"Model {uri!r}", ref.run_id)
            try:
                os.rename(local, dst)  # atomic; replaces dst only when it is an empty directory
            except OSError as exc:
                raise XlrecError(
                    f"Cannot move the downloaded model into {dst} ({exc.strerror}); nothing was "
                    f"written there. Pass a new or empty directory as --dst."
                ) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        _remove_created(created)
        raise
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(dst, mode if mode is not None else 0o777 & ~umask)  # mkdtemp made it private (0700)
    return dst, dst / data.relative_to(local), ref.run_id
