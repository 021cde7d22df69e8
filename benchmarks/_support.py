"""Shared pieces of the benchmarks: throwaway PostgreSQL databases, a real server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mrm.tlog.canonical import canonical_json

PG_ADMIN = os.environ.get("MRM_TEST_PG_ADMIN", "postgresql://root@127.0.0.1:5432/postgres")
RESULTS = Path(__file__).parent / "results"


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A new database; yields its SQLAlchemy URL and drops it afterwards."""
    name = f"mrm_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User plus system CPU a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    addr: str
    pids: list[int]
    registry_addr: str

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)


def seed_benchmark_token(home: Path) -> str:
    """A token of every role in `home`'s tokens file (before `mrm up` adds its own), put
    in this process's MRM_TOKEN so the SDK clients and `channel()` present it."""
    from mrm.core.auth import tokens
    from mrm.core.auth.principal import ROLES

    home.mkdir(parents=True, exist_ok=True)
    with tokens.editing(home / "tokens.json") as entries:
        token, _ = tokens.issue(entries, "benchmark", ROLES, issued_by="system:benchmark")
    os.environ["MRM_TOKEN"] = token
    return token


def channel(addr: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
    """A channel that presents MRM_TOKEN (see seed_benchmark_token) with every call."""
    from mrm.client.channel import open_channel
    from mrm.client.credentials import ClientAuth

    return open_channel(addr, ClientAuth.from_env(), options)


@contextmanager
def mrm_up(database_url: str, home: Path, replicas: int = 1, **env: str) -> Iterator[Server]:
    """`mrm up` in subprocesses, as a user runs it (authentication on: the benchmark
    presents a token of every role, as a CI job or the proxy would present theirs).

    With replicas > 1, several processes share the database and the port
    (SO_REUSEPORT spreads connections), as replicas behind a Service would.
    """
    with _mrm_processes(("up",), database_url, home, replicas, env) as server:
        yield server


@contextmanager
def mrm_serve(
    services: tuple[str, ...], database_url: str, home: Path, replicas: int = 1, **env: str
) -> Iterator[Server]:
    """`mrm serve SERVICES` in subprocesses: only those services, one process each
    replica (the ledger alone, say, without a monitor following its appends)."""
    with _mrm_processes(("serve", *services), database_url, home, replicas, env) as server:
        yield server


@contextmanager
def _mrm_processes(
    args: tuple[str, ...], database_url: str, home: Path, replicas: int, env: dict[str, str]
) -> Iterator[Server]:
    seed_benchmark_token(home)
    port = free_port()
    addr = f"127.0.0.1:{port}"
    registry_addr = f"127.0.0.1:{free_port()}"
    environ = {
        **os.environ,
        "MRM_HOME": str(home),
        "MRM_DATABASE_URL": database_url,
        "MRM_LEDGER_ADDR": addr,
        "MRM_REGISTRY_ADDR": registry_addr,
        "MRM_PROXY_ADDR": f"127.0.0.1:{free_port()}",
        "MRM_EXPLAIN_ADDR": f"127.0.0.1:{free_port()}",
        "MRM_HTTP_ADDR": f"127.0.0.1:{free_port()}",
        "MRM_LOG_LEVEL": "WARNING",
        "MRM_REUSE_PORT": "1",
        **env,
    }
    mrm = str(Path(sys.executable).with_name("mrm"))
    command = [mrm, *args]
    procs = [subprocess.Popen(command, env=environ, stdout=subprocess.DEVNULL)]
    try:
        wait_serving(addr)  # the first creates the log's identity and key
        for _ in range(replicas - 1):
            procs.append(subprocess.Popen(command, env=environ, stdout=subprocess.DEVNULL))
        time.sleep(3 if replicas > 1 else 0)
        wait_serving(addr)
        yield Server(addr, [p.pid for p in procs], registry_addr)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


def wait_serving(addr: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                resp = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"server at {addr} never became SERVING")


def uuid7() -> str:
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | (((rand >> 62) & 0xFFF) << 64) | (0b10 << 62)
    return str(uuid.UUID(int=value | (rand & ((1 << 62) - 1))))


def prediction_body(i: int) -> str:
    """A prediction-sized body: ~12 input features, the output and probabilities.

    Canonical JSON, as MRM's clients (the SDK, the proxy) send it.
    """
    features = {
        f"feature_{k:02d}": round((i * 7919 + k * 104729) % 10007 / 97.0, 4) for k in range(12)
    }
    return canonical_json(
        {
            "request": {"inputs": features, "model": "credit-risk", "version": "1.2.4"},
            "response": {"label": i % 2, "probabilities": [0.3141, 0.6859]},
        }
    ).decode()


def save(name: str, result: dict[str, object]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
