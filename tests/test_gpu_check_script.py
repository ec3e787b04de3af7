"""scripts/gpu_check.py: without CUDA every check is skipped and nothing runs; its helpers, on real values."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from regimen.experiment import check_experiment
from regimen.registry import Params
from regimen.run_directory import config_differences
from scripts import gpu_check
from scripts.gpu_check import Machine, Result, Run
from tests.conftest import ROOT

# Two CPU workers and the CPU in place of GPUs: the overrides the checks build, made checkable on this machine.
CPU = Machine(gpus=["cpu", "cpu"], bf16=True, device=-1, workers=(-1, -1))


def test_without_cuda_every_check_is_skipped_and_nothing_runs(tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    # No visible device: torch.cuda.is_available() is false here even on a machine with GPUs.
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    completed = subprocess.run(
        [sys.executable, "-m", "scripts.gpu_check", "--keep", str(kept)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert lines[0].startswith(f"torch {torch.__version__}, CUDA ") and lines[0].endswith("no GPUs found")
    assert lines[2:4] == ["| check | result | seconds | detail |", "|---|---|---:|---|"]
    assert lines[4:] == [f"| {name} | skipped | 0.0 | no CUDA device |" for name in gpu_check.CHECKS]
    assert len(gpu_check.CHECKS) == 7
    assert not kept.exists()  # no check ran, so none kept a directory


def test_the_table_is_markdown_with_one_line_cells() -> None:
    results = [
        Result("cuda", "pass", "NVIDIA H200; training_loss 0.2261", seconds=12.34),
        Result("nccl", "fail", "exit 1: a | b\nlast line", seconds=3.0, log="Traceback\nRuntimeError: boom"),
    ]
    assert gpu_check.markdown_table("torch 2.5.1, CUDA 12.4, 1 GPU (0: NVIDIA H200)", results) == "\n".join(
        [
            "torch 2.5.1, CUDA 12.4, 1 GPU (0: NVIDIA H200)",
            "",
            "| check | result | seconds | detail |",
            "|---|---|---:|---|",
            "| cuda | pass | 12.3 | NVIDIA H200; training_loss 0.2261 |",
            "| nccl | fail | 3.0 | exit 1: a \\| b last line |",
        ]
    )


def test_the_report_ends_with_the_stderr_tail_of_failed_checks_only() -> None:
    results = [
        Result("cuda", "pass", "ok", log="not shown"),
        Result("fsdp", "fail", "first run: exit 1", log="line 1\nRuntimeError: boom\n"),
        Result("nccl", "skipped", "needs 2 GPUs", log="not shown either"),
    ]
    report = gpu_check.report("heading", results)
    assert report.endswith("#### fsdp: the last lines of its stderr\n\n```\nline 1\nRuntimeError: boom\n```")
    assert "not shown" not in report
    assert gpu_check.failure_logs(results[:1]) == ""
    assert gpu_check.report("heading", results[:1]) == gpu_check.markdown_table("heading", results[:1])


def test_the_environment_line_names_torch_cuda_and_the_gpus() -> None:
    line = gpu_check.environment_line(Machine(gpus=["NVIDIA H200", "NVIDIA H200"]))
    assert line.startswith(f"torch {torch.__version__}, CUDA ")
    assert line.endswith("2 GPUs (0: NVIDIA H200, 1: NVIDIA H200)")
    assert gpu_check.environment_line(Machine(gpus=["NVIDIA A10G"])).endswith("1 GPU (0: NVIDIA A10G)")


@pytest.mark.parametrize(
    ("run", "verdict"),
    [
        (Run(0, "", "", 9.0, metrics={"training_loss": 0.25}), (True, "training_loss 0.2500")),
        (Run(0, "", "", 9.0, metrics={"training_loss": math.nan}), (False, "training_loss is nan")),
        (Run(0, "", "", 9.0, metrics={"training_loss": math.inf}), (False, "training_loss is inf")),
        (Run(0, "", "", 9.0, metrics={"validation_loss": 0.1}), (False, "training_loss is None")),
        (Run(0, "", "", 9.0, metrics=None), (False, "exit 0 but no metrics.json")),
        (Run(1, "", "log line\nRuntimeError: CUDA error\n\n", 9.0), (False, "exit 1: RuntimeError: CUDA error")),
        (Run(2, "", "", 9.0), (False, "exit 2: no stderr")),
        (Run(None, "", "", 600.4), (False, "timed out after 600 s")),
    ],
)
def test_a_training_run_passes_with_exit_0_and_a_finite_loss(run: Run, verdict: tuple[bool, str]) -> None:
    assert gpu_check.judge_training(run) == verdict


@pytest.mark.parametrize(
    ("returncode", "stdout", "status"),
    [
        (0, "....\n4 passed in 3.21s\n", "pass"),
        (0, "..ss\nSKIPPED [2] tests/x.py:9: no CUDA\n2 passed, 2 skipped in 1.10s\n", "pass"),
        (0, "ssss\nSKIPPED [4] tests/x.py:9: no CUDA\n4 skipped in 1.12s\n", "skipped"),
        (1, ".F\n1 failed, 1 passed in 2.00s\n", "fail"),
        (1, "F s\n1 failed, 1 skipped in 2.00s\n", "fail"),
        (5, "\nno tests ran in 0.01s\n", "fail"),
        (None, ".", "fail"),
    ],
)
def test_pytest_passes_skips_or_fails(returncode: int | None, stdout: str, status: str) -> None:
    assert gpu_check.judge_pytest(Run(returncode, stdout, "", 1.0))[0] == status


def test_the_pytest_detail_is_its_summary_line() -> None:
    assert gpu_check.judge_pytest(Run(0, "ss\n2 skipped in 0.5s\n", "", 1.0)) == ("skipped", "2 skipped in 0.5s")
    assert gpu_check.judge_pytest(Run(1, "F\n1 failed in 0.5s\n", "", 1.0)) == ("fail", "exit 1: 1 failed in 0.5s")


def test_the_one_process_nccl_check_says_two_workers_need_two_gpus() -> None:
    passed, detail = gpu_check.judge_nccl_sanity(Run(0, f"{gpu_check.NCCL_OK}: NCCL 2.21.5\n", "", 5.0))
    assert passed and detail.startswith(f"{gpu_check.NCCL_OK}: NCCL 2.21.5") and "needs 2 GPUs" in detail
    passed, detail = gpu_check.judge_nccl_sanity(Run(1, "", "RuntimeError: NCCL error", 5.0))
    assert not passed and "exit 1: RuntimeError: NCCL error" in detail and "needs 2 GPUs" in detail
    assert not gpu_check.judge_nccl_sanity(Run(0, "", "", 5.0))[0]


def test_commands_run_in_the_repository_root_and_are_killed_at_their_timeout() -> None:
    script = "import os, sys; print(os.getcwd()); print(os.environ['OMP_NUM_THREADS'], file=sys.stderr); sys.exit(3)"
    run = gpu_check.run_command([sys.executable, "-c", script], timeout=60)
    assert (run.returncode, run.stdout.strip(), run.stderr.strip()) == (3, str(ROOT), "1")
    slow = gpu_check.run_command([sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"], 1)
    assert slow.timed_out and slow.seconds < 30
    assert gpu_check.exit_problem(slow) == f"timed out after {slow.seconds:.0f} s"


def test_metrics_are_read_back_from_the_run_directory(tmp_path: Path) -> None:
    assert gpu_check.read_metrics(tmp_path) is None
    (tmp_path / "metrics.json").write_text('{"training_loss": 0.5, "peak_gpu_1_memory_MB": 812.5}')
    assert gpu_check.read_metrics(tmp_path) == {"training_loss": 0.5, "peak_gpu_1_memory_MB": 812.5}
    (tmp_path / "metrics.json").write_text("{truncated")
    assert gpu_check.read_metrics(tmp_path) is None


def test_peak_memory_compares_the_workers_largest_readings() -> None:
    # As a two-GPU run's metrics.json has them: each worker's own device under its rank.
    fsdp = gpu_check.peak_gpu_mib({"peak_gpu_0_memory_MB": 398.0, "peak_gpu_1_memory_MB": 402.4}, 2)
    ddp = gpu_check.peak_gpu_mib({"peak_gpu_0_memory_MB": 812, "peak_gpu_1_memory_MB": 812.5}, 2)
    assert (fsdp, ddp) == ([398.0, 402.4], [812.0, 812.5])
    assert gpu_check.memory_verdict(fsdp, ddp) == (True, "fsdp 402 MiB vs ddp 812 MiB per worker (ratio 0.50)")
    assert gpu_check.memory_verdict([None, None], [800.0, 805.0]) == (
        False,
        "fsdp has no peak_gpu_0_memory_MB; fsdp has no peak_gpu_1_memory_MB",
    )
    assert gpu_check.peak_gpu_mib(None, 2) == [None, None]


def test_a_sharded_run_needs_an_archive_and_a_dcp_directory(tmp_path: Path) -> None:
    assert gpu_check.sharded_run_missing(tmp_path) == "no model.tar.gz; no *.dcp checkpoint directory"
    (tmp_path / "model.tar.gz").write_bytes(b"")
    (tmp_path / "model_state_e1_b0.dcp").write_text("a file is no sharded checkpoint")
    assert gpu_check.sharded_run_missing(tmp_path) == "no *.dcp checkpoint directory"
    (tmp_path / "model_state_e1_b0.dcp").unlink()
    (tmp_path / "model_state_e1_b0.dcp").mkdir()
    assert gpu_check.sharded_run_missing(tmp_path) is None


@pytest.mark.parametrize(
    "overrides",
    [
        gpu_check.single_overrides(CPU.device),
        gpu_check.single_overrides(CPU.device, "float16"),
        gpu_check.single_overrides(CPU.device, "bfloat16"),
        gpu_check.distributed_overrides(CPU.workers),
        gpu_check.distributed_overrides(CPU.workers, gpu_check.fsdp_accelerator("bfloat16")),
        gpu_check.distributed_overrides(CPU.workers, gpu_check.MEMORY_FSDP, gpu_check.LARGE_MODEL),
        gpu_check.distributed_overrides(CPU.workers, None, gpu_check.LARGE_MODEL),
    ],
)
def test_each_checks_overrides_make_a_valid_experiment(overrides: dict, tmp_path: Path) -> None:
    """regimen's own config check, which builds nothing, accepts each check's config (on CPU device ids)."""
    params = Params.from_file(ROOT / gpu_check.EXPERIMENT, overrides)
    check_experiment(params, tmp_path / "run")
    assert params.as_dict()["trainer"]["num_epochs"] == 1


def test_the_recovery_only_raises_the_epochs() -> None:
    first = gpu_check.distributed_overrides(CPU.workers, gpu_check.fsdp_accelerator("bfloat16"))
    again = gpu_check.one_more_epoch(first)
    assert again["trainer.num_epochs"] == 2 and first["trainer.num_epochs"] == 1
    before = Params.from_file(ROOT / gpu_check.EXPERIMENT, first).as_dict()
    after = Params.from_file(ROOT / gpu_check.EXPERIMENT, again).as_dict()
    assert config_differences(before, after) == []  # what --recover accepts
    assert before["distributed"]["ddp_accelerator"]["mixed_precision"] == {
        "param_dtype": "bfloat16",
        "reduce_dtype": "float32",
    }


def test_checks_that_cannot_run_here_are_skipped_without_running(tmp_path: Path) -> None:
    one_gpu = Machine(gpus=["NVIDIA T4"], bf16=False)
    assert gpu_check.CHECK_FUNCTIONS["amp_bf16"](tmp_path, one_gpu, 1).status == "skipped"
    assert gpu_check.check_fsdp(tmp_path, one_gpu, 1) == Result("fsdp", "skipped", "needs 2 GPUs")
    assert gpu_check.check_fsdp_memory(tmp_path, one_gpu, 1) == Result("fsdp_memory", "skipped", "needs 2 GPUs")
    assert list(tmp_path.iterdir()) == []
    results = gpu_check.run_checks(Machine(gpus=[]), tmp_path / "unused", list(gpu_check.CHECKS), 1)
    assert [(r.name, r.status, r.detail) for r in results] == [
        (name, "skipped", "no CUDA device") for name in gpu_check.CHECKS
    ]
    assert not (tmp_path / "unused").exists()
