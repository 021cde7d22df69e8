"""deploy/docker/healthcheck.py (the image's HEALTHCHECK) against a real gRPC health server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

SCRIPT = Path(__file__).resolve().parents[3] / "deploy" / "docker" / "healthcheck.py"


@pytest.fixture
def server() -> Iterator[tuple[str, health.HealthServicer]]:
    pool = futures.ThreadPoolExecutor(max_workers=2)
    srv = grpc.server(pool)
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    yield f"127.0.0.1:{port}", servicer
    srv.stop(None).wait()
    pool.shutdown()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serving_passes_and_anything_else_fails_with_a_reason(
    server: tuple[str, health.HealthServicer],
) -> None:
    addr, servicer = server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    ok = run(addr)
    assert (ok.returncode, ok.stderr) == (0, "")

    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    down = run(addr)
    assert down.returncode == 1
    assert down.stderr.strip() == f"healthcheck: {addr}: NOT_SERVING"


def test_every_address_must_serve_and_unreachable_ones_fail(
    server: tuple[str, health.HealthServicer],
) -> None:
    addr, servicer = server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    result = run(addr, "127.0.0.1:1")
    assert result.returncode == 1
    assert result.stderr.strip() == "healthcheck: 127.0.0.1:1: UNAVAILABLE"
