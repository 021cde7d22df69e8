"""When windows are due (mrm.monitor.windows): tumbling and rolling, rows and seconds,
and a restart that replays the previous window forms the same windows."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mrm.drift.config import WindowSpec
from mrm.monitor.windows import Entry, WindowBuffer

S = 1_000_000


def entry(leaf: int, us: int | None = None, rows: int = 1) -> Entry:
    return Entry(leaf, leaf * S if us is None else us, f"r{leaf}", {}, rows)


def run(spec: WindowSpec, entries: list[Entry]) -> list[list[int]]:
    """The leaves of every window an uninterrupted monitor judges."""
    return [w for w, _ in run_from(WindowBuffer(spec), entries, replayed=0)]


def run_from(
    buf: WindowBuffer, entries: list[Entry], replayed: int
) -> list[tuple[list[int], int | None]]:
    """(leaves, closed at) of each window, as the engine drives the buffer."""
    out: list[tuple[list[int], int | None]] = []
    for i, e in enumerate(entries):
        replay = i < replayed
        if not replay and buf.closes_before(e.us):
            out.append(([x.leaf for x in buf.take(e.us)], buf.last_end_us))
        if buf.add(e, replay=replay):
            out.append(([x.leaf for x in buf.take()], buf.last_end_us))
    return out


def test_tumbling_rows_are_consecutive_and_disjoint() -> None:
    windows = run(WindowSpec("rows", 3), [entry(i) for i in range(10)])
    assert windows == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def test_rolling_rows_cover_the_last_size_rows_every_step() -> None:
    windows = run(WindowSpec("rows", 4, step=2), [entry(i) for i in range(10)])
    assert windows == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8, 9]]


def test_rolling_rows_count_rows_not_decisions() -> None:
    entries = [entry(0, rows=2), entry(1, rows=2), entry(2), entry(3), entry(4, rows=3)]
    windows = run(WindowSpec("rows", 4, step=2), entries)
    assert windows == [[0, 1], [1, 2, 3], [3, 4]]  # [3, 4] holds 4 rows


def test_tumbling_seconds_close_at_the_first_decision_past_the_window() -> None:
    times = [0, 10, 20, 65, 70, 130]
    windows = run(WindowSpec("seconds", 60), [entry(i, t * S) for i, t in enumerate(times)])
    assert windows == [[0, 1, 2], [3, 4]]


def test_rolling_seconds_cover_the_size_seconds_before_each_step() -> None:
    # size 60 s, step 20 s; a decision every 10 s.
    entries = [entry(i, i * 10 * S) for i in range(13)]
    windows = run(WindowSpec("seconds", 60, step=20), entries)
    assert windows == [
        [0, 1, 2, 3, 4, 5],  # closed by the decision at 60 s
        [2, 3, 4, 5, 6, 7],  # closed at 80 s: 20 s after the previous one closed
        [4, 5, 6, 7, 8, 9],
        [6, 7, 8, 9, 10, 11],
    ]


def test_a_quiet_gap_does_not_judge_the_same_window_twice() -> None:
    entries = [entry(0, 0), entry(1, 10 * S), entry(2, 70 * S), entry(3, 500 * S)]
    windows = run(WindowSpec("seconds", 60, step=20), entries)
    assert windows == [[0, 1], [2]]  # 1 is 60 s older than 2: out


@settings(max_examples=200, deadline=None)
@given(
    unit=st.sampled_from(["rows", "seconds"]),
    size=st.integers(1, 8),
    step=st.one_of(st.none(), st.integers(1, 8)),
    gaps=st.lists(st.integers(0, 5), min_size=1, max_size=60),
    rows=st.lists(st.integers(0, 3), min_size=60, max_size=60),
    cut=st.integers(0, 100),
)
def test_a_restart_after_any_window_forms_the_same_windows(
    unit: str, size: int, step: int | None, gaps: list[int], rows: list[int], cut: int
) -> None:
    """What a restarted monitor does: its position comes from the last recorded window
    (first leaf, last leaf, last time); a rolling one replays that window's decisions."""
    spec = WindowSpec(
        "rows" if unit == "rows" else "seconds", size, min(step, size) if step else None
    )
    t, entries = 0, []
    for i, gap in enumerate(gaps):
        t += gap * S
        entries.append(entry(i, t, rows[i]))
    whole = run_from(WindowBuffer(spec), entries, replayed=0)
    if not whole:
        return
    k = cut % len(whole)
    last, closed_at = whole[k]
    restarted = WindowBuffer(spec, last_end_us=closed_at)
    start = last[0] if spec.rolling else last[-1] + 1
    replayed = last[-1] + 1 - start
    rest = run_from(restarted, entries[start:], replayed)
    assert whole[k + 1 :] == rest
