"""`mrm up` as a few processes: the supervisor and its children.

One interpreter lock for the ledger's appends, SHAP explanations and inference
made each wait for the others, so `mrm up` runs the services in groups, each an
`mrm serve …` child that shares nothing with the others but their addresses and
MRM_HOME:

- store:   the ledger and the registry, the only writers of the database (two
  processes writing one SQLite file would meet "database is locked");
- explain: the explanations, the monitor and the HTTP reports and dashboard,
  whose CPU-heavy work (SHAP, drift) must not stretch the ledger's append lock;
- proxy:   inference alone (with its MRM_PROXY_WORKERS, if any).

The supervisor makes what the children would otherwise race to create (the
tokens, the schema, the ledger's identity and key, the subject key) before any
starts, starts the store first, prints the children's output as its own, and
says `mrm: ready` once every service answers SERVING. A child that exits is
reported and started again after a backoff; one that keeps exiting stops
everything. SIGINT or SIGTERM stops the children (inference and explanations
first, so the proxy's last records reach the ledger), each within its grace,
then kills what is left. A child dies with the supervisor even when that is
SIGKILLed (PR_SET_PDEATHSIG on Linux).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from mrm.client.credentials import ClientAuth
from mrm.core import db
from mrm.core.auth import ServerAuth, client_tls
from mrm.core.auth.bootstrap import ensure_local_tokens
from mrm.core.errors import FailedPrecondition
from mrm.core.keyfile import load_or_create_subject_key
from mrm.core.server import stop_on_signals
from mrm.core.settings import Settings
from mrm.ledger.app import open_ledger
from mrm.stack import client_target
from mrm.status import check_health

GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("store", ("ledger", "registry")),
    ("explain", ("explain", "monitor")),
    ("proxy", ("proxy",)),
)
"""The children, in start order; the first must be ready before the others start."""

RESTARTS = 5
"""Exits of one child in a row, each soon after its start, that are still restarted."""
STABLE = 30.0
"""Seconds a child must have run for its exit not to count as one more in a row."""
_PR_SET_PDEATHSIG = 1


def bootstrap(settings: Settings) -> None:
    """What the children would race to create, made once (blocking): credentials,
    the schema, the ledger's identity and signing key, the subject key."""
    ensure_local_tokens(settings)
    try:
        ServerAuth.from_settings(settings)
    except ValueError as exc:
        raise FailedPrecondition(str(exc)) from None
    engine = db.create_engine(settings.resolved_database_url())
    try:
        db.upgrade(engine, app_role=settings.database_app_role)
        open_ledger(settings, engine).close()
    finally:
        engine.dispose()
    load_or_create_subject_key(settings.resolved_subject_key_file())


