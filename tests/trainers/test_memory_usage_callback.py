"""AllenNLP 1.x's ``tensorboard-memory-usage`` batch callback, in a 1.x-style trainer block run by the CLI."""

from __future__ import annotations

import json

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from regimen.trainers.memory import peak_memory_mb
from tests.conftest import FIXTURES, run_cli

CONFIG = str(FIXTURES / "experiments" / "blobs.jsonnet")


def test_the_1x_batch_callback_writes_the_memory_scalars_after_every_optimizer_step(tmp_path):
    directory = tmp_path / "run"
    overrides = {"trainer.num_epochs": 1, "trainer.batch_callbacks": [{"type": "tensorboard-memory-usage"}]}
    result = run_cli("train", CONFIG, "-s", str(directory), "-o", json.dumps(overrides))
    assert result.returncode == 0, result.stderr
    events = EventAccumulator(str(directory / "log" / "memory"))
    events.Reload()
    # The tags of the `tensorboard_memory_usage` TrainerCallback: this worker's peak, and each GPU's.
    assert set(events.Tags()["scalars"]) == {f"memory_usage/{name}" for name in peak_memory_mb()}
    values = events.Scalars("memory_usage/peak_worker_0_memory_MB")
    assert [event.step for event in values] == list(range(1, 51))  # 400 instances in batches of 8
    assert all(event.value > 10 for event in values)  # megabytes: a Python process with torch loaded
    assert [event.value for event in values] == sorted(event.value for event in values)  # a peak never falls


def test_a_workers_peak_names_its_own_device_under_its_number_as_allennlp_does():
    """allennlp/common/util.py `peak_gpu_memory` reports each worker's current device under the worker's rank, so
    gathering the workers' entries keeps every one; a CPU worker reports no GPU."""
    import torch

    cpu = peak_memory_mb(3, torch.device("cpu"))
    assert set(cpu) == {"peak_worker_3_memory_MB"} and cpu["peak_worker_3_memory_MB"] > 0
    if torch.cuda.is_available():
        assert set(peak_memory_mb(1, torch.device("cuda", 0))) == {"peak_worker_1_memory_MB", "peak_gpu_1_memory_MB"}
