"""`mrm up`, `mrm serve` and `mrm status` as an operator runs them: real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from mrm.core import db
from tests.support.mrm_up import MRM, free_port, mrm_env


def _run(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MRM, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _one_error(done: subprocess.CompletedProcess[str]) -> str:
    """A failed start: exit 1, exactly one error line, no traceback."""
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("mrm: error")]
    assert len(errors) == 1, done.stderr
    return errors[0]


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [MRM, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 90
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"mrm {' '.join(args)} exited early: {''.join(lines)}{err}")
        lines.append(line)
        if line.startswith("mrm: ready"):
            proc.printed = "".join(lines)  # type: ignore[attr-defined]
            return proc
    proc.kill()
    pytest.fail("mrm did not become ready")


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("mrm did not stop on SIGTERM")
    return proc.returncode


@pytest.fixture
def mrm_up_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    env = mrm_env(tmp_path / "home")
    proc = _start(["up"], env)
    yield proc, env
    if proc.poll() is None:
        _stop(proc)


def test_up_prints_every_address_and_status_reports_health(
    mrm_up_process: tuple[subprocess.Popen[str], dict[str, str]],
) -> None:
    proc, env = mrm_up_process
    printed = proc.printed  # type: ignore[attr-defined]
    for var in ("MRM_LEDGER_ADDR", "MRM_REGISTRY_ADDR", "MRM_PROXY_ADDR"):
        assert env[var] in printed
    assert "verifier key" in printed
    assert "/dashboard (sign in with an auditor's or the admin token)" in printed
    assert (Path(env["MRM_HOME"]) / "dashboard.token").is_file()  # its own auditor token
    done = _run(["status", "--output", "json"], env)
    assert done.returncode == 0, done.stdout + done.stderr
    status = json.loads(done.stdout)
    assert {h["service"]: h["status"] for h in status["health"]}.items() >= {
        "ledger": "SERVING",
        "registry": "SERVING",
        "proxy": "SERVING",
    }.items()
    assert status["ledger"]["tree_size"] >= 0
    assert status["proxy"]["sampled"] == status["proxy"]["dropped"] == 0
    assert status["proxy"]["ledger_reachable"] is True
    assert status["healthy"] is True
    text = _run(["status"], env)
    assert "SERVING" in text.stdout
    assert "models in production" in text.stdout
    assert "proxy samples: 0 sampled" in text.stdout
    assert _stop(proc) == 0


def test_status_says_what_is_down(tmp_path: Path) -> None:
    done = _run(["status"], mrm_env(tmp_path / "home"))
    assert done.returncode == 3
    assert "UNREACHABLE" in done.stdout
    assert "Traceback" not in done.stderr


def test_a_port_in_use_names_the_port_and_the_variable(
    mrm_up_process: tuple[subprocess.Popen[str], dict[str, str]], tmp_path: Path
) -> None:
    _, env = mrm_up_process
    other = mrm_env(tmp_path / "other", MRM_REGISTRY_ADDR=env["MRM_REGISTRY_ADDR"])
    error = _one_error(_run(["up"], other))
    assert env["MRM_REGISTRY_ADDR"] in error
    assert "set MRM_REGISTRY_ADDR" in error


def test_serve_runs_one_service_that_reaches_the_others(tmp_path: Path) -> None:
    env = mrm_env(tmp_path / "home")
    # `mrm serve` (one service, as in Kubernetes) never makes credentials itself:
    error = _one_error(_run(["serve", "ledger"], env))
    assert "no tokens file" in error
    assert "mrm auth init" in error
    assert "written to" in _run(["auth", "init"], env).stdout
    ledger = _start(["serve", "ledger"], env)
    try:
        registry = _start(["serve", "registry"], env)
        try:
            assert env["MRM_REGISTRY_ADDR"] in registry.printed  # type: ignore[attr-defined]
            assert env["MRM_LEDGER_ADDR"] not in registry.printed  # type: ignore[attr-defined]
            done = _run(["status", "--output", "json"], env)
            health = {h["service"]: h["status"] for h in json.loads(done.stdout)["health"]}
            assert health["ledger"] == health["registry"] == "SERVING"
            assert health["proxy"] == "UNREACHABLE"
        finally:
            assert _stop(registry) == 0
    finally:
        assert _stop(ledger) == 0


def test_a_corrupted_home_is_one_line_and_left_untouched(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    garbage = os.urandom(8192)
    (home / "mrm.db").write_bytes(garbage)
    assert "cannot read the database" in _one_error(_run(["up"], mrm_env(home)))
    assert (home / "mrm.db").read_bytes() == garbage


def test_an_unreachable_postgresql_is_one_line(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://root@127.0.0.1:{free_port()}/mrm"
    error = _one_error(_run(["up"], mrm_env(tmp_path / "home", MRM_DATABASE_URL=url)))
    assert "database unreachable" in error
    assert "MRM_DATABASE_URL" in error


def test_a_database_from_a_newer_mrm_is_refused_untouched(tmp_path: Path, pg_url: str) -> None:
    engine = db.create_engine(pg_url)
    try:
        db.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_future'"))
    finally:
        engine.dispose()
    error = _one_error(_run(["up"], mrm_env(tmp_path / "home", MRM_DATABASE_URL=pg_url)))
    assert "newer MRM" in error
    assert "9999_future" in error
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert row == ("9999_future",)


@pytest.mark.parametrize("name", ["ledger.key", "subject.key"])
def test_a_corrupted_key_file_is_one_line_and_left_untouched(tmp_path: Path, name: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / name).write_text("garbage\n")
    error = _one_error(_run(["up"], mrm_env(home)))
    assert name in error
    assert "move it away" in error
    assert (home / name).read_text() == "garbage\n"
