"""The background writer: jobs in order without holding up the caller, errors raised in the training thread."""

from __future__ import annotations

import threading

import pytest

from regimen.trainers.atomic_files import BackgroundWriter


def test_the_writer_runs_jobs_in_order_without_holding_up_the_caller():
    writer = BackgroundWriter()
    done: list[int] = []
    release = threading.Event()
    writer.submit(lambda: (release.wait(10), done.append(1)), "first")
    writer.submit(lambda: done.append(2), "second")  # queued behind the first: submit returns at once
    writer.submit(lambda: done.append(3), "third")
    assert done == []
    release.set()
    writer.wait()
    assert done == [1, 2, 3]


def test_a_failed_job_is_raised_once_and_the_jobs_after_it_are_discarded_not_run():
    writer = BackgroundWriter()
    done: list[str] = []
    release = threading.Event()
    writer.submit(lambda: (release.wait(10), 1 / 0), "best.th")
    writer.submit(lambda: done.append("run"), "checkpoint", discard=lambda: done.append("discarded"))
    release.set()
    with pytest.raises(RuntimeError, match=r"writing best\.th failed: ZeroDivisionError"):
        writer.wait()
    assert done == ["discarded"]
    writer.wait()  # raised once
    writer.submit(lambda: done.append("after"), "next")  # later jobs run again
    writer.wait()
    assert done == ["discarded", "after"]

    inline = BackgroundWriter(enabled=False)
    with pytest.raises(ZeroDivisionError):
        inline.submit(lambda: 1 / 0, "best.th")


def test_submit_waits_for_the_oldest_job_when_too_many_are_under_way():
    writer = BackgroundWriter()
    writer.MAX_PENDING = 1
    release = threading.Event()
    writer.submit(lambda: release.wait(10), "slow")
    second = threading.Thread(target=writer.submit, args=(lambda: None, "second"))
    second.start()
    second.join(0.3)
    assert second.is_alive()  # held until the slow job is done
    release.set()
    second.join(10)
    assert not second.is_alive()
    writer.wait()


def test_a_background_write_is_in_place_after_wait_and_one_after_a_failure_is_not_written(tmp_path):
    writer = BackgroundWriter()
    target = tmp_path / "metrics.json"
    writer.write(target, lambda file: file.write(b"{}\n"))
    writer.wait()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["metrics.json"] and target.read_bytes() == b"{}\n"

    release = threading.Event()
    writer.submit(lambda: (release.wait(10), 1 / 0), "something else")
    writer.write(tmp_path / "next.json", lambda file: file.write(b"[]"))  # queued behind the failing job
    release.set()
    with pytest.raises(RuntimeError, match="writing something else failed"):
        writer.wait()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["metrics.json"]
