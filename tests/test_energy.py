"""Energy per epoch and per run: the device's own counter (NVML on a GPU, RAPL on a CPU), read at
an epoch's start and end; a wrapped RAPL counter counted once round; a host without a counter says
so instead of logging zeros."""

from __future__ import annotations

import pytest
import torch

from xlrec import device
from xlrec.device import energy_counter, energy_since, energy_source, resource_usage, select_runtime
from xlrec.training.events import TrainResult

CPU = select_runtime("cpu", "native", False)


def _rapl(root, packages: dict[str, tuple[int, int]]) -> None:
    for name, (energy, wrap) in packages.items():
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "energy_uj").write_text(f"{energy}\n")
        (d / "max_energy_range_uj").write_text(f"{wrap}\n")


def test_rapl_packages_are_summed_and_a_wrapped_counter_counted_once_round(tmp_path, monkeypatch):
    monkeypatch.setattr(device, "_RAPL", tmp_path)
    assert energy_counter(CPU) is None and energy_source(CPU) is None  # no counter: not measured
    _rapl(tmp_path, {"intel-rapl:0": (5_000_000, 100_000_000), "intel-rapl:1": (3_000_000, 100_000_000)})
    _rapl(tmp_path, {"intel-rapl:0:0": (99_000_000, 100_000_000)})  # a core sub-domain: inside package 0
    assert energy_counter(CPU) == (8.0, 100.0)
    assert "RAPL" in energy_source(CPU)
    start = energy_counter(CPU)
    _rapl(tmp_path, {"intel-rapl:0": (7_500_000, 100_000_000), "intel-rapl:1": (3_500_000, 100_000_000)})
    assert energy_since(CPU, start) == pytest.approx(3.0)
    _rapl(tmp_path, {"intel-rapl:0": (1_000_000, 100_000_000), "intel-rapl:1": (4_000_000, 100_000_000)})
    assert energy_since(CPU, (98.0, 100.0)) == pytest.approx(5.0 - 98.0 + 100.0)  # the sum wrapped once


def test_an_epoch_reads_its_energy_and_a_run_sums_them(tmp_path, monkeypatch):
    monkeypatch.setattr(device, "_RAPL", tmp_path)
    _rapl(tmp_path, {"intel-rapl:0": (10_000_000, 1_000_000_000)})
    device.start_usage_interval(CPU, reset_gpu_peak=False)
    _rapl(tmp_path, {"intel-rapl:0": (12_500_000, 1_000_000_000)})
    assert resource_usage(CPU)["energy_j"] == pytest.approx(2.5)
    monkeypatch.setattr(device, "_RAPL", tmp_path / "none")
    device.start_usage_interval(CPU, reset_gpu_peak=False)
    assert "energy_j" not in resource_usage(CPU)  # not measured: no key, not a zero
    result = TrainResult.__new__(TrainResult)
    result.history = [{"energy_j": 2.5, "epoch_time_s": 1.0}, {"energy_j": 1.5, "epoch_time_s": 1.0}]
    assert result.energy_j == pytest.approx(4.0)
    result.history = [{"energy_j": 2.5, "epoch_time_s": 1.0}, {"epoch_time_s": 1.0}]
    assert result.energy_j is None  # a part read is not the run's energy


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_nvml_counts_the_gpus_joules():
    rt = select_runtime("cuda", "auto", True)
    start = energy_counter(rt)
    assert start is not None and "NVML" in energy_source(rt)
    x = torch.randn(4096, 4096, device="cuda")
    for _ in range(200):
        x = x @ x / 64
    torch.cuda.synchronize()
    assert energy_since(rt, start) > 0
