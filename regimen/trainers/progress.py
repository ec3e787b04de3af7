"""Progress: the tqdm bar of an epoch or a validation, with running metrics refreshed at a throttled rate."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping

from tqdm import tqdm

logger = logging.getLogger(__name__)

_REFRESH_SECONDS = 0.5  # how often the running metrics are read and shown on an interactive bar
_FILE_FRIENDLY_SECONDS = 10.0  # how often a plain progress line is written when file_friendly_logging is on


class Progress:
    """Makes one bar per pass; disabled on non-primary workers and when ``progress_bar`` is false.

    With ``file_friendly`` the bar becomes a plain line every few seconds, readable in a log file.
    """

    def __init__(self, enabled: bool = True, file_friendly: bool = False) -> None:
        self.enabled = enabled
        self.file_friendly = file_friendly
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
        self._bar = (
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

    def update(self, count: int, metrics: Mapping[str, float]) -> None:
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
        if self._bar is not None:
            self._bar.update(self._pending)
            self._bar.close()
            self._bar = None


def format_duration(seconds: float) -> str:
    """``HH:MM:SS.ffffff``, AllenNLP's ``training_duration``."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{int((seconds % 1) * 1e6):06d}"
