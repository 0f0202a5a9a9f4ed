"""Device, precision and kernel selection: the one place that decides where and how to run.

CUDA when present (`auto`), with bf16 autocast; the mLSTM kernels are mlstm_kernels'
Triton chunkwise kernels on CUDA and the native PyTorch kernels on CPU. Also reads
resource usage (torch peak memory, NVML device memory, process RSS/CPU) for the
per-epoch records.
"""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass

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


def mlstm_kernel_names(kernel: str) -> dict[str, str]:
    """xLSTMLargeConfig kernel fields for a backend ("triton" on CUDA, "native" anywhere)."""
    if kernel == "triton":
        return {"chunkwise_kernel": "chunkwise--triton_limit_chunk",
                "sequence_kernel": "native_sequence__triton", "step_kernel": "triton"}
    return {"chunkwise_kernel": "chunkwise--native_autograd",
            "sequence_kernel": "native_sequence__native", "step_kernel": "native"}


def reset_peak_memory(rt: Runtime) -> None:
    if rt.is_cuda:
        torch.cuda.reset_peak_memory_stats(rt.device)
    psutil.Process().cpu_percent(None)  # starts the CPU-percent interval


_NVML = None


def _nvml_used_mb(rt: Runtime) -> float | None:
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
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        return pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20
    except Exception:  # NVML missing or the index is not an integer (MIG/UUID): skip the reading
        return None


def resource_usage(rt: Runtime) -> dict[str, float]:
    """Peak torch memory since the last reset, NVML device memory, process RSS and CPU%."""
    proc = psutil.Process()
    out = {"rss_mb": proc.memory_info().rss / 2**20, "cpu_percent": proc.cpu_percent(None)}
    if rt.is_cuda:
        out["gpu_peak_allocated_mb"] = torch.cuda.max_memory_allocated(rt.device) / 2**20
        out["gpu_peak_reserved_mb"] = torch.cuda.max_memory_reserved(rt.device) / 2**20
        used = _nvml_used_mb(rt)
        if used is not None:
            out["gpu_device_used_mb"] = used
    return out


def synchronize(rt: Runtime) -> None:
    if rt.is_cuda:
        torch.cuda.synchronize(rt.device)
