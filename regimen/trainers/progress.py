"""Progress: the tqdm bar of an epoch or a validation, with running metrics refreshed at a throttled rate."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping

from tqdm import tqdm

logger = logging.getLogger(__name__)

_REFRESH_SECONDS = 0.5  # how often the running metrics are read and shown on an interactive bar
_FILE_FRIENDLY_SECONDS = 10.0  # how often a plain progress line is written when file_friendly_logging is on
FILE_FRIENDLY_VARIABLE = "REGIMEN_FILE_FRIENDLY_LOGGING"  # "1": plain lines (set by --file-friendly-logging)


class Progress:
    """Makes one bar per pass; disabled on non-primary workers and when ``progress_bar`` is false.

    File-friendly (``file_friendly``, ``--file-friendly-logging``, or whenever stderr is not a terminal): no bar
    and no ``\r``-redrawn frames, but a plain log line when a pass starts, every 10 seconds and when it ends,
    readable in a log file (and copied to ``out.log``).
    """

    def __init__(self, enabled: bool = True, file_friendly: bool = False) -> None:
        self.enabled = enabled
        interactive = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        self.file_friendly = file_friendly or os.environ.get(FILE_FRIENDLY_VARIABLE) == "1" or not interactive
        self._bar: _Bar | None = None

    def start(self, description: str, total: int) -> _Bar:
        self.close()
        self._bar = _Bar(description, total, self.enabled, self.file_friendly)
        return self._bar

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class _Bar:
    """A tqdm bar that tqdm itself sees only at refreshes: counts in between are added up here, costing a clock
    read per update rather than tqdm's bookkeeping."""

    def __init__(self, description: str, total: int, enabled: bool, file_friendly: bool) -> None:
        self._interval = _FILE_FRIENDLY_SECONDS if file_friendly else _REFRESH_SECONDS
        self._next_refresh = 0.0
        self._pending = 0
        self._lines = _Lines(description, total) if enabled and file_friendly else None
        self._bar = (
            None
            if self._lines is not None
            else (
                tqdm(
                    total=total,
                    desc=description,
                    mininterval=0,  # drawn at every update it gets, which this class throttles
                    miniters=1,
                    file=sys.stderr,
                    dynamic_ncols=not file_friendly,
                    ascii=file_friendly,
                    leave=False,
                )
                if enabled
                else None
            )
        )

    def update(self, count: int, metrics: Mapping[str, float]) -> None:
        if self._lines is not None:
            self._lines.update(count, metrics, self._interval)
            return
        if self._bar is None:
            return
        self._pending += count
        now = time.monotonic()
        if now >= self._next_refresh:
            self._next_refresh = now + self._interval
            self._bar.set_postfix({key: f"{value:.4f}" for key, value in metrics.items()}, refresh=False)
            self._bar.update(self._pending)
            self._pending = 0

    def close(self) -> None:
        if self._lines is not None:
            self._lines.close()
            self._lines = None
        if self._bar is not None:
            self._bar.update(self._pending)
            self._bar.close()
            self._bar = None


class _Lines:
    """The file-friendly progress of one pass: ``epoch 0: 25/50 batches, training_loss=0.4127`` log lines."""

    def __init__(self, description: str, total: int) -> None:
        self.description, self.total, self.done = description, total, 0
        self._next = 0.0
        self._metrics: Mapping[str, float] = {}

    def update(self, count: int, metrics: Mapping[str, float], interval: float) -> None:
        self.done += count
        self._metrics = metrics
        now = time.monotonic()
        if now >= self._next:
            self._next = now + interval
            self._write()

    def close(self) -> None:
        self._write()

    def _write(self) -> None:
        shown = "".join(f", {key}={value:.4f}" for key, value in dict(self._metrics).items())
        logger.info("%s: %d/%d batches%s", self.description, self.done, self.total, shown)


def format_duration(seconds: float) -> str:
    """``HH:MM:SS.ffffff``, AllenNLP's ``training_duration``."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{int((seconds % 1) * 1e6):06d}"
