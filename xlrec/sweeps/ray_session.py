"""The sweep's Ray: connect to a cluster (or start a local one), hand the trials their
environment, and size how many trials run at once.

Credentials never travel in Tune's param space (Tune writes it into ray_results): a tracking
URI or data source holding a password reaches the trials through the Ray runtime env."""

from __future__ import annotations

import math
import os

from xlrec.errors import ConfigError, XlrecError
from xlrec.redact import redact
from xlrec.sweeps.spec import SweepSpec
from xlrec.sweeps.state import SweepState
from xlrec.sweeps.stopping import StopSignals
from xlrec.sweeps.trial import SECRET_SOURCE_ENV, SECRET_URI_ENV


def secret_env(uri: str, source: str | None) -> dict[str, str]:
    """The tracking URI and data source for the trials' environment, when they hold credentials."""
    env = {}
    if redact(uri) != uri:
        env[SECRET_URI_ENV] = uri
    if source and redact(source) != source:
        env[SECRET_SOURCE_ENV] = source
    return env


def start_ray(spec: SweepSpec, state: SweepState, stop: StopSignals, secrets: dict[str, str]) -> None:
    """ray.init unless Ray runs already (then this driver does not own it). A local cluster's
    trials get the data locations; any cluster's get `secrets`."""
    import ray

    if ray.is_initialized():
        return
    address = spec.ray_address or os.environ.get("RAY_ADDRESS")
    state.ray_started = True
    try:
        local = (
            {}
            if address
            else {
                "XLREC_DATA_DIR": os.environ.get("XLREC_DATA_DIR", ""),
                "XLREC_DATA_MIRROR": os.environ.get("XLREC_DATA_MIRROR", ""),
            }
        )
        env_vars = {**local, **secrets}
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": env_vars} if env_vars else None,
        )
    except ConnectionError as exc:  # also a cluster that wants a token (RAY_AUTH_MODE=token)
        lines = str(exc.__cause__ or "").strip().splitlines()  # Ray embeds a remote traceback here
        cause = f" ({lines[-1][:300]})." if lines else "."
        raise XlrecError(
            f"Cannot connect to the Ray cluster at {address}: {exc}{cause} Check --ray-address"
            f" / RAY_ADDRESS; a cluster started with token authentication needs "
            f"RAY_AUTH_MODE=token (and its token) in this environment too."
        ) from None
    stop.install()  # Ray's core worker has just replaced our SIGTERM handler


def cluster_resources() -> dict[str, float]:
    import ray

    return {k: float(v) for k, v in ray.cluster_resources().items()}


def cluster_gpus() -> float:
    return cluster_resources().get("GPU", 0.0)


def concurrency(spec: SweepSpec, gpus: float, total: int, res: dict[str, float] | None = None) -> int:
    """How many trials Ray can run at once: the cluster's CPUs (and GPUs) over a trial's share
    (`gpus`: its GPU share, 0 for none)."""
    res = cluster_resources() if res is None else res
    fits = [res.get("CPU", 1.0) / spec.cpus_per_trial] if spec.cpus_per_trial else []
    if gpus:
        fits.append(res.get("GPU", 0.0) / gpus)
    n = int(math.floor(min(fits) + 1e-9)) if fits else total
    return max(1, min(total, n, spec.max_concurrent or total))


def spread_over_gpus(spec: SweepSpec, total: int, res: dict[str, float]) -> tuple[float, str]:
    """Resolve `gpus_per_trial: auto`: the trials that run at once (the CPUs and max_concurrent
    decide how many) split evenly over the cluster's GPUs, each GPU's share rounded down to Ray's
    precision of 1e-4 so that they fit (6 x 0.1667 is more than one GPU). Ray offers no such
    setting: it fills one GPU with fractional trials before it opens the next."""
    gpus = res.get("GPU", 0.0)
    if gpus < 1:
        raise ConfigError(
            "gpus_per_trial: auto spreads the trials over the Ray cluster's GPUs, and this cluster has none. "
            "Run the sweep on a cluster with GPUs, or give resources.gpus_per_trial (--gpus-per-trial) a number "
            "(0 trains on CPUs)."
        )
    at_once = concurrency(spec, 0.0, total, res)  # what the CPUs and max_concurrent allow
    per_gpu = math.ceil(at_once / math.floor(gpus))
    share = min(1.0, math.floor(1e4 / per_gpu) / 1e4)
    return share, (
        f"gpus_per_trial auto: {at_once} trials at once over {math.floor(gpus)} GPU(s), up to {per_gpu} per GPU, "
        f"{share:g} GPU each"
    )


def idle_gpus_note(share: float, at_once: int, cluster_gpus: float) -> str | None:
    """A warning when a sweep's fractional GPU trials cannot reach every GPU. Ray places a
    fractional request on a GPU that already holds one before it opens the next (its packing
    policy), so 8 trials of 1/16 GPU share the first GPU of two and the second stays idle."""
    if not (0 < share < 1) or cluster_gpus < 2:
        return None
    used = at_once * share
    if used > cluster_gpus - 1 + 1e-9:
        return None
    share = 1 / math.ceil(at_once / cluster_gpus)
    return (
        f"{at_once} trials at once x {share:g} GPU use {used:g} of the cluster's {cluster_gpus:g} GPUs, "
        f"and Ray fills one GPU before it opens the next: {int(cluster_gpus - math.ceil(used - 1e-9))} GPU(s) "
        f"will stay idle. Ask for --gpus-per-trial {share:g} (or auto; resources.gpus_per_trial in the spec) to "
        f"spread them over every GPU."
    )
