"""mrmctl's input errors: exit 2, one line on stderr, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mrm.cli import ledger as ledger_cli
from mrm.cli.main import mrmctl
from mrm.client.ids import new_record_id


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(mrmctl, list(args), env=env)


def assert_one_line_error(result: Result, code: int, *needles: str) -> str:
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mrmctl: error: ")
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["ledger", "proof", "abc"], ["RECORD_ID", "'abc' is not a UUIDv7"]),
        (["ledger", "proof", new_record_id(), "--tree-size", "0"], ["--tree-size"]),
        (["ledger", "records", "--since", "last tuesday"], ["--since", "ISO 8601"]),
        (["ledger", "records", "--until", "2026-13-01"], ["--until"]),
        (["ledger", "records", "--kind", "BOGUS"], ["--kind"]),
        (["ledger", "records", "--limit", "0"], ["--limit"]),
        (["ledger", "records", "--since", "2026-05-02", "--until", "2026-05-01"], ["--since"]),
        (["ledger", "append", "--kind", "gap", "--body", "[1]"], ["--body", "not an object"]),
        (["ledger", "append", "--kind", "gap", "--body", "{"], ["--body", "not valid JSON"]),
        (["ledger", "append", "--kind", "gap", "--body", '{"a":1,"a":2}'], ["duplicate key"]),
        (["ledger", "append", "--kind", "gap", "--body", "@/nonexistent/x.json"], ["--body"]),
        (["ledger", "append", "--body", "{}"], ["--kind"]),
        (["ledger", "consistency", "abc"], ["OLD_SIZE"]),
        (["ledger", "verify-note", "x.note"], ["--vkey"]),
        (["ledger", "verify-note", "x.note", "--vkey", "junk"], ["--vkey", "junk"]),
        (["ledger", "verify-proof", "p.json", "--vkey", "a+b+c"], ["--vkey"]),
        (["ledger", "nope"], ["No such command"]),
        (["--timeout", "0", "ledger", "checkpoint"], ["--timeout"]),
    ],
)
def test_usage_errors(args: list[str], needles: list[str]) -> None:
    assert_one_line_error(run(*args), 2, *needles)


def test_missing_note_file_is_an_input_error(tmp_path: Path) -> None:
    from mrm.tlog.note import generate_signer

    vkey = generate_signer("k").vkey()
    line = assert_one_line_error(
        run("ledger", "verify-note", str(tmp_path / "none"), "--vkey", vkey), 2
    )
    assert "cannot read" in line


def test_unreachable_ledger_exits_3() -> None:
    line = assert_one_line_error(
        run("--ledger-addr", "127.0.0.1:1", "ledger", "checkpoint"), 3, "127.0.0.1:1"
    )
    assert "MRM_LEDGER_ADDR" in line


def test_ledger_addr_comes_from_the_environment() -> None:
    result = run("ledger", "records", env={"MRM_LEDGER_ADDR": "127.0.0.1:1"})
    assert_one_line_error(result, 3, "127.0.0.1:1")


def test_malformed_pinned_key_is_an_input_error() -> None:
    result = run(
        "--ledger-addr",
        "127.0.0.1:1",
        "ledger",
        "checkpoint",
        env={"MRM_LEDGER_VKEY": "garbage"},
    )
    assert_one_line_error(result, 2, "MRM_LEDGER_VKEY")


def test_unexpected_exception_is_one_line_with_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("kaput")

    monkeypatch.setattr(ledger_cli, "ledger_session", boom)
    line = assert_one_line_error(run("ledger", "checkpoint"), 1, "RuntimeError", "kaput")
    assert "MRM_DEBUG=1" in line


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("kaput")

    monkeypatch.setattr(ledger_cli, "ledger_session", boom)
    result = run("ledger", "checkpoint", env={"MRM_DEBUG": "1"})
    assert result.exit_code == 1
    assert "Traceback" in result.stderr


def test_help_exits_0() -> None:
    result = run("ledger", "records", "--help")
    assert result.exit_code == 0
    assert "--since" in result.stdout
