"""What a running sweep learns, apart from what it was asked (xlrec.sweeps.spec.SweepSpec): the
sqlite file its own tracking server serves and that server's process, whether this driver
started Ray, and the GPU share `gpus_per_trial: auto` resolved to once Ray was up."""

from __future__ import annotations

from dataclasses import dataclass

from xlrec.sweeps.spec import SweepSpec


@dataclass
class SweepState:
    served_db: str | None = None  # the sqlite file the sweep's own server serves
    server_pid: int | None = None  # that server (its process group)
    ray_started: bool = False  # this driver called ray.init
    gpus_per_trial: float = 0.0  # each trial's GPU share, as Ray is asked for it

    @classmethod
    def of(cls, spec: SweepSpec) -> SweepState:
        return cls(gpus_per_trial=spec.gpu_share)
