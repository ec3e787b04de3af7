"""GPU check: run regimen's CUDA paths once each, on this machine's NVIDIA GPUs, and print a markdown table.

    python -m scripts.gpu_check                    # from the repository root
    python -m scripts.gpu_check --keep /tmp/gpu    # keep each check's runs and logs in /tmp/gpu/<check>
    python -m scripts.gpu_check --only fsdp nccl   # some checks only; --timeout S limits each command (600)

Each check runs the real ``regimen train`` on fixtures/experiments/blobs.jsonnet in a subprocess, changed with
``-o`` overrides, and reads back its exit status, ``metrics.json`` and stderr:

- ``cuda``: one epoch on GPU 0 from pinned memory; passes with a finite training loss.
- ``amp_fp16``, ``amp_bf16``: the same under ``use_amp`` in float16, in bfloat16 (where the GPU supports it).
- ``nccl``: two workers on GPUs 0 and 1 (NCCL). With one GPU, where NCCL cannot put two ranks on one device, a
  one-process NCCL group instead: an ``all_reduce`` of a CUDA tensor and regimen's own collectives.
- ``fsdp``: two FSDP workers with bfloat16 parameters (float16 where the GPU lacks bfloat16), each ``Linear`` a
  shard group; an archive and a sharded ``*.dcp`` checkpoint, then ``--recover`` with one more epoch (two GPUs).
- ``sync_free``: ``pytest tests/trainers/test_gpu_steps.py`` (training steps with no host synchronisation).
- ``fsdp_memory``: each worker's peak GPU memory for a large MLP under FSDP and under DDP (two GPUs); the
  ratio is reported, not judged.

The first line names torch's version, its CUDA version and the GPUs. Without a CUDA device every check is skipped
and nothing runs. Exit status 1 when a check failed (its last stderr lines follow the table), else 0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENT = "fixtures/experiments/blobs.jsonnet"  # relative to ROOT, where every command runs
GPU_STEPS_TEST = "tests/trainers/test_gpu_steps.py"
CHECKS = ("cuda", "amp_fp16", "amp_bf16", "nccl", "fsdp", "sync_free", "fsdp_memory")
DEFAULT_TIMEOUT_S = 600.0
TAIL_LINES = 25  # lines of a failed check's stderr printed under the table
NCCL_OK = "nccl sanity ok"  # the line the one-process NCCL check prints when it worked
# A model a good deal larger than the fixture's (about 50M parameters), so that sharding shows in the peak memory.
LARGE_MODEL = {"type": "mlp_classifier", "input_dim": 4, "num_classes": 2, "hidden_dims": [4096] * 4, "dropout": 0.1}
# FSDP for the memory comparison, in full precision as DDP: each Linear a shard group, so that a layer's whole
# parameters are gathered only while it computes.
MEMORY_FSDP = {"type": "fsdp", "shard_modules": ["Linear"]}


@dataclass
class Machine:
    """What the checks run on: the GPUs' names, whether they compute in bfloat16, and the device ids to use (the
    single-process checks' ``device`` and the two workers of the distributed ones)."""

    gpus: list[str]
    bf16: bool = False
    device: int = 0
    workers: tuple[int, int] = (0, 1)

    @classmethod
    def detect(cls) -> Machine:
        if not torch.cuda.is_available():
            return cls(gpus=[])
        names = [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
        return cls(gpus=names, bf16=torch.cuda.is_bf16_supported())


@dataclass
class Result:
    """One row of the table: ``status`` is "pass", "fail" or "skipped"; ``log`` is a failed check's stderr tail."""

    name: str
    status: str
    detail: str = ""
    seconds: float = 0.0
    log: str = ""


@dataclass
class Run:
    """A finished command: ``returncode`` None when it was killed for running past its timeout."""

    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    directory: Path | None = None  # the serialization directory of a training run
    metrics: dict[str, Any] | None = field(default=None)

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


def environment_line(machine: Machine) -> str:
    """torch's version, the CUDA version it was built with and the GPUs found, for the table's first line."""
    cuda = torch.version.cuda or "none (a CPU build of torch)"
    if not machine.gpus:
        gpus = "no GPUs found"
    else:
        listed = ", ".join(f"{index}: {name}" for index, name in enumerate(machine.gpus))
        gpus = f"{len(machine.gpus)} GPU{'s' if len(machine.gpus) > 1 else ''} ({listed})"
    return f"torch {torch.__version__}, CUDA {cuda}, {gpus}"


def cell(text: str) -> str:
    """``text`` fit for one cell of a markdown table: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def markdown_table(heading: str, results: list[Result]) -> str:
    """The report: ``heading``, then one row per result under ``check | result | seconds | detail``."""
    lines = [heading, "", "| check | result | seconds | detail |", "|---|---|---:|---|"]
    lines += [f"| {r.name} | {r.status} | {r.seconds:.1f} | {cell(r.detail)} |" for r in results]
    return "\n".join(lines)


def failure_logs(results: list[Result]) -> str:
    """The stderr tail of each failed check, as fenced blocks under a heading each (empty when none failed)."""
    blocks = [
        f"#### {result.name}: the last lines of its stderr\n\n```\n{result.log.rstrip()}\n```"
        for result in results
        if result.status == "fail" and result.log.strip()
    ]
    return "\n\n".join(blocks)


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def last_line(text: str, width: int = 160) -> str:
    """The last non-empty line of ``text``, cut to ``width`` characters."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= width else line[: width - 3] + "..."


def run_command(command: list[str], timeout: float, cwd: Path = ROOT) -> Run:
    """Run ``command`` in ``cwd`` with one torch thread, its output captured; past ``timeout`` seconds its whole
    process group (a distributed run's workers too) is killed and ``returncode`` is None."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    began = time.monotonic()
    process = subprocess.Popen(
        command, cwd=cwd, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=timeout)
        returncode: int | None = process.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:  # it ended meanwhile
            pass
        stdout, stderr = process.communicate()
        returncode = None
    return Run(returncode, stdout, stderr, time.monotonic() - began)


def read_metrics(directory: Path) -> dict[str, Any] | None:
    """``metrics.json`` of the run in ``directory``, or None where there is none (or it is not a JSON object)."""
    try:
        metrics = json.loads((directory / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) else None


def train(directory: Path, overrides: dict[str, Any], timeout: float, *arguments: str) -> Run:
    """``regimen train`` on the fixture experiment with ``overrides``, in ``directory``; ``metrics`` read back.
    Its stdout and stderr are kept beside it, in ``<directory>.stdout.log`` and ``<directory>.stderr.log``."""
    command = [sys.executable, "-m", "regimen", "train", EXPERIMENT, "-s", str(directory), "-o", json.dumps(overrides)]
    run = run_command([*command, *arguments], timeout)
    run.directory = directory
    run.metrics = read_metrics(directory)
    label = directory.name + ("_recover" if "--recover" in arguments else "")
    for stream in ("stdout", "stderr"):
        (directory.parent / f"{label}.{stream}.log").write_text(getattr(run, stream))
    return run


def exit_problem(run: Run) -> str | None:
    """Why the command failed (it timed out, or its exit status and last stderr line), or None after exit 0."""
    if run.timed_out:
        return f"timed out after {run.seconds:.0f} s"
    if run.returncode != 0:
        return f"exit {run.returncode}: {last_line(run.stderr) or 'no stderr'}"
    return None


def judge_training(run: Run) -> tuple[bool, str]:
    """Whether a training run passed (exit 0 and a finite ``training_loss`` in its metrics), and what to report:
    the loss, or why it failed."""
    problem = exit_problem(run)
    if problem is not None:
        return False, problem
    if run.metrics is None:
        return False, "exit 0 but no metrics.json"
    loss = run.metrics.get("training_loss")
    if not isinstance(loss, (int, float)) or isinstance(loss, bool) or not math.isfinite(loss):
        return False, f"training_loss is {loss!r}"
    return True, f"training_loss {loss:.4f}"


def judge_pytest(run: Run) -> tuple[str, str]:
    """The status of a pytest run ("pass" on exit 0 with tests passed, "skipped" on exit 0 with all of them
    skipped, else "fail") and its summary line."""
    summary = last_line(run.stdout) or last_line(run.stderr)
    if run.timed_out:
        return "fail", f"timed out after {run.seconds:.0f} s"
    if run.returncode == 0 and " passed" in f" {summary}":
        return "pass", summary
    if run.returncode == 0 and "skipped" in summary:
        return "skipped", summary
    return "fail", f"exit {run.returncode}: {summary}"


def peak_gpu_mib(metrics: dict[str, Any] | None, workers: int) -> list[float | None]:
    """``peak_gpu_<rank>_memory_MB`` (MiB: regimen divides bytes by 1024²) of each worker, None where absent:
    regimen reports each worker's own device under the worker's rank, as AllenNLP does."""
    values = [(metrics or {}).get(f"peak_gpu_{rank}_memory_MB") for rank in range(workers)]
    return [float(value) if isinstance(value, (int, float)) else None for value in values]


def memory_verdict(fsdp: list[float | None], ddp: list[float | None]) -> tuple[bool, str]:
    """Compare the workers' peak GPU memory under FSDP and DDP (the largest worker's, the workers being alike).
    Passes whenever both runs reported every worker's peak."""
    missing = [
        f"{name} has no peak_gpu_{rank}_memory_MB"
        for name, values in (("fsdp", fsdp), ("ddp", ddp))
        for rank, value in enumerate(values)
        if value is None
    ]
    if missing:
        return False, "; ".join(missing)
    fsdp_peak, ddp_peak = max(v for v in fsdp if v is not None), max(v for v in ddp if v is not None)
    ratio = f"{fsdp_peak / ddp_peak:.2f}" if ddp_peak > 0 else "n/a"
    return True, f"fsdp {fsdp_peak:.0f} MiB vs ddp {ddp_peak:.0f} MiB per worker (ratio {ratio})"


