"""A sweep's name is unique in its experiment: a default name takes a free suffix, a given one that
is taken is refused (MLflow's run list could not tell two parents apart, and --resume finds a sweep
by its name); --resume of a sweep that never ran is refused before anything is made."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from helpers import sweep
from xlrec.errors import ConfigError
from xlrec.platform.tracking.sweep_tracking import SweepRecorder
from xlrec.sweeps.driver import _free_name
from xlrec.sweeps.spec import SweepSpec


def _parents(uri: str, experiment: str, *names: str) -> None:
    client = MlflowClient(uri)
    exp = client.create_experiment(experiment)
    for name in names:
        client.create_run(exp, run_name=name, tags={"xlrec.sweep": "parent"})
    client.create_run(exp, run_name="search-xlstm-ml-100k-3")  # a trial or single run: not a sweep


def test_a_default_name_takes_the_first_free_suffix_and_a_given_one_is_refused(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _parents(uri, "xlrec-ml-100k", "search-xlstm-ml-100k", "search-xlstm-ml-100k-2")
    recorder = SweepRecorder(uri)
    assert recorder.sweep_names("xlrec-ml-100k") == {"search-xlstm-ml-100k", "search-xlstm-ml-100k-2"}
    assert recorder.sweep_names("no-such-experiment") == set()
    spec = SweepSpec()
    name, experiment = spec.name_defaults()
    assert _free_name(spec, name, experiment, False, recorder) == "search-xlstm-ml-100k-3" == spec.name
    assert "this one is 'search-xlstm-ml-100k-3'" in capsys.readouterr().err
    assert _free_name(SweepSpec(), "fresh", experiment, True, recorder) == "fresh"
    with pytest.raises(ConfigError, match="A sweep named 'search-xlstm-ml-100k' already ran in experiment"):
        _free_name(SweepSpec(), "search-xlstm-ml-100k", experiment, True, recorder)


def test_resuming_a_sweep_that_never_ran_makes_nothing(tmp_path):
    proc = sweep(tmp_path, "--resume", "--name", "nosuchsweep", "--source", str(tmp_path / "no-data"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "There is no sweep named 'nosuchsweep' to resume" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no mlflow.db, no data, no ray_results
