"""The typed Python SDK for MRM's services.

    from mrm.client import LedgerClient, new_record

    with LedgerClient("localhost:50052") as ledger:
        (result,) = ledger.append([new_record("PREDICTION", {"score": 0.7})])

Clients present the credential `ClientAuth.from_env()` finds (MRM_TOKEN, a CI
job's id-token, …; mrm.client.credentials) unless given `auth=`. Failed calls
raise subclasses of `MrmRpcError` (mrm.client.errors).
"""

from __future__ import annotations

from mrm.client.credentials import ClientAuth, ClientTls, CredentialsError
from mrm.client.errors import (
    AlreadyExists,
    DataLoss,
    FailedPrecondition,
    InternalError,
    InvalidArgument,
    MrmRpcError,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from mrm.client.ledger import LedgerClient, new_record
from mrm.kernel.ids import new_record_id

__all__ = [
    "AlreadyExists",
    "ClientAuth",
    "ClientTls",
    "CredentialsError",
    "DataLoss",
    "FailedPrecondition",
    "InternalError",
    "InvalidArgument",
    "LedgerClient",
    "MrmRpcError",
    "NotFound",
    "PermissionDenied",
    "Unauthenticated",
    "Unavailable",
    "new_record",
    "new_record_id",
]