def single_overrides(device: int, amp_dtype: str | None = None) -> dict[str, Any]:
    """One epoch in one process on ``device``, from pinned memory; under AMP in ``amp_dtype`` if given."""
    overrides: dict[str, Any] = {"trainer.num_epochs": 1, "trainer.cuda_device": device, "data_loader.pin_memory": True}
    if amp_dtype is not None:
        overrides.update({"trainer.use_amp": True, "trainer.amp_dtype": amp_dtype})
    return overrides


def distributed_overrides(
    workers: tuple[int, ...], accelerator: dict[str, Any] | None = None, model: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One epoch on two workers, with DDP or ``accelerator`` (a ``ddp_accelerator``), on the fixture's model or
    ``model``."""
    distributed: dict[str, Any] = {"cuda_devices": list(workers)}
    if accelerator is not None:
        distributed["ddp_accelerator"] = accelerator
    overrides: dict[str, Any] = {"trainer.num_epochs": 1, "distributed": distributed}
    if model is not None:
        overrides["model"] = model
    return overrides


def fsdp_accelerator(param_dtype: str) -> dict[str, Any]:
    """FSDP2 with ``param_dtype`` parameters and float32 gradient reductions, each ``Linear`` a shard group.

    The groups matter: FSDP casts the inputs of each group's forward to ``param_dtype``, and ``mlp_classifier``
    casts its features back with ``.float()`` before its layers, so with the whole model as one group (no
    ``shard_modules``) its first layer meets float32 features and low-precision weights and the run fails."""
    mixed_precision = {"param_dtype": param_dtype, "reduce_dtype": "float32"}
    return {"type": "fsdp", "shard_modules": ["Linear"], "mixed_precision": mixed_precision}


def one_more_epoch(overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` with ``trainer.num_epochs`` raised by one: what ``--recover`` accepts as a change."""
    return {**overrides, "trainer.num_epochs": overrides["trainer.num_epochs"] + 1}


def check_single(name: str, amp_dtype: str | None) -> Callable[[Path, Machine, float], Result]:
    """The check of one training process on the machine's device, in full precision or under AMP."""

    def check(directory: Path, machine: Machine, timeout: float) -> Result:
        if amp_dtype == "bfloat16" and not machine.bf16:
            return Result(name, "skipped", "the GPU does not support bfloat16 (torch.cuda.is_bf16_supported())")
        run = train(directory / "run", single_overrides(machine.device, amp_dtype), timeout)
        passed, detail = judge_training(run)
        if amp_dtype is None:
            detail = f"{machine.gpus[0]}; {detail}"
        else:
            detail = f"{amp_dtype} autocast; {detail}"
        return Result(name, "pass" if passed else "fail", detail, log="" if passed else tail(run.stderr))

    return check


def check_nccl(directory: Path, machine: Machine, timeout: float) -> Result:
    if len(machine.gpus) >= 2:
        run = train(directory / "run", distributed_overrides(machine.workers), timeout)
        passed, detail = judge_training(run)
        detail = f"2 workers on devices {machine.workers[0]}, {machine.workers[1]}; {detail}"
        return Result("nccl", "pass" if passed else "fail", detail, log="" if passed else tail(run.stderr))
    run = run_command([sys.executable, "-m", "scripts.gpu_check", "--nccl-sanity"], timeout)
    (directory / "nccl_sanity.stderr.log").write_text(run.stderr)
    passed, detail = judge_nccl_sanity(run)
    return Result("nccl", "pass" if passed else "fail", detail, log="" if passed else tail(run.stderr))


def judge_nccl_sanity(run: Run) -> tuple[bool, str]:
    """Whether the one-process NCCL check worked, and what to say (always that two workers need two GPUs)."""
    problem = exit_problem(run)
    if problem is None and NCCL_OK not in run.stdout:
        problem = f"exit 0 but no {NCCL_OK!r} line"
    if problem is not None:
        return False, f"one-process NCCL check: {problem}; the 2-worker run needs 2 GPUs"
    found = [line for line in run.stdout.splitlines() if line.startswith(NCCL_OK)]
    return True, f"{found[-1]} (one process, world size 1); the 2-worker run needs 2 GPUs"


def nccl_sanity() -> str:
    """In one process: an NCCL group of world size 1 on GPU 0, an ``all_reduce`` of a CUDA tensor, then regimen's
    own collectives on it (those a run uses: summed tensors and floats, agreement, object broadcast and gather, a
    barrier on the worker's device). Returns the line to print; raises when something is wrong."""
    import torch.distributed as dist

    from regimen.trainers.distributed import ProcessGroupDistributed, find_free_port

    device = torch.device("cuda", 0)
    torch.cuda.set_device(device)
    address = f"tcp://127.0.0.1:{find_free_port()}"
    dist.init_process_group("nccl", init_method=address, rank=0, world_size=1, device_id=device)
    try:
        tensor = torch.arange(4, dtype=torch.float32, device=device)
        dist.all_reduce(tensor)
        if tensor.tolist() != [0.0, 1.0, 2.0, 3.0]:
            raise RuntimeError(f"all_reduce over one rank changed the tensor: {tensor.tolist()}")
        with ProcessGroupDistributed(0, device) as runtime:
            counts = torch.tensor([1, 2], device=device)
            runtime.all_reduce_sum_([counts])
            same = (
                counts.tolist() == [1, 2]
                and runtime.sum_floats({"loss": 1.5}) == {"loss": 1.5}
                and runtime.agree([3], True) == ([3], True)
                and runtime.broadcast_object({"epoch": 1}) == {"epoch": 1}
                and runtime.gather_objects("state") == ["state"]
            )
            runtime.barrier()
            if not same:
                raise RuntimeError("a regimen collective over one NCCL rank did not return its input")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    parts = torch.cuda.nccl.version()  # a tuple (2, 21, 5); an int (2708) before torch 1.13
    version = ".".join(str(part) for part in parts) if isinstance(parts, tuple) else str(parts)
    return f"{NCCL_OK}: NCCL {version}, all_reduce and regimen's collectives"


def check_fsdp(directory: Path, machine: Machine, timeout: float) -> Result:
    if len(machine.gpus) < 2:
        return Result("fsdp", "skipped", "needs 2 GPUs")
    dtype = "bfloat16" if machine.bf16 else "float16"
    overrides = distributed_overrides(machine.workers, fsdp_accelerator(dtype))
    run = train(directory / "run", overrides, timeout)
    passed, detail = judge_training(run)
    if not passed:
        return Result("fsdp", "fail", f"first run: {detail}", log=tail(run.stderr))
    missing = sharded_run_missing(directory / "run")
    if missing:
        return Result("fsdp", "fail", f"first run: {missing}", log=tail(run.stderr))
    recovered = train(directory / "run", one_more_epoch(overrides), timeout, "--recover")
    passed, recovered_detail = judge_training(recovered)
    start = (recovered.metrics or {}).get("training_start_epoch")
    if passed and start != 1:
        passed, recovered_detail = False, f"resumed at epoch {start!r}, expected 1"
    detail = f"{dtype} params; archive and sharded checkpoint; --recover for epoch 2: {recovered_detail}"
    return Result("fsdp", "pass" if passed else "fail", detail, log="" if passed else tail(recovered.stderr))


def sharded_run_missing(directory: Path) -> str | None:
    """What a finished FSDP run's directory lacks (``model.tar.gz``, a ``*.dcp`` checkpoint directory), or None."""
    missing = []
    if not (directory / "model.tar.gz").is_file():
        missing.append("no model.tar.gz")
    if not any(path.is_dir() for path in directory.glob("*.dcp")):
        missing.append("no *.dcp checkpoint directory")
    return "; ".join(missing) or None


def check_sync_free(directory: Path, machine: Machine, timeout: float) -> Result:
    if not (ROOT / GPU_STEPS_TEST).is_file():
        return Result("sync_free", "skipped", f"{GPU_STEPS_TEST} does not exist yet")
    run = run_command([sys.executable, "-m", "pytest", "-q", GPU_STEPS_TEST], timeout)
    (directory / "pytest.log").write_text(run.stdout + run.stderr)
    status, detail = judge_pytest(run)
    return Result("sync_free", status, detail, log=tail(run.stdout + run.stderr) if status == "fail" else "")


def check_fsdp_memory(directory: Path, machine: Machine, timeout: float) -> Result:
    if len(machine.gpus) < 2:
        return Result("fsdp_memory", "skipped", "needs 2 GPUs")
    runs = {
        "fsdp": train(directory / "fsdp", distributed_overrides(machine.workers, MEMORY_FSDP, LARGE_MODEL), timeout),
        "ddp": train(directory / "ddp", distributed_overrides(machine.workers, None, LARGE_MODEL), timeout),
    }
    for name, run in runs.items():
        problem = exit_problem(run)
        if problem is not None:
            return Result("fsdp_memory", "fail", f"{name} run: {problem}", log=tail(run.stderr))
    peaks = {name: peak_gpu_mib(run.metrics, len(machine.workers)) for name, run in runs.items()}
    passed, detail = memory_verdict(peaks["fsdp"], peaks["ddp"])
    return Result("fsdp_memory", "pass" if passed else "fail", detail)


CHECK_FUNCTIONS: dict[str, Callable[[Path, Machine, float], Result]] = {
    "cuda": check_single("cuda", None),
    "amp_fp16": check_single("amp_fp16", "float16"),
    "amp_bf16": check_single("amp_bf16", "bfloat16"),
    "nccl": check_nccl,
    "fsdp": check_fsdp,
    "sync_free": check_sync_free,
    "fsdp_memory": check_fsdp_memory,
}


def run_checks(machine: Machine, base: Path, names: list[str], timeout: float) -> list[Result]:
    """Run the checks ``names`` in order, each in ``base/<name>``; without GPUs every one is skipped unrun."""
    if not machine.gpus:
        return [Result(name, "skipped", "no CUDA device") for name in names]
    results = []
    for name in names:
        directory = base / name
        directory.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        try:
            result = CHECK_FUNCTIONS[name](directory, machine, timeout)
        except Exception as error:  # a broken check is a failed one: the others still run
            detail = f"the check raised {type(error).__name__}: {error}"
            result = Result(name, "fail", detail, log=traceback.format_exc())
        result.seconds = time.monotonic() - began
        print(f"gpu_check: {name} {result.status} in {result.seconds:.1f} s", file=sys.stderr, flush=True)
        results.append(result)
    return results


def report(heading: str, results: list[Result]) -> str:
    """The table, then the stderr tail of each failed check."""
    logs = failure_logs(results)
    return markdown_table(heading, results) + (f"\n\n{logs}" if logs else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", metavar="DIR", help="keep each check's runs and logs in DIR/<check>")
    parser.add_argument("--only", nargs="+", choices=CHECKS, metavar="CHECK", help=f"run these of {', '.join(CHECKS)}")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds each command may take (default %(default)s)"
    )
    parser.add_argument("--nccl-sanity", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.nccl_sanity:
        print(nccl_sanity(), flush=True)
        return 0
    names = [name for name in CHECKS if args.only is None or name in args.only]
    machine = Machine.detect()
    if not machine.gpus:
        results = run_checks(machine, ROOT, names, args.timeout)  # every check skipped: nothing runs or is written
    elif args.keep:
        base = Path(args.keep).resolve()
        used = [str(base / name) for name in names if (base / name).exists()]
        if used:
            parser.error(f"--keep: {', '.join(used)} already exist; choose another directory or remove them")
        results = run_checks(machine, base, names, args.timeout)
    else:
        with tempfile.TemporaryDirectory(prefix="regimen_gpu_check_") as scratch:
            results = run_checks(machine, Path(scratch), names, args.timeout)
    print(report(environment_line(machine), results))
    return 1 if any(result.status == "fail" for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
