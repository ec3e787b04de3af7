"""Every file a run writes honours the umask, atomic writes included, so colleagues on a shared filesystem can
read a run (issue 15: config.json, meta.json, metrics.json and model.tar.gz used to be -rw------- always)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from tests.conftest import FIXTURES, ROOT


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_run_files_get_the_mode_open_would_give(tmp_path, umask, mode):
    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "regimen",
        "train",
        str(FIXTURES / "experiments" / "blobs.jsonnet"),
        "-s",
        str(run),
    ]
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300,
        preexec_fn=lambda: os.umask(umask),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    files = [path for path in run.rglob("*") if path.is_file()]
    names = {path.name for path in files}
    assert {"config.json", "meta.json", "metrics.json", "model.tar.gz", "best.th", "out.log"} <= names
    assert any(name.startswith("model_state_") for name in names)
    wrong = {str(path.relative_to(run)): oct(stat.S_IMODE(path.stat().st_mode)) for path in files}
    wrong = {name: got for name, got in wrong.items() if got != oct(mode)}
    assert wrong == {}
