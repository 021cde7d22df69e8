"""benchmarks.monitor_follow imports and parses its arguments (benchmarks do not run in CI)."""

from __future__ import annotations

import pytest

from benchmarks.monitor_follow import parse_args, percentiles


def test_defaults_and_flags() -> None:
    args = parse_args([])
    assert (args.backlog_seconds, args.load_seconds, args.repeats) == (15.0, 20.0, 20)
    args = parse_args(["--load-seconds", "5", "--repeats", "3", "--concurrency", "4"])
    assert (args.load_seconds, args.repeats, args.concurrency) == (5.0, 3, 4)


def test_bad_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in (["--repeats", "1"], ["--load-seconds", "0"], ["--load-seconds", "x"]):
        with pytest.raises(SystemExit) as exited:
            parse_args(bad)
        assert exited.value.code == 2
    assert "want --repeats >= 2" in capsys.readouterr().err


def test_percentiles() -> None:
    assert percentiles([1.0, 2.0, 3.0]) == {"p50": 2.0, "p90": 2.8, "p99": 3.0, "max": 3.0}
