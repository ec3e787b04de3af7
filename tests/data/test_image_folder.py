"""ImageFolder and image_to_tensor: image files in one folder per class as (tensor, class index) pairs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from regimen.data import ImageFolder, TorchDatasetReader, image_to_tensor
from regimen.registry import ConfigurationError
from tests.conftest import ROOT

SHAPES = ROOT / "data" / "shapes"


def make_folder(root: Path, layout: dict[str, list[str]]) -> Path:
    """``root/<class>/<file>`` for each class and file name; image files are 2x3 RGB images of one colour."""
    for name, files in layout.items():
        (root / name).mkdir(parents=True)
        for index, file in enumerate(files):
            if file.endswith(".txt"):
                (root / name / file).write_text("not an image")
            else:
                Image.new("RGB", (3, 2), (index * 50, 100, 255)).save(root / name / file)
    return root


def test_the_shapes_data_is_four_sorted_classes_of_16x16_grayscale_images():
    train = ImageFolder(str(SHAPES / "train"))
    assert train.classes == ["circle", "cross", "square", "triangle"] and len(train) == 240
    image, label = train[0]
    assert image.shape == (1, 16, 16) and image.dtype == torch.float32 and label == 0
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0 and float(image.max()) > 0.5
    assert [train[index][1] for index in (59, 60, 239)] == [0, 1, 3]
    assert len(ImageFolder(str(SHAPES / "validation"))) == len(ImageFolder(str(SHAPES / "test"))) == 80


def test_files_are_read_in_sorted_order_other_files_skipped_and_mode_converts(tmp_path):
    root = make_folder(tmp_path / "images", {"b": ["2.png", "1.png", "notes.txt"], "a": ["x.jpg"]})
    folder = ImageFolder(str(root))
    assert folder.classes == ["a", "b"] and [path.name for path, _ in folder.samples] == ["x.jpg", "1.png", "2.png"]
    colour, label = folder[1]
    assert colour.shape == (3, 2, 3) and label == 1
    assert torch.allclose(colour[:, 0, 0], torch.tensor([50, 100, 255]) / 255)
    gray, _ = ImageFolder(str(root), mode="L")[1]
    assert gray.shape == (1, 2, 3)


def test_classes_fix_the_numbering_when_a_split_lacks_a_class(tmp_path):
    root = make_folder(tmp_path / "test", {"dog": ["1.png"]})
    folder = ImageFolder(str(root), classes=["cat", "dog"])
    assert folder.classes == ["cat", "dog"] and len(folder) == 1 and folder[0][1] == 1
    with pytest.raises(ValueError) as info:
        ImageFolder(str(root), classes=["cat", "bird"])
    assert str(info.value) == f"{root}: folder(s) dog are not among classes (cat, bird)"


def test_a_missing_or_empty_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"image folder not found: {tmp_path / 'nope'} \\(relative paths"):
        ImageFolder(str(tmp_path / "nope"))
    (tmp_path / "file.png").write_text("")
    with pytest.raises(FileNotFoundError, match="image folder is a file, not a folder: "):
        ImageFolder(str(tmp_path / "file.png"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError) as info:
        ImageFolder(str(tmp_path / "empty"))
    assert str(info.value) == (
        f"{tmp_path / 'empty'}: no class folders in it; expected {tmp_path / 'empty'}/<class name>/<image file>"
    )


def test_an_unreadable_image_read_by_the_torch_dataset_reader_is_named(tmp_path):
    root = make_folder(tmp_path / "images", {"a": ["1.png", "2.png"]})
    (root / "a" / "2.png").write_bytes(b"not a png")
    reader = TorchDatasetReader(dataset="regimen.data.image_folder.ImageFolder", data_path_argument="root")
    with pytest.raises(ValueError) as info:
        list(reader.read(str(root)))
    assert str(info.value).startswith(
        f'item 1 of regimen.data.image_folder.ImageFolder(root="{root}"): UnidentifiedImageError: cannot identify '
        "image file"
    )


def test_without_pillow_the_folder_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ConfigurationError) as info:
        ImageFolder(str(SHAPES / "train"))
    assert str(info.value) == (
        "reading images needs the Pillow package, which is not installed: pip install 'regimen[images]'"
    )


def test_image_to_tensor_handles_the_common_modes():
    gray = image_to_tensor(Image.new("L", (4, 2), 51))
    assert gray.shape == (1, 2, 4) and gray.dtype == torch.float32 and torch.all(gray == 51 / 255)
    assert image_to_tensor(Image.new("RGBA", (1, 1), (255, 0, 0, 0))).flatten().tolist() == [1.0, 0.0, 0.0, 0.0]
    assert image_to_tensor(Image.new("1", (2, 2), 1)).flatten().tolist() == [1.0] * 4
    palette = Image.new("P", (1, 1), 0)
    palette.putpalette([0, 255, 0] * 256)
    assert image_to_tensor(palette).flatten().tolist() == [0.0, 1.0, 0.0]
    assert image_to_tensor(Image.new("CMYK", (1, 1))).shape == (3, 1, 1)
    with pytest.raises(ValueError) as info:
        image_to_tensor(Image.new("I;16", (1, 1)))
    assert str(info.value) == (
        "image_to_tensor reads 8-bit images; this one has mode 'I;16' (16-bit or floating point): scale it to 8 "
        "bits, or convert it to a tensor in a transform of your own"
    )
