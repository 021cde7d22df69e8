"""The MRM stack: every service of one installation, started together.

`mrm up` runs it in the foreground; tests and benchmarks start it through the
same API (`Stack.start`, or `BackgroundStack` from synchronous code).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass

from mrm.core import db
from mrm.core.server import GrpcServer, Service
from mrm.core.settings import Settings
from mrm.ledger.app import ledger_service, open_ledger
from mrm.ledger.service import Ledger
from mrm.proxy.app import proxy_service
from mrm.registry.app import registry_service

log = logging.getLogger(__name__)


@dataclass
class Stack:
    settings: Settings
    ledger: Ledger
    servers: dict[str, GrpcServer]

    @property
    def ledger_addr(self) -> str:
        return f"127.0.0.1:{self.servers['ledger'].port}"

    @property
    def proxy_addr(self) -> str:
        return f"127.0.0.1:{self.servers['proxy'].port}"

    @property
    def registry_addr(self) -> str:
        return f"127.0.0.1:{self.servers['registry'].port}"

    @classmethod
    async def start(cls, settings: Settings) -> Stack:
        engine = db.create_engine(settings.resolved_database_url())
        await asyncio.to_thread(db.upgrade, engine, app_role=settings.database_app_role)
        ledger = await asyncio.to_thread(open_ledger, settings, engine)

        def server(addr: str, service: Service) -> GrpcServer:
            return GrpcServer(
                addr,
                [service],
                grace=settings.shutdown_grace,
                health_interval=settings.health_interval,
                max_message_bytes=settings.grpc_max_message_bytes,
                reuse_port=settings.reuse_port,
            )

        servers = {"ledger": server(settings.ledger_addr, ledger_service(settings, engine, ledger))}
        await servers["ledger"].start()
        # The registry reaches the ledger over gRPC, like any other client would.
        ledger_target = f"127.0.0.1:{servers['ledger'].port}"
        servers["registry"] = server(
            settings.registry_addr, registry_service(settings, engine, ledger_target)
        )
        await servers["registry"].start()
        registry_target = f"127.0.0.1:{servers['registry'].port}"
        servers["proxy"] = server(
            settings.proxy_addr, proxy_service(settings, registry_target, ledger_target)
        )
        await servers["proxy"].start()
        return cls(settings, ledger, servers)

    async def stop(self) -> None:
        await asyncio.gather(*(s.stop() for s in self.servers.values()))
        await asyncio.to_thread(self.ledger.close)
        self.ledger.store.engine.dispose()


class BackgroundStack:
    """A Stack on its own event loop thread, for synchronous callers."""

    def __init__(self, settings: Settings) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        try:
            self.stack: Stack = asyncio.run_coroutine_threadsafe(
                Stack.start(settings), self._loop
            ).result(timeout=120)
        except BaseException:
            self._halt()
            raise

    def _halt(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.stack.stop(), self._loop).result(timeout=60)
        self._halt()