def _child_setup(parent: int) -> Callable[[], None]:
    """Runs in the child between fork and exec: its own process group (a Ctrl-C in the
    terminal reaches the supervisor alone, which stops the children in order), and
    SIGTERM when the supervisor dies, however it dies."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None

    def setup() -> None:
        os.setpgid(0, 0)
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the supervisor died before prctl took effect
            os._exit(1)

    return setup


@dataclass
class Child:
    group: str
    services: tuple[str, ...]
    proc: asyncio.subprocess.Process | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    was_ready: bool = False
    exits: int = 0
    """Exits in a row, each within STABLE seconds of its start."""
    started: float = 0.0
    pumps: list[asyncio.Task[None]] = field(default_factory=list)


class Supervisor:
    def __init__(self, settings: Settings, ready_line: str, announce: list[str]) -> None:
        self.settings = settings
        self.ready_line = ready_line
        self.announce = announce
        self.children = [Child(group, services) for group, services in GROUPS]
        self.done = asyncio.Event()  # a signal, or a child that cannot be kept running
        self.failed = False
        self.keepers: list[asyncio.Task[None]] = []

    async def run(self) -> int:
        """Start, serve until a signal or a failure, stop. The exit code."""
        stop = stop_on_signals()
        relay = asyncio.create_task(self._relay(stop))
        first, *others = self.children
        if await self._start([first]) and await self._start(others):
            await self._wait_serving()
            for line in [*self.announce, self.ready_line]:
                self._say(line, sys.stdout)
            await self.done.wait()
        await self._shutdown()
        relay.cancel()
        return 1 if self.failed else 0

    async def _relay(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.done.set()

    def _fail(self, line: str) -> None:
        if not self.done.is_set():
            self._say(line, sys.stderr)
            self.failed = True
            self.done.set()

    @staticmethod
    def _say(line: str, out: TextIO) -> None:
        out.write(line + "\n")
        out.flush()

    async def _start(self, batch: list[Child]) -> bool:
        if self.done.is_set():
            return False
        for child in batch:
            self.keepers.append(asyncio.create_task(self._keep(child)))
        all_ready: asyncio.Future[Any] = asyncio.ensure_future(
            asyncio.gather(*(c.ready.wait() for c in batch))
        )
        ended: asyncio.Future[Any] = asyncio.ensure_future(self.done.wait())
        await asyncio.wait({all_ready, ended}, return_when=asyncio.FIRST_COMPLETED)
        all_ready.cancel()
        ended.cancel()
        await asyncio.gather(all_ready, ended, return_exceptions=True)
        return not self.done.is_set()

    async def _spawn(self, child: Child) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "mrm.admin",
            "serve",
            "--supervised",
            *child.services,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=os.environ | {"MRM_INSECURE": "1" if self.settings.insecure else "0"},
            preexec_fn=_child_setup(os.getpid()),
            limit=1 << 24,
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        child.proc, child.started = proc, time.monotonic()
        child.pumps = [
            asyncio.create_task(self._pump(child, proc.stdout, sys.stdout)),
            asyncio.create_task(self._pump(child, proc.stderr, sys.stderr)),
        ]
        return proc

    async def _pump(self, child: Child, stream: asyncio.StreamReader, out: TextIO) -> None:
        """A child's output as the supervisor's, in order. Its `mrm:` lines stay as they
        are (tools grep them); its log lines get the group's name in front."""
        async for raw in stream:
            line = raw.decode(errors="replace").rstrip("\n")
            if not line.startswith("mrm: "):
                self._say(f"{child.group:<7} | {line}", out)
            elif line.startswith("mrm: ready"):  # the supervisor says it, for all
                if child.was_ready:
                    pid = child.proc.pid if child.proc else "?"
                    self._say(f"mrm: {child.group} is serving again (pid {pid})", out)
                child.was_ready = True
                child.ready.set()
            elif not (child.was_ready and out is sys.stdout):  # addresses once, not per restart
                self._say(line, out)

    async def _keep(self, child: Child) -> None:
        """Run the child; start it again when it exits, until told to stop."""
        while not self.done.is_set():
            proc = await self._spawn(child)
            code = await proc.wait()
            await asyncio.gather(*child.pumps)
            self._kill_group(proc.pid, signal.SIGTERM)  # what it left behind (proxy workers)
            if self.done.is_set():
                return
            if not child.was_ready:
                self._fail(
                    f"mrm: the {child.group} ({', '.join(child.services)}) exited with code "
                    f"{code} while starting; stopping"
                )
                return
            child.exits = 1 if time.monotonic() - child.started > STABLE else child.exits + 1
            if child.exits > RESTARTS:
                self._fail(
                    f"mrm: error: the {child.group} exited {child.exits} times in a row, each "
                    f"within {STABLE:g} s of its start (last with code {code}); stopping "
                    "everything"
                )
                return
            self._say(
                f"mrm: {child.group} exited with code {code}; restarting ({child.exits})",
                sys.stderr,
            )
            child.ready.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done.wait(), 0.25 * 2**child.exits)

    async def _wait_serving(self) -> None:
        """Every service answers SERVING on grpc.health.v1 (each child waited for its
        own before saying ready; this is the supervisor's own look)."""
        auth = ClientAuth(None, client_tls(self.settings), "health check")
        deadline = time.monotonic() + self.settings.ready_timeout
        for _, services in GROUPS:
            for name in services:
                address = client_target(getattr(self.settings, f"{name}_addr"))
                while (status := await asyncio.to_thread(check_health, address, 2.0, auth)) != (
                    "SERVING"
                ):
                    if time.monotonic() > deadline or self.done.is_set():
                        self._say(
                            f"mrm: warning: the {name} is {status} after "
                            f"{self.settings.ready_timeout:g} s (see the log above); "
                            "still starting",
                            sys.stderr,
                        )
                        break
                    await asyncio.sleep(0.1)

    async def _shutdown(self) -> None:
        """SIGTERM to the proxy and explain, then the store; SIGKILL after the grace."""
        self.done.set()
        first, *others = self.children
        for batch in (others, [first]):
            await asyncio.gather(*(self._stop(c) for c in batch))
        await asyncio.gather(*self.keepers, return_exceptions=True)

    async def _stop(self, child: Child) -> None:
        proc = child.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), self.settings.shutdown_grace + 5)
        except TimeoutError:
            self._say(f"mrm: the {child.group} did not stop in time; killing it", sys.stderr)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        self._kill_group(proc.pid, signal.SIGKILL)

    @staticmethod
    def _kill_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
