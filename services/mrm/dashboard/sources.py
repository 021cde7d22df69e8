"""Where the dashboard reads: the public gRPC clients, nothing else.

The dashboard presents its own credential (`mrm up` issues an auditor's token,
MRM_DASHBOARD_TOKEN_FILE); without it, the Explain service's, which may read the
ledger and the registry but not the monitor or the proxy: those figures then say
they are unavailable instead of failing the page.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from mrm.client import errors as client_errors
from mrm.client.credentials import ClientAuth
from mrm.client.ledger import LedgerClient
from mrm.client.monitor import MonitorClient
from mrm.client.proxy import ProxyClient
from mrm.client.registry import RegistryClient
from mrm.core.errors import InvalidArgument, NotFound, Unavailable

log = logging.getLogger(__name__)


@contextmanager
def upstream(service: str) -> Iterator[None]:
    """A dependency's client errors as this service's domain errors."""
    try:
        yield
    except client_errors.NotFound as e:
        raise NotFound(e.summary()) from None
    except client_errors.InvalidArgument as e:
        raise InvalidArgument("request", f"the {service} refused it: {e.summary()}") from None
    except client_errors.MrmRpcError as e:
        log.warning("the %s failed: %s %s", service, e.code.name, e.summary())
        raise Unavailable(f"the {service} is unavailable ({e.summary()})") from None


class Sources:
    """The ledger, registry, monitor and proxy clients of the dashboard.

    The monitor and proxy are reached lazily: in `mrm up` the monitor starts after
    the HTTP server is built, so its address is only known later.
    """

    def __init__(
        self,
        *,
        ledger: str,
        registry: str,
        monitor: Callable[[], str],
        proxy: Callable[[], str],
        auth: ClientAuth,
        timeout: float = 15.0,
    ) -> None:
        self.auth = auth
        self.timeout = timeout
        self.ledger = LedgerClient(ledger, timeout=timeout, auth=auth)
        self.registry = RegistryClient(registry, timeout=timeout, auth=auth)
        self._monitor_target, self._proxy_target = monitor, proxy
        self._monitor: MonitorClient | None = None
        self._proxy: ProxyClient | None = None
        self._lock = threading.Lock()

    def monitor(self) -> MonitorClient:
        with self._lock:
            if self._monitor is None:
                self._monitor = MonitorClient(
                    self._monitor_target(), timeout=self.timeout, auth=self.auth
                )
            return self._monitor

    def proxy(self) -> ProxyClient:
        with self._lock:
            if self._proxy is None:
                self._proxy = ProxyClient(self._proxy_target(), timeout=5.0, auth=self.auth)
            return self._proxy

    def close(self) -> None:
        self.ledger.close()
        self.registry.close()
        with self._lock:
            for client in (self._monitor, self._proxy):
                if client is not None:
                    client.close()
