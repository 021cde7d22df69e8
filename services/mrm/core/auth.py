"""Who is calling: the principal a service records as the actor of a change."""

from __future__ import annotations

import grpc

_MAX_ACTOR = 256  # the ledger's actor column


def principal(context: grpc.aio.ServicerContext[object, object]) -> str:
    """The mTLS identity when the channel has one, else anonymous@<peer address>.

    A caller's own claim of who they are (a CI actor, a git user) belongs in the
    record's body, never here: this field holds only what the server verified.
    """
    auth = context.auth_context()
    for key in ("x509_subject_alternative_name", "x509_common_name"):
        values = list(auth.get(key) or ())
        if values:
            return bytes(values[0]).decode(errors="replace")[:_MAX_ACTOR]
    return f"anonymous@{_peer_host(context.peer())}"[:_MAX_ACTOR]


def _peer_host(peer: str) -> str:
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return kind or "unknown"
