"""When a model version's decisions make a window: tumbling or rolling, by rows or seconds.

A `WindowBuffer` holds one version's decisions for one configured window in
ledger order and says when that window is due; the engine judges `take()`'s
entries, with a buffer per window when a version configures several. Nothing but the ledger's
order and times decides, so a monitor that reads the same records again (after
a restart) forms the same windows:

- tumbling rows: a window is due when it has `size` rows; the next starts empty.
- tumbling seconds: a decision `size` seconds or more after the window's first
  closes the window before it, and opens the next.
- rolling rows: the buffer keeps the last `size` rows (whole decisions); the
  first window is due when it is full, each later one after `step` new rows.
- rolling seconds: the buffer keeps the decisions less than `size` seconds
  older than its newest; the first window is due as for tumbling, each later
  one at the first decision `step` seconds or more after the decision that
  closed the previous window (its `closed_at_us`).

A restarted monitor rebuilds a rolling buffer by replaying the previous
window's decisions (`add(..., replay=True)`): they fill the buffer but do not
count towards the next step.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mrm.drift.config import WindowSpec
from mrm.drift.decisions import Decision

_US = 1_000_000


@dataclass(frozen=True)
class Entry:
    """One PREDICTION record in a window."""

    leaf: int
    us: int
    """The record's ledger time, microseconds since the epoch."""
    record_id: str
    body: Mapping[str, Any]
    rows: int
    """Rows the decision holds (0 when its body is unreadable)."""
    decision: Decision | None = None
    """The body read against the version's schema, once (None: unreadable)."""


@dataclass
class WindowBuffer:
    spec: WindowSpec
    entries: deque[Entry] = field(default_factory=deque)
    rows: int = 0
    fresh_rows: int = 0
    """Rows added since the last window was taken (replayed ones excluded)."""
    fresh: int = 0
    """Decisions added since the last window was taken (replayed ones excluded)."""
    last_end_us: int | None = None
    """When the previous window closed (seconds windows: the time of the decision
    that closed it; rows windows: its last decision's); None before the first."""

    def closes_before(self, us: int) -> bool:
        """Whether a decision at `us` ends the current window (seconds windows only):
        judge `take(us)` before adding it."""
        if self.spec.unit != "seconds" or not self.entries or self.fresh == 0:
            return False
        if self.spec.step is None or self.last_end_us is None:
            return us - self.entries[0].us >= self.spec.size * _US
        return us - self.last_end_us >= self.spec.step * _US

    def add(self, entry: Entry, *, replay: bool = False) -> bool:
        """Add a decision; True when a rows window is now due (judge `take()`)."""
        self.entries.append(entry)
        self.rows += entry.rows
        if not replay:
            self.fresh += 1
            self.fresh_rows += entry.rows
        if self.spec.step is not None:
            self._trim(entry.us)
        if self.spec.unit != "rows" or replay or self.fresh == 0:
            return False
        if self.spec.step is None or self.last_end_us is None:
            return self.rows >= self.spec.size
        return self.fresh_rows >= self.spec.step

    def take(self, closed_at_us: int | None = None) -> list[Entry]:
        """The due window's decisions; a tumbling buffer starts empty again, a rolling
        one keeps them for the windows that overlap this one. `closed_at_us` is the
        time of the decision that closed a seconds window."""
        window = list(self.entries)
        if window:
            self.last_end_us = window[-1].us if closed_at_us is None else closed_at_us
        self.fresh = self.fresh_rows = 0
        if self.spec.step is None:
            self.entries.clear()
            self.rows = 0
        return window

    def _trim(self, newest_us: int) -> None:
        entries = self.entries
        if self.spec.unit == "rows":
            while entries and self.rows - entries[0].rows >= self.spec.size:
                self.rows -= entries.popleft().rows
        else:
            while entries and newest_us - entries[0].us >= self.spec.size * _US:
                self.rows -= entries.popleft().rows
