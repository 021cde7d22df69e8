"""Wires the ledger service from settings: store, key, signer loop, readiness."""

from __future__ import annotations

import asyncio
import logging

import sqlalchemy as sa

from mrm.core import db
from mrm.core.auth import ServerAuth
from mrm.core.auth.access import RECONCILER, Reconciler
from mrm.core.errors import IntegrityError
from mrm.core.server import Service, wait_either
from mrm.core.settings import Settings
from mrm.kernel.clock import now_us
from mrm.ledger.pool import IntakePool
from mrm.ledger.service import Ledger
from mrm.ledger.servicer import LedgerServicer, register
from mrm.ledger.store import open_store
from mrm.ledger.validate import Limits, validate_append
from mrm.v1 import ledger_pb2

log = logging.getLogger(__name__)
SERVICE_NAME = ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"].full_name


def open_ledger(settings: Settings, engine: sa.Engine) -> Ledger:
    """Open the log (creating its identity and key on first start). Blocking."""
    return Ledger.open(
        open_store(engine),
        key_file=str(settings.resolved_key_file()),
        configured_origin=settings.ledger_origin,
        checkpoint_every=settings.ledger_checkpoint_every,
    )


def ledger_service(
    settings: Settings, engine: sa.Engine, ledger: Ledger, auth: ServerAuth
) -> Service:
    sign_wanted = asyncio.Event()
    limits = Limits(
        max_record_bytes=settings.ledger_max_record_bytes,
        max_batch=settings.ledger_max_batch,
    )
    intake = IntakePool(limits, settings.ledger_append_workers, ledger.store.encode_rows)
    servicer = LedgerServicer(ledger, intake, sign_wanted)

    async def ready() -> bool:
        return ledger.integrity_failure is None and await asyncio.to_thread(db.ping, engine)

    async def signer_loop(stopping: asyncio.Event) -> None:
        # Signs every N leaves (woken by appends) or every T seconds, whichever first.
        while not stopping.is_set():
            await wait_either(sign_wanted, stopping, settings.ledger_checkpoint_interval)
            sign_wanted.clear()
            try:
                await asyncio.to_thread(ledger.sign_checkpoint)
            except IntegrityError as exc:
                # Evidence of tampering: the ledger now refuses appends and reports
                # NOT_SERVING, and keeps serving reads so it can be audited.
                log.critical("ledger integrity failure: %s", exc)
            except Exception:
                log.exception("signing a checkpoint failed; will retry")

    def append_access(record: ledger_pb2.Record) -> None:
        req = ledger_pb2.AppendRecordsRequest(records=[record])
        ledger.append(validate_append(req, limits), RECONCILER)

    reconciler = Reconciler(append_access)

    async def access_loop(stopping: asyncio.Event) -> None:
        # ACCESS records for tokens the tokens file holds and the ledger does not.
        tokens = auth.authenticator.tokens if settings.auth_record_tokens else None
        while tokens is not None and not stopping.is_set():
            try:
                entries = tokens.entries()
                await asyncio.to_thread(reconciler.run, entries, now_us())
            except Exception:
                log.exception("recording the tokens file's credentials failed; will retry")
            await wait_either(asyncio.Event(), stopping, settings.auth_reconcile_interval)

    return Service(
        name=SERVICE_NAME,
        register=lambda server: register(servicer, server),
        ready=ready,
        background=[signer_loop, access_loop],
        close=intake.close,
    )
