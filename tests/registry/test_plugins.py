"""Plugins: user modules that register components, loaded the three ways a user can ask for them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from regimen.registry import ConfigurationError, import_module_and_submodules
from regimen.registry.plugins import plugin_names
from tests.conftest import ROOT

PLUGIN = """
from regimen.registry import Registrable

class Thing(Registrable):
    pass
"""

SUBMODULE = """
from {package}.base import Thing

@Thing.register("custom")
class Custom(Thing):
    def __init__(self, size: int = 1) -> None:
        self.size = size
"""

USE = """
import sys
from regimen.registry import Params, import_plugins
{load}
from {package}.base import Thing
print(type(Thing.from_params(Params({{"type": "custom", "size": 3}}))).__name__, Thing.list_available())
"""


def make_package(root: Path, package: str) -> None:
    (root / package).mkdir(parents=True)
    (root / package / "__init__.py").write_text("")
    (root / package / "base.py").write_text(PLUGIN)
    (root / package / "models").mkdir()
    (root / package / "models" / "__init__.py").write_text("")
    (root / package / "models" / "custom.py").write_text(SUBMODULE.format(package=package))


def run_python(code: str, cwd: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    paths = [str(ROOT)] + ([str(extra_path)] if extra_path else [])
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": ":".join(paths), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )


def test_import_module_and_submodules_runs_every_register_decorator(tmp_path):
    make_package(tmp_path, "my_plugin_a")
    code = USE.format(
        package="my_plugin_a",
        load="from regimen.registry import import_module_and_submodules\nimport_module_and_submodules('my_plugin_a')",
    )
    result = run_python(code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Custom ['custom']"


def test_a_regimen_plugins_file_in_the_working_directory_is_read(tmp_path):
    make_package(tmp_path, "my_plugin_b")
    (tmp_path / ".regimen_plugins").write_text("# my plugins\nmy_plugin_b  # registers Custom\n\n")
    result = run_python(USE.format(package="my_plugin_b", load="print(import_plugins())"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["['my_plugin_b']", "Custom ['custom']"]


def test_an_installed_package_s_entry_point_is_loaded(tmp_path):
    site = tmp_path / "site"
    make_package(site, "my_plugin_c")
    dist_info = site / "my_plugin_c-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin-c\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[regimen.plugins]\nmy_plugin_c = my_plugin_c\n")
    work = tmp_path / "work"
    work.mkdir()
    result = run_python(USE.format(package="my_plugin_c", load="print(import_plugins())"), cwd=work, extra_path=site)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["['my_plugin_c']", "Custom ['custom']"]


def test_a_missing_plugin_module_is_a_configuration_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match='cannot import plugin "no_such_plugin_pkg"'):
        import_module_and_submodules("no_such_plugin_pkg")
    (tmp_path / ".regimen_plugins").write_text("no_such_plugin_pkg\n")
    assert plugin_names() == ["no_such_plugin_pkg"]
    from regimen.registry import import_plugins

    with pytest.raises(ConfigurationError, match=r"^\.regimen_plugins: cannot import plugin"):
        import_plugins()


def test_an_import_error_inside_a_plugin_is_not_hidden(tmp_path, monkeypatch):
    (tmp_path / "broken_plugin_pkg.py").write_text(textwrap.dedent("import missing_dependency_xyz\n"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="missing_dependency_xyz"):
        import_module_and_submodules("broken_plugin_pkg")
