"""Data paths through ``regimen train`` and ``regimen evaluate``, in a subprocess as a user runs them: a plugin
reader of dataset names, the early check of a missing local file, and URLs served, cached and read offline."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import FIXTURES, ROOT, run_cli
from tests.data.test_data_paths import serving

CONFIG = str(FIXTURES / "experiments" / "blobs.jsonnet")
BLOBS = FIXTURES / "data" / "blobs"

PLUGIN = '''
import torch

from regimen.data import DatasetReader

SIZES = {"train": 96, "validation": 32, "test": 32}


@DatasetReader.register("synthetic_blobs")
class SyntheticBlobs(DatasetReader):
    """Two blobs in 4 dimensions, generated from a dataset name such as "blobs:train"; no file is read."""

    def _read(self, path):
        name, _, split = path.partition(":")
        if name != "blobs" or split not in SIZES:
            raise ValueError(f"unknown dataset {path!r}; expected blobs:train, blobs:validation or blobs:test")
        generator = torch.Generator().manual_seed(list(SIZES).index(split))
        for index in range(SIZES[split]):
            label = index % 2
            features = torch.randn(4, generator=generator) * 0.5 + (1.5 if label else -1.5)
            yield {"features": features, "label": label}
'''


def test_a_plugin_reader_of_dataset_names_trains_and_evaluates_on_names(tmp_path):
    (tmp_path / "blob_datasets").mkdir()
    (tmp_path / "blob_datasets" / "__init__.py").write_text(PLUGIN)
    config = {
        "dataset_reader": {"type": "synthetic_blobs"},
        "train_data_path": "blobs:train",
        "validation_data_path": "blobs:validation",
        "data_loader": {"batch_size": 16, "shuffle": True},
        "model": {"type": "mlp_classifier", "input_dim": 4, "hidden_dims": [8], "num_classes": 2},
        "trainer": {"num_epochs": 2, "optimizer": {"type": "adam", "lr": 0.05}, "progress_bar": False},
    }
    (tmp_path / "experiment.json").write_text(json.dumps(config))
    plugin = ["--include-package", "blob_datasets"]
    env = {"PYTHONPATH": f"{ROOT}:{tmp_path}"}

    train = run_cli("train", "experiment.json", "-s", "run", *plugin, cwd=tmp_path, env=env)
    assert train.returncode == 0, train.stderr
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["best_validation_accuracy"] >= 0.9

    evaluate = run_cli("evaluate", "run/model.tar.gz", "blobs:test", *plugin, cwd=tmp_path, env=env)
    assert evaluate.returncode == 0, evaluate.stderr
    assert json.loads(evaluate.stdout)["accuracy"] >= 0.9

    unknown = run_cli("evaluate", "run/model.tar.gz", "blobs:tset", *plugin, cwd=tmp_path, env=env)
    assert unknown.returncode == 1 and "unknown dataset 'blobs:tset'" in unknown.stderr  # the reader's own error


def test_a_missing_local_csv_is_refused_before_training_naming_the_key_and_the_reader(tmp_path):
    run = tmp_path / "run"
    result = run_cli("train", CONFIG, "-s", str(run), "-o", '{"train_data_path": "no/such/train.csv"}')
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(
        'regimen: configuration error: train_data_path: file not found: no/such/train.csv (read by the "csv" '
        "reader, which reads a local file or a URL; relative paths are read from "
    )
    assert "Traceback" not in result.stderr
    assert not run.exists()


def test_url_data_trains_evaluates_and_trains_again_from_the_cache_once_the_server_is_gone(tmp_path):
    """The offline half pins allennlp/common/file_utils.py ``get_from_cache`` (now the cached-path library): when
    the server cannot be reached, the newest cached copy is read; with none, the error names the URL.

    Both offline runs wait out cached-path's connection retries (about 30 s), so they run side by side."""
    served = tmp_path / "served"
    served.mkdir()
    for split in ("train", "test"):
        shutil.copy(BLOBS / f"{split}.csv", served / f"{split}.csv")
    env = {"REGIMEN_CACHE_ROOT": str(tmp_path / "cache")}

    def train(directory: str, train_url: str):
        overrides = json.dumps({"train_data_path": train_url, "trainer.num_epochs": 1})
        return run_cli("train", CONFIG, "-s", str(tmp_path / directory), "-o", overrides, env=env)

    with serving(served) as (base, requests):
        online = train("online", f"{base}/train.csv")
        assert online.returncode == 0, online.stderr
        from_url = run_cli("evaluate", str(tmp_path / "online" / "model.tar.gz"), f"{base}/test.csv", env=env)
        assert from_url.returncode == 0, from_url.stderr
    from_file = run_cli("evaluate", str(tmp_path / "online" / "model.tar.gz"), str(BLOBS / "test.csv"))
    assert json.loads(from_url.stdout) == json.loads(from_file.stdout)
    assert [path for method, path in requests if method == "GET"] == ["/train.csv", "/test.csv"]
    assert len(list((tmp_path / "cache").glob("*.json"))) == 2  # cached-path's note of each cached URL

    with ThreadPoolExecutor(2) as pool:  # the server is stopped: its port refuses connections
        cached = pool.submit(train, "offline", f"{base}/train.csv")
        uncached = pool.submit(train, "never", f"{base}/never_downloaded.csv")
    cached, uncached = cached.result(), uncached.result()

    assert cached.returncode == 0, cached.stderr
    online_metrics = json.loads((tmp_path / "online" / "metrics.json").read_text())
    offline_metrics = json.loads((tmp_path / "offline" / "metrics.json").read_text())
    assert offline_metrics["training_loss"] == online_metrics["training_loss"]  # the same data, from the cache

    assert uncached.returncode == 2, uncached.stderr
    message = uncached.stderr[uncached.stderr.index("regimen: configuration error:") :]
    assert message.startswith(
        f"regimen: configuration error: {base}/never_downloaded.csv: cannot download: the server cannot be reached ("
    )
    assert f"no copy is cached in {tmp_path / 'cache'} (set REGIMEN_CACHE_ROOT to use another cache)" in message
    assert "Traceback" not in uncached.stderr
    assert not (tmp_path / "never").exists()
