"""Builds the dashboard from settings: its sources and its credential."""

from __future__ import annotations

import logging
from collections.abc import Callable

from mrm.core.auth import service_auth
from mrm.core.errors import FailedPrecondition
from mrm.core.settings import Settings
from mrm.dashboard.http import Dashboard
from mrm.dashboard.sources import Sources

log = logging.getLogger(__name__)


def dashboard(settings: Settings, target: Callable[[str], str]) -> Dashboard:
    """The dashboard reading through `target(name)`, the address of service `name`
    (asked again on first use, for services started after it).

    Its credential is the auditor token `mrm up` issues (MRM_DASHBOARD_TOKEN_FILE);
    an installation without one lends it the Explain service's."""
    try:
        auth = service_auth(settings, "dashboard")
    except ValueError as exc:
        log.warning("%s; the dashboard reads with the Explain service's credential", exc)
        try:
            auth = service_auth(settings, "explain")
        except ValueError as missing:
            raise FailedPrecondition(str(missing)) from None
    return Dashboard(
        Sources(
            ledger=target("ledger"),
            registry=target("registry"),
            monitor=lambda: target("monitor"),
            proxy=lambda: target("proxy"),
            auth=auth,
        )
    )
