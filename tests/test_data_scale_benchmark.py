"""The data-scale benchmark: its workers, run as the suite runs them (fresh processes) at a tiny size, and its table."""

from __future__ import annotations

import pytest

from benchmarks import data_scale
from benchmarks.common import run_worker, summary

INSTANCES = 500


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("data_scale") / "data.jsonl"
    data_scale.write_data(path, INSTANCES)
    return str(path)


def test_write_data_is_the_same_for_the_same_seed(tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    data_scale.write_data(first, 50)
    data_scale.write_data(second, 50)
    assert first.read_text() == second.read_text()
    assert len(first.read_text().splitlines()) == 50


@pytest.mark.parametrize(("kind", "chunk"), [("memory", data_scale.CHUNK), ("streaming", 100)])
def test_workers_resume_at_the_right_batch(data_file, kind, chunk):
    # Chunks of 100 (not 1000) so that the streaming loader's resume skips whole chunks of the 500 instances.
    runs = {
        mode: run_worker(
            "benchmarks.data_scale",
            mode,
            "--kind",
            kind,
            "--instances",
            str(INSTANCES),
            "--path",
            data_file,
            "--shuffle",
            "--chunk",
            str(chunk),
        )
        for mode in data_scale.WORKERS
    }
    start, resume = runs["start"], runs["resume"]
    expected = data_scale.expected_batches(INSTANCES, kind, chunk)
    assert expected == (16 if kind == "memory" else 5 * 4)
    for run in (start, resume):
        assert run["batches"] == run["expected_batches"] == expected
        assert run["rss_source"] in {"statm", "peak"}
        assert run["first_s"] > 0 and run["loaded_s"] > 0
        assert run["loaded_same"] is True
    assert start["start_batch"] == 0 and resume["start_batch"] == expected // 2
    assert start["produced_batches"] == expected
    assert len(resume["labels"]) == data_scale.BATCH_SIZE
    assert resume["labels"] == start["labels_at_half"]
    assert resume["feature_sum"] == start["feature_sum_at_half"]
    assert data_scale.same_batch(start, resume)
    row = data_scale.summarise(INSTANCES, kind, True, {"start": [start], "resume": [resume]}, {})
    assert row["correct"] is True
    assert row["bytes_per_instance"]["median"] == start["rss_first_bytes"] / INSTANCES
    # A resumed batch from elsewhere in the epoch is caught.
    assert not data_scale.same_batch(start, {**resume, "labels": start["labels"], "feature_sum": start["feature_sum"]})


def _row(count: int, kind: str, shuffle: bool, correct: bool | None, errors: dict[str, str]) -> dict:
    return {
        "instances": count,
        "kind": kind,
        "shuffle": shuffle,
        "rounds": 1,
        "rss_source": "statm",
        "bytes_per_instance": summary([812.4]),
        "rss_epoch_mb": summary([7.3]),
        "start_s": summary([5.5]),
        "start_loaded_s": summary([0.0004]),
        "epoch_s": summary([2.0]),
        "resume_s": summary([0.0123]),
        "resume_loaded_s": summary([] if errors else [0.25]),
        "batches": 31250,
        "start_batch": 15625,
        "correct": correct,
        "errors": errors,
    }


def test_render_writes_one_table_with_short_cells_and_notes():
    data = {
        "quick": False,
        "repeats": 1,
        "batch_size": 32,
        "chunk": 1000,
        "files": {"1000000": {"bytes": 110 * 1024 * 1024, "write_s": 12.34}},
        "rows": [
            _row(1_000_000, "memory", True, True, {}),
            _row(1_000_000, "streaming", False, False, {"resume": "Traceback\n  ...\nValueError: boom"}),
        ],
    }
    text = data_scale.render(data)
    assert text.startswith("## Data scale\n")
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 4  # header, rule, two rows
    memory, streaming = table[2], table[3]
    cells = [cell.strip() for cell in memory.strip("|").split("|")]
    assert cells == [
        "1,000,000",
        "in memory, shuffled",
        "812",
        "7.3 MiB",
        "12.3 ms",
        "5.50 s",
        "0.25 s",
        "400 µs",
        "✓",
    ]
    cells = [cell.strip() for cell in streaming.strip("|").split("|")]
    assert cells[1] == "streaming 1000, in order" and cells[-1] == "✗"
    assert cells[6] == "-"  # no resume-loaded time: the worker failed
    assert "110.0 MiB (written in 12.3 s)" in text
    assert "the skipped chunks are parsed but not batched or collated" in text
    assert "812 bytes at the largest size" in text
    assert "- 1,000,000, streaming, in order, resume worker: ValueError: boom" in text
    assert "`/proc/self/statm`" in text


def test_duration_cells():
    assert data_scale.duration(None) == "-"
    assert data_scale.duration(1.234) == "1.23 s"
    assert data_scale.duration(0.05) == "50.0 ms"
    assert data_scale.duration(0.00005) == "50 µs"


def test_rounds_for_caps_the_repeats():
    assert data_scale.rounds_for(10_000, 10) == 3
    assert data_scale.rounds_for(10_000, 1) == 1
    assert data_scale.rounds_for(1_000_000, 10) == 1
