"""Peak memory of this process and of each CUDA device, under AllenNLP's metric names."""

from __future__ import annotations

import resource
import sys

import torch


def peak_memory_mb(worker: int = 0, device: torch.device | None = None) -> dict[str, float]:
    """``peak_worker_N_memory_MB`` (resident set size) and the peak memory allocated on CUDA devices.

    With ``device`` (a worker's training device), as AllenNLP's trainer reports it: ``peak_gpu_N_memory_MB`` of
    that device alone under the worker's number ``N`` (nothing for a CPU device), so the workers' entries gathered
    together do not overwrite each other. Without it, ``peak_gpu_N_memory_MB`` of every CUDA device ``N`` as this
    process sees it."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, kilobytes on Linux
    metrics = {f"peak_worker_{worker}_memory_MB": peak / scale}
    if device is not None:
        if device.type == "cuda":
            metrics[f"peak_gpu_{worker}_memory_MB"] = torch.cuda.max_memory_allocated(device) / (1024 * 1024)
    elif torch.cuda.is_available():
        for number in range(torch.cuda.device_count()):
            metrics[f"peak_gpu_{number}_memory_MB"] = torch.cuda.max_memory_allocated(number) / (1024 * 1024)
    return metrics
