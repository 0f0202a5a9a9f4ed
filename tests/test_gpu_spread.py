"""The warning a sweep prints when its fractional GPU trials cannot reach every GPU (Ray fills
one GPU with fractional requests before it opens the next)."""

from __future__ import annotations

import pytest

from xlrec.sweeps.ray_session import idle_gpus_note
from xlrec.sweeps.spec import SweepSpec


def _spec(gpus: float) -> SweepSpec:
    spec = SweepSpec()
    spec.gpus_per_trial = gpus
    return spec


def test_sixteenths_on_two_gpus_name_the_idle_gpu_and_the_share_that_spreads_them():
    note = idle_gpus_note(_spec(1 / 16), 8, 2.0)
    assert note is not None
    assert "use 0.5 of the cluster's 2 GPUs" in note and "1 GPU(s) will stay idle" in note
    assert "--gpus-per-trial 0.25" in note  # 8 trials over 2 GPUs: 4 per GPU


@pytest.mark.parametrize(
    ("gpus", "at_once", "cluster"),
    [(0.25, 8, 2.0), (0.5, 4, 2.0), (1.0, 1, 2.0), (0.0, 4, 2.0), (0.25, 2, 1.0), (0.25, 6, 2.0)],
)
def test_no_note_when_every_gpu_can_be_used_or_there_is_one(gpus, at_once, cluster):
    assert idle_gpus_note(_spec(gpus), at_once, cluster) is None
