"""Fractional GPU trials over several GPUs: Ray fills one GPU with fractional requests before it
opens the next, so a sweep warns when its trials cannot reach every GPU, and `gpus_per_trial:
auto` picks the share that spreads them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from xlrec.cli.sweep import spec_from_args
from xlrec.sweeps.checks import check_spec
from xlrec.sweeps.ray_session import idle_gpus_note
from xlrec.sweeps.spec_file import load_spec, spec_yaml

SPEC = """\
mode: grid
datasets: [synthetic]
models: [sasrec, gru4rec]
seeds: [1, 2]
grid: {max_len: [8, 16]}
resources: {cpus_per_trial: 0.5, gpus_per_trial: auto, max_concurrent: 12}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_sixteenths_on_two_gpus_name_the_idle_gpu_and_the_share_that_spreads_them():
    note = idle_gpus_note(1 / 16, 8, 2.0)
    assert note is not None
    assert "use 0.5 of the cluster's 2 GPUs" in note and "1 GPU(s) will stay idle" in note
    assert "--gpus-per-trial 0.25 (or auto;" in note  # 8 trials over 2 GPUs: 4 per GPU


@pytest.mark.parametrize(
    ("gpus", "at_once", "cluster"),
    [(0.25, 8, 2.0), (0.5, 4, 2.0), (1.0, 1, 2.0), (0.0, 4, 2.0), (0.25, 2, 1.0), (0.25, 6, 2.0)],
)
def test_no_note_when_every_gpu_can_be_used_or_there_is_one(gpus, at_once, cluster):
    assert idle_gpus_note(gpus, at_once, cluster) is None


def test_gpus_per_trial_auto_spreads_the_trials_at_once_over_every_gpu(tmp_path):
    """`auto` is resolved once Ray is up (xlrec.sweeps.ray_session.spread_over_gpus), from the
    cluster's resources: Ray itself fills one GPU with fractional trials before the next."""
    from xlrec.cli import build_parser
    from xlrec.errors import ConfigError
    from xlrec.sweeps.ray_session import spread_over_gpus

    spec = load_spec(write(tmp_path, SPEC))
    check_spec(spec)
    assert spec.gpus_auto and spec.gpus_per_trial == "auto" and spec.gpu_share == 0.0
    assert "gpus_per_trial: auto" in spec_yaml(spec) and load_spec(write(tmp_path, spec_yaml(spec))).gpus_auto
    # twelve at once: 6 per GPU on two (a share of 1/6 rounded down, so that six fit), 12 on one
    for gpus, share in ((2, 0.1666), (1, 0.0833), (3, 0.25), (24, 1.0)):
        resolved, line = spread_over_gpus(spec, 36, {"CPU": 32.0, "GPU": float(gpus)})
        assert resolved == share, gpus
        assert f"{share:g} GPU each" in line
    assert 6 * 0.1666 <= 1.0 < 6 * (1 / 6 + 1e-4)
    # the CPUs bound the trials at once too: 4 CPUs of 0.5 each = 8 at once over 2 GPUs
    assert spread_over_gpus(spec, 36, {"CPU": 4.0, "GPU": 2.0})[0] == 0.25
    with pytest.raises(ConfigError, match="this cluster has none"):
        spread_over_gpus(spec, 36, {"CPU": 32.0})
    # a number on the command line replaces the spec's auto, and auto the spec's number
    parse = build_parser().parse_args
    spec = spec_from_args(parse(["sweep", "--spec", str(write(tmp_path, spec_yaml(spec))), "--gpus-per-trial", "0.5"]))
    assert not spec.gpus_auto and spec.gpus_per_trial == 0.5
    spec = spec_from_args(parse(["sweep", "--spec", str(write(tmp_path, SPEC)), "--gpus-per-trial", "auto"]))
    assert spec.gpus_auto and spec.gpus_per_trial == "auto"
