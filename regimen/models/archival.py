"""Model archives: ``model.tar.gz`` holds a trained model's config, weights and metadata, and loads it back."""

from __future__ import annotations

import glob
import io
import json
import logging
import os
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from regimen.models.model import Model
from regimen.registry import ConfigurationError, Params
from regimen.registry.files import create_temporary

logger = logging.getLogger(__name__)

ARCHIVE_NAME = "model.tar.gz"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "weights.th"
META_NAME = "meta.json"
BEST_WEIGHTS_NAME = "best.th"
RESERVED_NAMES = (CONFIG_NAME, WEIGHTS_NAME, META_NAME)


@dataclass
class Archive:
    """A loaded archive: the model (in eval mode, on the requested device), its config and its metadata."""

    model: Model
    config: Params
    meta: dict[str, Any] = field(default_factory=dict)


def archive_model(
    serialization_dir: str | os.PathLike,
    weights: str | os.PathLike | dict[str, torch.Tensor] = BEST_WEIGHTS_NAME,
    include_in_archive: list[str] | None = None,
) -> Path:
    """Write ``serialization_dir/model.tar.gz`` atomically and return its path.

    It holds ``config.json`` and ``meta.json`` from the directory, ``weights.th`` (the file ``weights``, relative
    to the directory, or a state dict given directly) and every file matching an ``include_in_archive`` glob
    (relative to the directory, kept at its relative path).
    """
    directory = Path(serialization_dir)
    members: list[tuple[str, Path]] = [(CONFIG_NAME, directory / CONFIG_NAME)]
    if (directory / META_NAME).is_file():
        members.append((META_NAME, directory / META_NAME))
    for pattern in include_in_archive or []:
        matches = sorted(glob.glob(pattern, root_dir=directory, recursive=True))
        if not matches:
            logger.warning("include_in_archive: %r matches no file in %s", pattern, directory)
        members += [(match, directory / match) for match in matches if (directory / match).is_file()]
    target = directory / ARCHIVE_NAME
    descriptor, temporary = create_temporary(directory, prefix=".model.tar.gz.")
    try:
        with os.fdopen(descriptor, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as archive:
            for name, path in members:
                archive.add(path, arcname=name)
            _add_weights(archive, weights if isinstance(weights, dict) else directory / weights)
            archive.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def _add_weights(archive: tarfile.TarFile, weights: Path | dict[str, torch.Tensor]) -> None:
    if isinstance(weights, Path):
        archive.add(weights, arcname=WEIGHTS_NAME)
        return
    buffer = io.BytesIO()
    torch.save(weights, buffer)
    info = tarfile.TarInfo(WEIGHTS_NAME)
    info.size = buffer.tell()
    buffer.seek(0)
    archive.addfile(info, buffer)


def load_archive(
    path: str | os.PathLike,
    cuda_device: int = -1,
    overrides: str | dict[str, Any] = "",
) -> Archive:
    """Load a model from ``model.tar.gz``, or from a run directory (its archive, else its config and best.th).

    ``overrides`` change the stored config before the model is built (as ``-o`` does on the command line);
    ``cuda_device`` -1 keeps the model on the CPU.
    """
    path = Path(path)
    if path.is_dir() and (path / ARCHIVE_NAME).is_file():
        path = path / ARCHIVE_NAME
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file() or not (path / BEST_WEIGHTS_NAME).is_file():
            raise ConfigurationError(
                f"{path}: not a model archive nor a run directory with {CONFIG_NAME} and {BEST_WEIGHTS_NAME}"
            )
        return _load(path / CONFIG_NAME, path / BEST_WEIGHTS_NAME, path / META_NAME, cuda_device, overrides)
    if not path.is_file():
        raise ConfigurationError(f"{path}: no such archive or run directory")
    if not tarfile.is_tarfile(path):
        raise ConfigurationError(f"{path}: not a model archive (expected a .tar.gz written by regimen train)")
    with tempfile.TemporaryDirectory() as extracted, tarfile.open(path) as archive:
        archive.extractall(extracted, filter="data")
        root = Path(extracted)
        if not (root / CONFIG_NAME).is_file() or not (root / WEIGHTS_NAME).is_file():
            raise ConfigurationError(f"{path}: the archive lacks {CONFIG_NAME} or {WEIGHTS_NAME}")
        return _load(root / CONFIG_NAME, root / WEIGHTS_NAME, root / META_NAME, cuda_device, overrides)


def _load(config_file: Path, weights_file: Path, meta_file: Path, cuda_device: int, overrides: Any) -> Archive:
    config = Params.from_file(config_file, overrides)
    device = torch.device("cpu") if cuda_device < 0 else torch.device("cuda", cuda_device)
    model = Model.from_params(config.duplicate().pop("model"))
    state = torch.load(weights_file, map_location=device, weights_only=True)
    model.load_state_dict(state)
    model.to(device).eval()
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    return Archive(model=model, config=config, meta=meta)
