"""`mrm status`: what an operator wants to see first, gathered over the public APIs.

Each part is fetched independently, so one service being down shows as down and
the rest is still reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mrm.client.credentials import ClientAuth
from mrm.client.ledger import LedgerClient
from mrm.client.proxy import ProxyClient
from mrm.client.registry import RegistryClient

T = TypeVar("T")


@dataclass(frozen=True)
class Health:
    service: str
    address: str
    status: str  # SERVING, NOT_SERVING, UNREACHABLE, ...


@dataclass
class Status:
    health: list[Health] = field(default_factory=list)
    production: list[dict[str, Any]] = field(default_factory=list)
    ledger: dict[str, Any] = field(default_factory=dict)
    proxy: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems and all(h.status == "SERVING" for h in self.health)


def check_health(address: str, timeout: float = 2.0, auth: ClientAuth | None = None) -> str:
    """The grpc.health.v1 overall status of the server at `address` (no credentials
    needed; `auth` only for its TLS settings)."""
    tls = auth.tls if auth is not None else None
    channel = (
        grpc.insecure_channel(address)
        if tls is None
        else grpc.secure_channel(address, tls.channel_credentials())
    )
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return "UNREACHABLE"
            return f"ERROR ({code.name if code else exc})"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def _attempt(status: Status, what: str, fetch: Callable[[], T]) -> T | None:
    try:
        return fetch()
    except Exception as exc:  # each part is best effort; say what failed
        status.problems.append(f"{what}: {exc}")
        return None


def gather(addresses: dict[str, str], *, auth: ClientAuth, timeout: float = 5.0) -> Status:
    """Health of every service in `addresses` (name -> host:port), then the details,
    read with `auth`."""
    status = Status()
    for name, address in addresses.items():
        status.health.append(Health(name, address, check_health(address, auth=auth)))
    up = {h.service for h in status.health if h.status != "UNREACHABLE"}
    if "ledger" in up:
        with LedgerClient(addresses["ledger"], timeout=timeout, auth=auth) as ledger:
            cp = _attempt(status, "ledger checkpoint", ledger.checkpoint)
            if cp is not None:
                status.ledger = {
                    "origin": cp.origin,
                    "tree_size": cp.tree_size,
                    "root_hash": cp.root_hash.hex(),
                    "signed_at": cp.signed_at.ToDatetime().isoformat() + "Z",
                    "verifier_key": cp.verifier_key,
                }
    if "registry" in up:
        with RegistryClient(addresses["registry"], timeout=timeout, auth=auth) as registry:
            models = _attempt(status, "registry models", lambda: list(registry.list_models()))
            for model in models or []:
                if model.production_version:
                    status.production.append(
                        {"model": model.name, "version": model.production_version}
                    )
    if "proxy" in up:
        with ProxyClient(addresses["proxy"], timeout=timeout, auth=auth) as proxy:
            got = _attempt(status, "proxy status", proxy.status)
            if got is not None:
                c = got.counters
                status.proxy = {
                    "sampled": c.sampled,
                    "shipped": c.shipped,
                    "spooled": c.spooled,
                    "dropped": c.dropped,
                    "strict_failed": c.strict_failed,
                    "queue": f"{got.queue_depth}/{got.queue_capacity}",
                    "spool": f"{got.spool_depth}/{got.spool_capacity}",
                    "gap_records": got.gap_records_written,
                    "ledger_reachable": got.ledger_reachable,
                    "instance": got.instance,
                    "models": [f"{m.name} {m.version} ({m.stage})" for m in got.models],
                }
                if not got.ledger_reachable:
                    status.problems.append(
                        f"the proxy cannot reach the ledger ({got.last_ledger_error}); "
                        "samples are spooled"
                    )
    return status
