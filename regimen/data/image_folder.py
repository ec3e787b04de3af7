"""ImageFolder: a torch Dataset of image files kept in one folder per class, read with Pillow."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy
import torch
import torch.utils.data

from regimen.registry import ConfigurationError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
"""The file endings ``ImageFolder`` reads as images (compared without regard to case)."""

_EIGHT_BIT_MODES = {"L", "LA", "RGB", "RGBA"}  # Pillow modes of 8-bit channels, turned into tensors as they are


class ImageFolder(torch.utils.data.Dataset):
    """The images under ``root``, one sub-folder per class (``root/<class>/<file>.png``), as pairs
    ``(image, class index)``: the image a float32 tensor ``channels x height x width`` in ``[0, 1]`` (see
    ``image_to_tensor``), the index that of its folder's name among ``classes``.

    Without ``classes`` the classes are the sub-folders' names in sorted order, so class 0 is the first name
    alphabetically. Give ``classes`` when a split might lack a class's folder (a test set without one class
    would otherwise number the classes after it differently): a listed class without a folder then has no
    images, and a folder that is not listed is an error. Files are taken in sorted order within each class;
    files with other endings than ``IMAGE_EXTENSIONS`` (a README, say) are skipped. Images are read when an
    item is asked for, so the dataset is cheap to build.

    With the ``torch_dataset`` reader, the data path can be the folder:
    ``{"type": "torch_dataset", "dataset": "regimen.data.image_folder.ImageFolder", "data_path_argument": "root"}``
    and ``train_data_path: "data/shapes/train"``.

    Arguments:
        root: str
            The folder holding one sub-folder per class.
        mode: "L" | "RGB" | "RGBA" | null = null
            Convert every image to this Pillow mode (grayscale, colour, colour with alpha), so all have the same
            number of channels; null keeps each file's own (palette and 1-bit images become RGB and L).
        classes: list[str] | null = null
            The class names in index order; null takes the sub-folders' names, sorted.

    A missing ``root`` is a FileNotFoundError, a ``root`` without class folders a ValueError; reading needs
    Pillow (``pip install 'regimen[images]'``), whose absence is a ConfigurationError.
    """

    def __init__(
        self, root: str, mode: Literal["L", "RGB", "RGBA"] | None = None, classes: list[str] | None = None
    ) -> None:
        _pillow()  # fail now, naming the package, rather than on the first item
        folder = Path(root).expanduser()
        if not folder.is_dir():
            kind = "is a file, not a folder" if folder.exists() else "not found"
            raise FileNotFoundError(f"image folder {kind}: {root} (relative paths are read from {Path.cwd()})")
        found = sorted(path.name for path in folder.iterdir() if path.is_dir() and not path.name.startswith("."))
        if classes is None:
            if not found:
                raise ValueError(f"{root}: no class folders in it; expected {root}/<class name>/<image file>")
            classes = found
        else:
            unlisted = [name for name in found if name not in classes]
            if unlisted:
                listed = ", ".join(classes)
                raise ValueError(f"{root}: folder(s) {', '.join(unlisted)} are not among classes ({listed})")
        self.root = root
        self.mode = mode
        self.classes = list(classes)
        self.samples: list[tuple[Path, int]] = [
            (path, index)
            for index, name in enumerate(self.classes)
            if (folder / name).is_dir()
            for path in sorted((folder / name).iterdir())
            if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS
        ]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        with _pillow().open(path) as image:
            if self.mode is not None and image.mode != self.mode:
                image = image.convert(self.mode)
            return image_to_tensor(image), label


def image_to_tensor(image: Any) -> torch.Tensor:
    """A Pillow image as a float32 tensor ``channels x height x width`` with values in ``[0, 1]`` (pixel / 255):
    one channel for grayscale (``L``), three for ``RGB``, four for ``RGBA``. Palette images become RGB (RGBA when
    they have transparency) and 1-bit images grayscale; 16-bit and floating-point images are a ValueError, since
    there is no one right way to scale them: convert them first.

    What ``torchvision.transforms.functional.to_tensor`` does for 8-bit images, without needing torchvision; name
    it in a reader's ``transforms`` (``{"image": "regimen.data.image_folder.image_to_tensor"}``).
    """
    if image.mode == "1":
        image = image.convert("L")
    elif image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode not in _EIGHT_BIT_MODES:
        if image.mode.startswith(("I", "F")):
            raise ValueError(
                f"image_to_tensor reads 8-bit images; this one has mode {image.mode!r} (16-bit or floating point): "
                "scale it to 8 bits, or convert it to a tensor in a transform of your own"
            )
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV
    pixels = numpy.asarray(image, dtype=numpy.uint8)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous().float().div_(255)


def _pillow() -> Any:
    """Pillow's Image module, imported on first use: it is an optional dependency."""
    try:
        from PIL import Image
    except ImportError:
        raise ConfigurationError(
            "reading images needs the Pillow package, which is not installed: pip install 'regimen[images]'"
        ) from None
    return Image
