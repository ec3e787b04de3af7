"""The background writer: one write at a time, in order, its errors raised in the training thread."""

from __future__ import annotations

import threading

import pytest

from regimen.trainers.atomic_files import BackgroundWriter


def test_the_writer_runs_one_write_at_a_time_in_order_and_raises_a_failure_once():
    writer = BackgroundWriter()
    done: list[int] = []
    release = threading.Event()
    writer.submit(lambda: (release.wait(10), done.append(1)), "first")
    assert done == []  # submit returned while the write waits
    release.set()
    writer.submit(lambda: done.append(2), "second")  # waits for the first
    writer.wait()
    assert done == [1, 2]

    writer.submit(lambda: 1 / 0, "best.th")
    with pytest.raises(RuntimeError, match=r"writing best\.th failed: ZeroDivisionError"):
        writer.wait()
    writer.wait()  # raised once

    inline = BackgroundWriter(enabled=False)
    with pytest.raises(ZeroDivisionError):
        inline.submit(lambda: 1 / 0, "best.th")


def test_a_background_write_is_in_place_after_wait_and_a_failed_one_leaves_no_file(tmp_path):
    writer = BackgroundWriter()
    target = tmp_path / "metrics.json"
    writer.write(target, lambda file: file.write(b"{}\n"))
    writer.wait()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["metrics.json"] and target.read_bytes() == b"{}\n"

    writer.submit(lambda: 1 / 0, "something else")
    with pytest.raises(RuntimeError, match="writing something else failed"):
        writer.write(tmp_path / "next.json", lambda file: file.write(b"[]"))  # after a failed job: not written
    assert sorted(path.name for path in tmp_path.iterdir()) == ["metrics.json"]
