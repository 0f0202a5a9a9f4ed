"""The Tune trainable every sweep trial runs: one run, or a grid cell's seeds side by side."""

from __future__ import annotations

import copy
import traceback
from typing import Any

from xlrec.sweeps.trial import run_single, trial_spec
from xlrec.sweeps.trial_group import run_group


def run_trial(config: dict[str, Any]) -> None:
    """The Tune trainable (function API): one run (xlrec.sweeps.trial), or a grid cell's seeds
    side by side (xlrec.sweeps.trial_group, the spec's group_seeds)."""
    try:
        spec = trial_spec(config)
        if "seeds" in (config.get("cell") or {}):
            return run_group(spec, config)
        return run_single(spec, config)
    except Exception as exc:
        reported = tune_raisable(exc)
        if reported is exc:
            raise
        traceback.print_exception(exc)  # the original, in the trial's log; Tune shows `reported`
        raise reported from None


def tune_raisable(exc: BaseException) -> BaseException:
    """`exc`, or a RuntimeError with its type and message where Tune cannot report it.

    Tune shallow-copies a trial's exception and its causes (ray.air._internal.util.skip_exceptions);
    an exception whose __init__ wants more than its args (torch._dynamo's BackendCompilerFailed)
    fails that copy, and the trial is then reported as failing with the copy's TypeError."""
    try:
        copy.copy(exc)
        cause = exc.__cause__
        while cause is not None:
            copy.copy(cause)
            cause = cause.__cause__
    except Exception:  # noqa: BLE001 - any failure to copy is what this guards against
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc
