"""`mrm up` as processes (mrm.supervisor): the proxy, the database's writers and the
explanations each in a child of their own; crashes restarted, nothing orphaned."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
from click.testing import CliRunner

from mrm.cli.main import mrmctl
from mrm.client.proxy import ProxyClient
from mrm.supervisor import RESTARTS
from tests.conftest import RunningLedger
from tests.support.auth import seed_test_token
from tests.support.decisions import decide, deploy_explained, wait_recorded
from tests.support.inference import wait_ready
from tests.support.mrm_up import MRM, mrm_env


def _wait(condition: Callable[[], object], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _children(pid: int) -> dict[int, str]:
    """The live children of `pid`, each with its command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_text().replace("\0", " ")
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if ppid == pid and _alive(int(entry.name)):
            found[int(entry.name)] = cmdline
    return found


@dataclass
class Up:
    proc: subprocess.Popen[str]
    env: dict[str, str]
    out: Path
    err: Path

    def child(self, service: str) -> int:
        """The pid of the child that runs `service`."""
        pids = [p for p, cmd in _children(self.proc.pid).items() if f" {service}" in cmd]
        assert len(pids) == 1, _children(self.proc.pid)
        return pids[0]

    @property
    def stack(self) -> RunningLedger:  # what the explanation tests' helpers reach
        e = self.env
        return cast(
            RunningLedger,
            SimpleNamespace(
                addr=e["MRM_LEDGER_ADDR"],
                registry_addr=e["MRM_REGISTRY_ADDR"],
                explain_addr=e["MRM_EXPLAIN_ADDR"],
                proxy_addr=e["MRM_PROXY_ADDR"],
                http_addr=e["MRM_HTTP_ADDR"],
            ),
        )


def _up(home: Path, *args: str) -> Up:
    env = mrm_env(home, MRM_SHUTDOWN_GRACE="2", MRM_HEALTH_INTERVAL="0.2")
    home.mkdir(parents=True)
    seed_test_token(home / "tokens.json")  # the tests' clients present MRM_TOKEN
    out, err = home.parent / "up.stdout", home.parent / "up.stderr"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen([MRM, "up", *args], env=env, stdout=stdout, stderr=stderr)
    running = Up(cast("subprocess.Popen[str]", proc), env, out, err)
    deadline = time.monotonic() + 120
    while "mrm: ready" not in out.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("mrm up did not start: " + out.read_text() + err.read_text())
        time.sleep(0.2)
    return running


def _stop(up: Up, sig: signal.Signals = signal.SIGINT) -> int:
    up.proc.send_signal(sig)
    try:
        return up.proc.wait(60)
    except subprocess.TimeoutExpired:
        up.proc.kill()
        pytest.fail("mrm up did not stop")


@pytest.fixture
def start() -> Iterator[Callable[..., Up]]:
    """`_up`, and no supervisor left running when the test fails."""
    started: list[Up] = []

    def starting(home: Path, *args: str) -> Up:
        started.append(_up(home, *args))
        return started[-1]

    yield starting
    for up in started:
        if up.proc.poll() is None:
            _stop(up)


@dataclass
class Deployed:
    up: Up
    rows: np.ndarray[Any, Any]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    tmp = tmp_path_factory.mktemp("up-processes")
    up = _up(tmp / "home")
    try:
        _, X, _ = deploy_explained(up.stack, tmp / "project")
        yield Deployed(up, X.iloc[:3].to_numpy())
    finally:
        if up.proc.poll() is None:
            _stop(up)


def test_the_proxy_the_ledger_and_explain_are_processes_of_their_own(
    deployed: Deployed,
) -> None:
    up = deployed.up
    assert len(_children(up.proc.pid)) >= 3
    proxy, ledger, explain = up.child("proxy"), up.child("ledger"), up.child("explain")
    assert ledger == up.child("registry")  # the database's writers share one process
    assert len({proxy, ledger, explain, up.proc.pid}) == 4
    with ProxyClient(up.env["MRM_PROXY_ADDR"]) as client:
        assert client.status().instance.endswith(f":{proxy}")  # who answered inference
    printed = up.out.read_text()
    assert printed.count("mrm: ready") == 1
    for line in ("mrm: ledger    ", "mrm: proxy     ", "verifier key", "mrm: dashboard "):
        assert printed.count(line) == 1, printed


