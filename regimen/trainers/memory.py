"""Peak memory of this process and of each CUDA device, under AllenNLP's metric names."""

from __future__ import annotations

import resource
import sys

import torch


def peak_memory_mb(worker: int = 0) -> dict[str, float]:
    """``peak_worker_N_memory_MB`` (resident set size) and ``peak_gpu_N_memory_MB`` for each CUDA device."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, kilobytes on Linux
    metrics = {f"peak_worker_{worker}_memory_MB": peak / scale}
    if torch.cuda.is_available():
        for device in range(torch.cuda.device_count()):
            metrics[f"peak_gpu_{device}_memory_MB"] = torch.cuda.max_memory_allocated(device) / (1024 * 1024)
    return metrics
