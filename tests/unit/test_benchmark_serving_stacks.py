"""benchmarks.serving_stacks imports and parses its arguments (benchmarks do not run in CI)."""

from __future__ import annotations

import pytest

from benchmarks.serving_stacks import met, parse


def test_defaults_and_options() -> None:
    args = parse([])
    assert (args.layouts, args.concurrency) == (["default", "production"], [1, 16, 64])
    assert (args.seconds, args.warmup, args.proxy_workers) == (5.0, 1.0, 1)
    args = parse(["--layouts", "production", "--concurrency", "4", "--seconds", "2"])
    assert (args.layouts, args.concurrency, args.seconds) == (["production"], [4], 2.0)


def test_an_unknown_layout_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(["--layouts", "default,k8s"])
    assert exited.value.code == 2
    assert "unknown ['k8s']" in capsys.readouterr().err


def test_targets_read_both_ways() -> None:
    assert met("rps_vs_mlserver", 2.5)
    assert not met("rps_vs_mlserver", 2.49)
    assert met("p99_vs_mlserver", 0.5)
    assert not met("p99_vs_mlserver", 0.51)
