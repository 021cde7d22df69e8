"""Container health check: exit 0 when every given gRPC server reports SERVING.

    python healthcheck.py [HOST:PORT ...]

With no address it checks the service named by the container's command
(`mrm serve NAME`, from /proc/1/cmdline) at its MRM_*_ADDR, or every service for
`mrm up`. Uses grpc.health.v1 from the image's own grpcio-health-checking, so
no grpc_health_probe binary is needed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

DEFAULT_PORTS = {
    "registry": 50051,
    "ledger": 50052,
    "explain": 50053,
    "proxy": 8001,
    "monitor": 50054,
}
TIMEOUT = 4.0


def _local(address: str) -> str:
    # A server listening on every interface is checked through loopback.
    host, _, port = address.rpartition(":")
    return f"127.0.0.1:{port}" if host in ("", "0.0.0.0", "[::]", "::") else address  # noqa: S104


def _addresses(argv: list[str]) -> list[str]:
    if argv:
        return argv
    try:
        cmdline = Path("/proc/1/cmdline").read_bytes().split(b"\0")
    except OSError:
        cmdline = []
    words = [w.decode() for w in cmdline if w]
    names = list(DEFAULT_PORTS)
    if "serve" in words and words.index("serve") + 1 < len(words):
        names = [words[words.index("serve") + 1]]
    return [
        _local(os.environ.get(f"MRM_{n.upper()}_ADDR", f":{DEFAULT_PORTS[n]}"))
        for n in names
        if n in DEFAULT_PORTS
    ]


def check(address: str) -> str | None:
    """None when SERVING, else why not."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT)
        except grpc.RpcError as exc:
            return f"{address}: {exc.code().name}"
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return f"{address}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
    return None


def main(argv: list[str]) -> int:
    addresses = _addresses(argv)
    if not addresses:
        print("healthcheck: no address to check", file=sys.stderr)
        return 2
    failures = [f for f in map(check, addresses) if f]
    for failure in failures:
        print(f"healthcheck: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
