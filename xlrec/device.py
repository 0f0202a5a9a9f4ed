"""Device, precision and kernel selection: the one place that decides where and how to run.

CUDA when present (`auto`), with bf16 autocast; the mLSTM kernels are mlstm_kernels'
Triton chunkwise kernels on CUDA and the native PyTorch kernels on CPU. Also reads
resource usage (torch peak memory, NVML device memory, process RSS/CPU) for the
per-epoch records.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch

from xlrec.errors import ConfigError


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None  # autocast dtype, None = full precision
    kernel: str  # "triton" | "native"

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def device_name(self) -> str:
        if self.is_cuda:
            return torch.cuda.get_device_name(self.device)
        return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def select_runtime(device: str = "auto", kernel: str = "auto", amp: bool = True) -> Runtime:
    if device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise ConfigError(f"Unknown device {device!r}. Use auto, cpu, cuda or cuda:N.") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(
                f"--device {device} was asked for, but this machine has no usable CUDA GPU "
                f"(torch {torch.__version__}). Use --device cpu or auto."
            )
    if kernel == "auto":
        kernel = "triton" if dev.type == "cuda" else "native"
    if kernel == "triton" and dev.type != "cuda":
        raise ConfigError("--kernel triton needs a CUDA device; use --kernel native (or auto) on CPU.")
    amp_dtype = torch.bfloat16 if (amp and dev.type == "cuda") else None
    return Runtime(device=dev, amp_dtype=amp_dtype, kernel=kernel)


@contextlib.contextmanager
def thread_stream(device: str = "auto") -> Iterator[None]:
    """This thread's CUDA work on a stream of its own, where `device` resolves to CUDA: runs that
    share a process (xlrec.sweeps.trial_group) then run their kernels side by side on the GPU
    instead of queueing on the default stream. Elsewhere nothing changes."""
    rt = select_runtime(device)
    if not rt.is_cuda:
        yield
        return
    with torch.cuda.device(rt.device), torch.cuda.stream(torch.cuda.Stream(rt.device)):
        yield


def use_cuda_graph(rt: Runtime, wanted: bool, model_capturable: bool, sample_mode: str) -> bool:
    """Whether the trainer captures its step as a CUDA graph (xlrec.training.cuda_graph).

    Only on CUDA, in window mode, for models that declare `graph_capturable` (their step has
    fixed shapes and draws random numbers only from the default CUDA generator, which graphs
    handle: dropout, and BERT4Rec's masks when graphed). xlstm-s's sLSTM CUDA kernels were not
    checked under capture, and prefix mode's targets include padding ids, so those run eagerly.
    """
    return wanted and rt.is_cuda and model_capturable and sample_mode == "window"


def use_compile(rt: Runtime, wanted: bool, model_compilable: bool) -> bool:
    """Whether the training step runs the model's encoder through torch.compile. Only on CUDA:
    on a CPU, Inductor's C++ compilation of a run's graphs costs more than a short run saves
    (docs/results/speed.md "The encoder through torch.compile"). Only for
    models that declare `compilable` and have parameters (the RNNs and `pop` train eagerly); the
    run logs what was decided as `resolved_compile`."""
    return wanted and rt.is_cuda and model_compilable


# On a CPU an evaluation batch's activations (users x max_len x width, and the mLSTM's per-chunk
# matrices) outgrow the caches past a few hundred users; the ranks do not depend on the batch. GPUs
# want the larger batches (docs/results/speed.md "The CPU training step").
CPU_EVAL_BATCH = 256


def eval_batch_size(rt: Runtime, wanted: int) -> int:
    """Users per evaluation batch: the config's `eval_batch_size`, at most CPU_EVAL_BATCH on a CPU.
    The batch never changes a rank, only how fast they come."""
    return wanted if rt.is_cuda else min(wanted, CPU_EVAL_BATCH)


# xlstm 2.0.6's Triton chunkwise kernels multiply over the query/key head width (embedding_dim /
# num_heads / 2), and Triton cannot compile a matrix product narrower than 16 (docs/results/
# defaults-search.md "Faults the searches found"). Such models take the native kernels instead.
TRITON_MIN_HEAD_DIM = 32


def mlstm_kernel(kernel: str, embedding_dim: int, num_heads: int) -> str:
    """The mLSTM backend a model of this shape runs: Triton where its kernels compile, else native."""
    if kernel == "triton" and embedding_dim // num_heads < TRITON_MIN_HEAD_DIM:
        return "native"
    return kernel


def mlstm_chunk_size(kernel: str, max_len: int) -> int:
    """The chunk of the chunkwise mLSTM kernels. Triton's take 16..64 and 64 is fastest on the GPU.
    The native kernels take any size; a chunk that divides max_len saves the left padding (length 50
    in chunks of 16 pads to 64), and a longer chunk means fewer sequential steps: the largest
    divisor of max_len in 16..64, else 16; the outputs are the same (docs/results/speed.md "The CPU
    training step")."""
    if kernel == "triton":
        return 64
    return max((c for c in range(16, 65) if max_len % c == 0), default=16)


def mlstm_parallel_form(kernel: str, chunk_size: int, max_len: int) -> bool:
    """Whether the mLSTM runs its parallel (quadratic) form in place of the native chunkwise kernel.
    Where one chunk holds the whole sequence the two compute the same (outputs equal to 1e-5), and
    the parallel form skips the chunkwise kernel's state bookkeeping (docs/results/speed.md "The CPU
    training step"). Longer sequences keep the chunks (the parallel form's memory is quadratic)."""
    return kernel == "native" and max_len <= chunk_size


def mlstm_kernel_names(kernel: str) -> dict[str, str]:
    """xLSTMLargeConfig kernel fields for a backend ("triton" on CUDA, "native" anywhere)."""
    if kernel == "triton":
        return {
            "chunkwise_kernel": "chunkwise--triton_limit_chunk",
            "sequence_kernel": "native_sequence__triton",
            "step_kernel": "triton",
        }
    return {
        "chunkwise_kernel": "chunkwise--native_autograd",
        "sequence_kernel": "native_sequence__native",
        "step_kernel": "native",
    }


def start_usage_interval(rt: Runtime, reset_gpu_peak: bool) -> None:
    """Start the CPU-percent and energy interval that resource_usage() reads; with
    `reset_gpu_peak` also the torch peak-memory counter. The trainer resets the peak once per
    run, not per epoch: a CUDA-graphed step allocates its memory once, when it is captured, so a
    per-epoch peak would miss it in every later epoch."""
    if rt.is_cuda and reset_gpu_peak:
        torch.cuda.reset_peak_memory_stats(rt.device)
    _process().cpu_percent(None)
    _ENERGY_START.joules = energy_counter(rt)


# --- energy -----------------------------------------------------------------------------------------
# NVML's total-energy counter of the GPU (millijoules since the driver loaded; Volta and later) or
# the CPU packages' RAPL counters (/sys/class/powercap, microjoules, wrapping at max_energy_range_uj).
# Both are the device's: runs sharing a GPU (or a CPU) each read what all of them used.
_RAPL = Path("/sys/class/powercap")
_ENERGY_START = threading.local()


def energy_source(rt: Runtime) -> str | None:
    """What a run's energy is read from, or None where the host exposes no counter."""
    if rt.is_cuda:
        return "NVML total energy of the GPU (device-wide)" if _nvml_energy_j(rt) is not None else None
    return "RAPL package counters of the CPUs (machine-wide)" if _rapl_j() is not None else None


def energy_counter(rt: Runtime) -> tuple[float, float] | None:
    """(joules so far, the counter's wrap range in joules) of the run's device, or None."""
    if rt.is_cuda:
        value = _nvml_energy_j(rt)
        return None if value is None else (value, math.inf)
    return _rapl_j()


def _nvml_energy_j(rt: Runtime) -> float | None:
    handle = _nvml_handle(rt)
    if handle is None:
        return None
    try:
        import pynvml

        return pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000.0
    except Exception:  # a GPU without the counter (before Volta), or NVML gone
        return None


def _rapl_j() -> tuple[float, float] | None:
    total, wrap = 0.0, 0.0
    try:
        domains = sorted(p for p in _RAPL.glob("intel-rapl:*") if p.name.count(":") == 1)  # packages only
        for d in domains:
            total += int((d / "energy_uj").read_text()) / 1e6
            wrap = max(wrap, int((d / "max_energy_range_uj").read_text()) / 1e6)
    except (OSError, ValueError):  # absent, or readable by root only (the usual default)
        return None
    return (total, wrap) if domains else None


def energy_since(rt: Runtime, start: tuple[float, float] | None) -> float | None:
    """Joules used since `start` (a counter reading), a wrapped counter counted once round."""
    now = energy_counter(rt)
    if start is None or now is None:
        return None
    used = now[0] - start[0]
    return used + start[1] if used < 0 and math.isfinite(start[1]) else max(0.0, used)


_PROC: psutil.Process | None = None


def _process() -> psutil.Process:
    """This process's psutil handle, one per process: `cpu_percent(None)` measures from the
    previous call on the same object, so a fresh handle per call would always read 0.0."""
    global _PROC
    if _PROC is None or _PROC.pid != os.getpid():  # a forked child gets its own handle
        _PROC = psutil.Process()
    return _PROC


_NVML = None


def _nvml_handle(rt: Runtime):
    global _NVML
    try:
        import pynvml

        if _NVML is None:
            pynvml.nvmlInit()
            _NVML = True
        index = rt.device.index if rt.device.index is not None else torch.cuda.current_device()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible:
            index = int(visible.split(",")[index])
        return pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception:  # NVML missing or the index is not an integer (MIG/UUID): skip the reading
        return None


def _nvml_used_mb(rt: Runtime) -> float | None:
    handle = _nvml_handle(rt)
    if handle is None:
        return None
    try:
        import pynvml

        return pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20
    except Exception:
        return None


def resource_usage(rt: Runtime) -> dict[str, float]:
    """Peak torch memory since the last reset (the run's start), NVML device memory, process RSS
    and CPU% since start_usage_interval(); on a CPU the torch threads the epoch ran on (a sweep's
    last trials widen to the cores no trial holds: xlrec.sweeps.trial.IdleCores)."""
    proc = _process()
    out = {"rss_mb": proc.memory_info().rss / 2**20, "cpu_percent": proc.cpu_percent(None)}
    joules = energy_since(rt, getattr(_ENERGY_START, "joules", None))
    if joules is not None:
        out["energy_j"] = joules
    if not rt.is_cuda:
        out["cpu_threads"] = float(torch.get_num_threads())
    else:
        out["gpu_peak_allocated_mb"] = torch.cuda.max_memory_allocated(rt.device) / 2**20
        out["gpu_peak_reserved_mb"] = torch.cuda.max_memory_reserved(rt.device) / 2**20
        used = _nvml_used_mb(rt)
        if used is not None:
            out["gpu_device_used_mb"] = used
    return out


def synchronize(rt: Runtime) -> None:
    """Wait for the work this thread queued (its current CUDA stream), not the whole device's:
    runs that share a process (xlrec.sweeps.shared) time their epochs on their own streams."""
    if rt.is_cuda:
        torch.cuda.current_stream(rt.device).synchronize()
