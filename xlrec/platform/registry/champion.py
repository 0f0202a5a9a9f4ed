"""Model registry: register the best-validation model, promote it with the `champion` alias.

Promotion rule: the alias moves to a new version only if its validation Recall@10 beats
the current champion's (ties keep the older version). MLflow has no compare-and-set on
aliases, so promotion is a convergent repair loop instead of a lock: every promoter,
after registering its version, re-reads all versions and points the alias at the best
one until a fresh read confirms it. The last alias write is always followed by its
writer's confirming read, and any better version registered after that read is
promoted by its own owner, so concurrent promotions can never end on a worse version
(tested with concurrent processes against a real `mlflow server`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from xlrec.errors import XlrecError
from xlrec.settings import VAL_SELECTION_KEY

ALIAS = "champion"
METRIC_TAG = VAL_SELECTION_KEY  # each version's best validation score, the champion's criterion


def registered_name(model: str, dataset: str, split: str = "leave_last_two") -> str:
    """`model-dataset`; a temporal split's runs register apart (`-temporal`): their validation
    metric is another protocol's, so they never compete with leave-last-two runs for a champion."""
    return f"{model}-{dataset}" + ("" if split == "leave_last_two" else f"-{split}")


@dataclass
class PromotionResult:
    version: int
    champion: int
    promoted: bool
    reason: str


def _metric(v) -> float | None:
    try:
        return float(v.tags[METRIC_TAG])
    except (KeyError, TypeError, ValueError):
        return None


def _best(versions) -> tuple[int, float] | None:
    scored = [(int(v.version), metric) for v in versions if (metric := _metric(v)) is not None]
    if not scored:
        return None
    # highest metric; among equals the oldest version (an equal score does not "beat" the champion)
    return min(scored, key=lambda t: (-t[1], t[0]))


_CONFLICT_MARKERS = ("duplicate key", "uniqueviolation", "unique constraint", "integrityerror", "duplicate entry")


def retry_on_conflict(fn, *args, attempts: int = 8):
    """An alias/tag write, retried when it lost a race. MLflow's SQL store upserts with
    SELECT-then-INSERT (`session.merge`), so two first writes of one key at the same moment make
    one of them fail on the primary key (PostgreSQL: UniqueViolation); the key then exists and
    writing again updates it."""
    for attempt in range(attempts):
        try:
            return fn(*args)
        except MlflowException as exc:
            if attempt == attempts - 1 or not any(m in str(exc).lower() for m in _CONFLICT_MARKERS):
                raise
            time.sleep(0.05 * (attempt + 1))


def _champion(client: MlflowClient, name: str) -> int | None:
    try:
        return int(client.get_model_version_by_alias(name, ALIAS).version)
    except MlflowException:
        return None


def promote(client: MlflowClient, name: str, version: int, max_rounds: int = 50) -> PromotionResult:
    """Point `champion` at the best version of `name`; record the decision on the versions."""
    previous = _champion(client, name)
    for _ in range(max_rounds):
        versions = client.search_model_versions(f"name='{name}'")
        best = _best(versions)
        if best is None:
            raise XlrecError(f"Registered model {name!r} has no version tagged with {METRIC_TAG}; cannot promote.")
        current = _champion(client, name)
        if current == best[0]:
            break
        retry_on_conflict(client.set_registered_model_alias, name, ALIAS, str(best[0]))
    else:  # pragma: no cover - would need >50 interleaved writers
        raise XlrecError(f"Promotion of {name} v{version} did not settle after {max_rounds} rounds; run it again.")
    champion = best[0]
    by_version = {int(v.version): _metric(v) for v in versions}
    mine = by_version.get(version)
    if champion == version:
        reason = (
            f"promoted: val recall@10 {mine:.6f} beats v{previous} ({by_version.get(previous, float('nan')):.6f})"
            if previous not in (None, version)
            else f"promoted: first version with val recall@10 {mine:.6f}"
        )
        if previous not in (None, version):
            retry_on_conflict(
                client.set_model_version_tag, name, str(previous), "demoted_by", f"v{version} at {time.ctime()}"
            )
    else:
        shown = f"{mine:.6f}" if mine is not None else f"n/a (no {METRIC_TAG} tag)"
        reason = (
            f"not promoted: val recall@10 {shown} does not beat champion v{champion} ({by_version.get(champion):.6f})"
        )
        retry_on_conflict(client.set_model_version_tag, name, str(champion), "defended_against", f"v{version}")
    retry_on_conflict(client.set_model_version_tag, name, str(version), "promotion", reason)
    return PromotionResult(version=version, champion=champion, promoted=champion == version, reason=reason)


@dataclass(frozen=True)
class VersionView:
    version: int
    val_metric: str  # the full tag: a cut value misreads (0.090137 vs 0.090138)
    seed: str
    run_id: str
    aliases: tuple[str, ...]


def list_registered() -> dict[str, list[VersionView]]:
    """Every registered model of the current store -> its versions (oldest first) with their
    validation score, seed, run and aliases: what `xlrec registry list` prints."""
    client = MlflowClient()
    out: dict[str, list[VersionView]] = {}
    for rm in client.search_registered_models():
        aliases: dict[str, list[str]] = {}
        for alias, ver in (rm.aliases or {}).items():
            aliases.setdefault(str(ver), []).append(alias)
        versions = sorted(client.search_model_versions(f"name='{rm.name}'"), key=lambda v: int(v.version))
        out[rm.name] = [
            VersionView(
                int(mv.version),
                mv.tags.get(METRIC_TAG, "-"),
                mv.tags.get("seed", "-"),
                mv.run_id or "-",
                tuple(aliases.get(str(mv.version), [])),
            )
            for mv in versions
        ]
    return out