def test_a_decision_is_recorded_and_explained_across_processes(deployed: Deployed) -> None:
    up = deployed.up
    (record_id,) = decide(up.stack, "credit-risk", deployed.rows[:1], "alice-1003")
    done = CliRunner().invoke(mrmctl, ["why", record_id], env=up.env)
    assert done.exit_code == 0, done.output
    assert "by credit-risk 1.2.4 on " in done.stdout
    assert "proof:  ✓ decision and explanation are in the ledger" in done.stdout


def test_a_killed_proxy_is_reported_restarted_and_loses_nothing_acknowledged(
    deployed: Deployed,
) -> None:
    up = deployed.up
    before = decide(up.stack, "credit-risk", deployed.rows, "bob-17")
    old = up.child("proxy")
    os.kill(old, signal.SIGKILL)
    _wait(lambda: "mrm: proxy exited with code -9; restarting" in up.err.read_text(), "report")
    _wait(lambda: "mrm: proxy is serving again" in up.out.read_text(), "restart")
    assert up.child("proxy") != old
    wait_ready(up.stack, "credit-risk")
    after = decide(up.stack, "credit-risk", deployed.rows, "bob-17")
    wait_recorded(up.stack, before + after)


def test_a_killed_ledger_is_restarted_and_takes_the_records_after(deployed: Deployed) -> None:
    up = deployed.up
    old = up.child("ledger")
    os.kill(old, signal.SIGKILL)
    _wait(lambda: "mrm: store exited with code -9; restarting" in up.err.read_text(), "report")
    _wait(lambda: "mrm: store is serving again" in up.out.read_text(), "restart")
    assert up.child("ledger") != old
    decide(up.stack, "credit-risk", deployed.rows, "carol-9")  # waits until recorded


def test_ctrl_c_stops_every_child(deployed: Deployed) -> None:
    up = deployed.up
    children = list(_children(up.proc.pid))
    assert len(children) >= 3
    assert _stop(up) == 0
    assert not [pid for pid in children if _alive(pid)]


def test_children_do_not_outlive_a_killed_supervisor(
    tmp_path: Path, start: Callable[..., Up]
) -> None:
    up = start(tmp_path / "home")
    children = list(_children(up.proc.pid))
    assert len(children) >= 3
    up.proc.kill()
    up.proc.wait()
    _wait(lambda: not [pid for pid in children if _alive(pid)], "the children to exit")


def test_single_process_is_still_there_for_debugging(
    tmp_path: Path, start: Callable[..., Up]
) -> None:
    up = start(tmp_path / "home", "--single-process")
    assert not _children(up.proc.pid)
    with ProxyClient(up.env["MRM_PROXY_ADDR"]) as client:
        assert client.status().instance.endswith(f":{up.proc.pid}")
    assert _stop(up, signal.SIGTERM) == 0


def test_a_child_that_keeps_exiting_stops_everything(
    tmp_path: Path, start: Callable[..., Up]
) -> None:
    up = start(tmp_path / "home")
    children = list(_children(up.proc.pid))
    (tmp_path / "home" / "subject.key").write_text("garbage\n")  # no proxy starts again
    os.kill(up.child("proxy"), signal.SIGKILL)
    assert up.proc.wait(180) == 1
    err = up.err.read_text()
    assert "mrm: proxy exited with code -9; restarting (1)" in err
    assert "mrm: proxy exited with code 1; restarting (2)" in err
    assert f"mrm: error: the proxy exited {RESTARTS + 1} times in a row" in err
    assert "subject.key" in err  # each restart's own reason
    _wait(lambda: not [pid for pid in children if _alive(pid)], "the children to exit")
