"""Plugins: importing user packages so that their ``@Base.register`` decorators run."""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
from importlib.metadata import entry_points
from pathlib import Path

from regimen.registry.errors import ConfigurationError

logger = logging.getLogger(__name__)

PLUGINS_FILE = ".regimen_plugins"
ENTRY_POINT_GROUP = "regimen.plugins"


def import_module_and_submodules(package_name: str) -> None:
    """Import a module and, if it is a package, every module below it.

    The current directory is put on ``sys.path`` first, so a package next to the experiment file is found as
    it is with ``python -m``. A module that cannot be found is a ConfigurationError naming it.
    """
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(package_name)
    except ModuleNotFoundError as error:
        if error.name is not None and package_name.startswith(error.name):
            raise ConfigurationError(f'cannot import plugin "{package_name}": no module named "{error.name}"') from None
        raise
    for info in pkgutil.walk_packages(getattr(module, "__path__", []), prefix=f"{package_name}."):
        importlib.import_module(info.name)


def plugin_names(directory: str | Path | None = None) -> list[str]:
    """The modules named in ``.regimen_plugins`` (one a line, ``#`` comments) in ``directory`` (default: cwd)."""
    path = Path(directory or Path.cwd()) / PLUGINS_FILE
    if not path.is_file():
        return []
    names = []
    for line in path.read_text().splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            names.append(name)
    return names


def import_plugins(directory: str | Path | None = None) -> list[str]:
    """Import the plugins of ``.regimen_plugins`` and of installed packages' ``regimen.plugins`` entry points.

    A module listed in ``.regimen_plugins`` that cannot be imported is a ConfigurationError (the user asked for
    it); a broken installed package only logs an error, so it cannot stop every run. Returns what was imported.
    """
    imported = []
    for name in plugin_names(directory):
        try:
            import_module_and_submodules(name)
        except ConfigurationError as error:
            raise ConfigurationError(f"{PLUGINS_FILE}: {error}") from None
        imported.append(name)
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            import_module_and_submodules(entry_point.value.split(":", 1)[0])
        except Exception as error:
            logger.error("could not load the regimen plugin %s (%s): %s", entry_point.name, entry_point.value, error)
            continue
        imported.append(entry_point.value)
    return imported
