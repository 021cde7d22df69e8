"""More proxy processes on the same port (`MRM_PROXY_WORKERS`), for more than one core.

One Python process serves gRPC, ONNX Runtime and the audit shipper under one
interpreter lock. With `MRM_PROXY_WORKERS=N` the proxy started by `mrm up` (or
`mrm serve proxy`) starts N-1 more, each a complete proxy: its own ONNX Runtime
sessions, registry watch, shipper and spool (`MRM_HOME/proxy-worker-<i>/`), all
with the same subject key, so a subject's keyed hash is the same whichever
process served it. The kernel spreads connections over them (SO_REUSEPORT), so
this needs `MRM_REUSE_PORT=1` and a fixed port. A worker that dies is started
again; all stop with the proxy. Counters (`mrm status`, metrics) are per process;
worker i serves its `/metrics` on MRM_PROXY_METRICS_ADDR's port + i.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path

from mrm.core.auth import ServerAuth, service_auth
from mrm.core.server import GrpcServer, stop_on_signals
from mrm.core.settings import Settings

log = logging.getLogger(__name__)


def metrics_addr(addr: str, index: int) -> str:
    """Worker `index`'s /metrics: the next port up, since its counts are its own (two
    processes on one port would answer scrapes in turn, and the counters would jump)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or port == "0":
        return addr  # off, a free port each, or invalid (the worker reports it)
    return f"{host}:{int(port) + index}"


def worker_env(settings: Settings, index: int, key_file: Path) -> dict[str, str]:
    # The worker's own home holds its spool; what it shares with this proxy (the
    # subject key, its credential, the tokens and auth configuration its status
    # RPC checks callers against) is named by absolute path.
    shared = {
        "MRM_PROXY_TOKEN_FILE": settings.token_file("proxy"),
        "MRM_AUTH_TOKENS_FILE": settings.resolved_tokens_file(),
        "MRM_AUTH_CONFIG_FILE": settings.resolved_auth_config(),
    }
    return os.environ | {
        **{k: str(v.resolve()) for k, v in shared.items() if v is not None},
        "MRM_HOME": str(settings.home / f"proxy-worker-{index}"),
        "MRM_SUBJECT_KEY_FILE": str(key_file),
        "MRM_PROXY_ADDR": settings.proxy_addr,
        "MRM_PROXY_METRICS_ADDR": metrics_addr(settings.proxy_metrics_addr, index),
        "MRM_PROXY_HTTP_ADDR": settings.proxy_http_addr,  # shared, as the gRPC port
        "MRM_PROXY_WORKERS": "1",
        "MRM_REUSE_PORT": "1",
    }


class Workers:
    """Starts and watches the extra proxy processes (a Service background job)."""

    def __init__(self, settings: Settings, registry: str, ledger: str, key_file: Path) -> None:
        self.settings, self.registry, self.ledger, self.key_file = (
            settings,
            registry,
            ledger,
            key_file,
        )
        self.procs: list[asyncio.subprocess.Process] = []

    def wanted(self) -> int:
        n = self.settings.proxy_workers - 1
        port = self.settings.proxy_addr.rpartition(":")[2]
        if n and (not self.settings.reuse_port or port in ("", "0")):
            log.error(
                "MRM_PROXY_WORKERS=%d needs MRM_REUSE_PORT=1 and a fixed port in "
                "MRM_PROXY_ADDR (%s); serving from one process",
                self.settings.proxy_workers,
                self.settings.proxy_addr,
            )
            return 0
        return n

    async def run(self, stopping: asyncio.Event) -> None:
        n = self.wanted()
        if not n:
            return
        tasks = [asyncio.create_task(self._keep(i, stopping)) for i in range(1, n + 1)]
        await asyncio.gather(*tasks)

    async def _keep(self, index: int, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "mrm.proxy.workers",
                self.registry,
                self.ledger,
                env=worker_env(self.settings, index, self.key_file),
            )
            self.procs.append(proc)
            waiting = asyncio.ensure_future(proc.wait())
            stop = asyncio.ensure_future(stopping.wait())
            await asyncio.wait({waiting, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if stopping.is_set():
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                try:
                    await asyncio.wait_for(waiting, self.settings.shutdown_grace + 10)
                except TimeoutError:
                    proc.kill()
                    await waiting
                return
            log.error("proxy worker %d exited (%s); starting it again", index, proc.returncode)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), 1.0)


async def _serve(registry: str, ledger: str) -> None:
    from mrm.proxy.app import proxy_service  # the worker is a whole proxy

    stopping = stop_on_signals()
    settings = Settings()
    server = GrpcServer(
        settings.proxy_addr,
        [proxy_service(settings, registry, ledger, service_auth(settings, "proxy"))],
        auth=ServerAuth.from_settings(settings),
        grace=settings.shutdown_grace,
        health_interval=settings.health_interval,
        max_message_bytes=settings.grpc_max_message_bytes,
        reuse_port=True,
    )
    await server.start()
    await stopping.wait()
    await server.stop()


if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("MRM_LOG_LEVEL", "INFO"))
    asyncio.run(_serve(sys.argv[1], sys.argv[2]))
