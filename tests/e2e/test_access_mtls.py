"""Mutual TLS: every server (gRPC and the HTTP reports) behind TLS, and a client
certificate's SAN (a SPIFFE ID) as the principal, mapped to roles by [[mtls]].

A certificate from another CA, an expired one, or none at all fails in the TLS
handshake, before any RPC exists: the client sees UNAVAILABLE (gRPC has no
status for "your certificate is bad"), and the call never reaches a service.
"""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import urllib3
from click.testing import CliRunner

from mrm.cli.main import mrmctl
from mrm.client.ledger import new_record
from mrm.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    ledger_pb2,
    ledger_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)
from tests.conftest import RunningLedger, start_ledger
from tests.support.auth import TEST_TOKEN, status_of
from tests.support.pki import Ca, Pair

AUDITOR = "spiffe://mrm.test/ns/audit/sa/auditor"
PROXY = "spiffe://mrm.test/ns/mrm/sa/proxy"
STRANGER = "spiffe://mrm.test/ns/other/sa/nobody"


@dataclass
class Mesh:
    stack: RunningLedger
    ca: Ca
    certs: dict[str, Pair]

    def channel(self, addr: str, who: str | None, ca: Path | None = None) -> grpc.Channel:
        pair = self.certs[who] if who else None
        creds = grpc.ssl_channel_credentials(
            root_certificates=(ca or self.ca.file).read_bytes(),
            private_key=pair.key.read_bytes() if pair else None,
            certificate_chain=pair.cert.read_bytes() if pair else None,
        )
        return grpc.secure_channel(addr, creds)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("mtls")
    ca, rogue = Ca(tmp / "pki", "mesh"), Ca(tmp / "rogue", "rogue")
    server = ca.issue("server", server=True)
    certs = {
        "internal": ca.issue("internal", uri="spiffe://mrm.test/ns/mrm/sa/services"),
        "auditor": ca.issue("auditor", uri=AUDITOR),
        "proxy": ca.issue("proxy", uri=PROXY),
        "stranger": ca.issue("stranger", uri=STRANGER),
        "expired": ca.issue("expired", uri=AUDITOR, expired=True),
        "rogue": rogue.issue("rogue", uri=AUDITOR),
    }
    (tmp / "auth.toml").write_text(
        f'[[mtls]]\nidentity = "{AUDITOR}"\nroles = ["auditor"]\n\n'
        f'[[mtls]]\nidentity = "spiffe://mrm.test/ns/mrm/sa/*"\nroles = ["proxy"]\n'
    )
    stack = start_ledger(
        tmp / "home",
        auth_config_file=tmp / "auth.toml",
        tls_cert_file=server.cert,
        tls_key_file=server.key,
        tls_client_ca_file=ca.file,
        tls_ca_file=ca.file,
        tls_client_cert_file=certs["internal"].cert,
        tls_client_key_file=certs["internal"].key,
    )
    try:
        yield Mesh(stack, ca, certs)
    finally:
        stack.stack.stop()
        # asyncio (3.11) drops, without closing, the server side of a TLS handshake
        # that failed (the refused client certificates above); collect it here, where
        # its ResourceWarning is known, not in whichever test runs next.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


def _addrs(m: Mesh) -> list[str]:
    s = m.stack
    return [s.addr, s.registry_addr, s.explain_addr, s.proxy_addr]


def test_a_valid_certificate_is_the_principal(mesh: Mesh) -> None:
    for addr in _addrs(mesh):
        with mesh.channel(addr, "auditor") as ch:
            who = auth_pb2_grpc.AuthServiceStub(ch).WhoAmI(auth_pb2.WhoAmIRequest()).identity
        assert who.principal == AUDITOR
        assert who.method == auth_pb2.AUTH_METHOD_MTLS
        assert list(who.roles) == ["auditor"]
        assert who.verified_claims["san"] == AUDITOR


def test_the_certificate_roles_decide_what_it_may_do(mesh: Mesh) -> None:
    with mesh.channel(mesh.stack.addr, "auditor") as ch:
        ledger = ledger_pb2_grpc.LedgerServiceStub(ch)
        assert status_of(lambda: ledger.GetCheckpoint(ledger_pb2.GetCheckpointRequest())) == (
            grpc.StatusCode.OK
        )
        record = new_record("PREDICTION", {"x": 1})
        append = ledger_pb2.AppendRecordsRequest(records=[record])
        assert status_of(lambda: ledger.AppendRecords(append)) == grpc.StatusCode.PERMISSION_DENIED
    with mesh.channel(mesh.stack.registry_addr, "auditor") as ch:
        create = registry_pb2.CreateModelRequest(model=registry_pb2.Model(name="m-tls"))
        assert status_of(lambda: registry_pb2_grpc.RegistryServiceStub(ch).CreateModel(create)) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
    with mesh.channel(mesh.stack.addr, "proxy") as ch:
        ledger = ledger_pb2_grpc.LedgerServiceStub(ch)
        ledger.AppendRecords(append)
        stored = ledger.GetRecord(ledger_pb2.GetRecordRequest(record_id=record.record_id))
        assert stored.record.actor == PROXY
    with mesh.channel(mesh.stack.addr, "stranger") as ch:
        stub = auth_pb2_grpc.AuthServiceStub(ch)
        with pytest.raises(grpc.RpcError) as refused:
            stub.WhoAmI(auth_pb2.WhoAmIRequest())
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert STRANGER in (refused.value.details() or "")


@pytest.mark.parametrize("who", ["rogue", "expired", None], ids=["wrong CA", "expired", "none"])
def test_a_bad_certificate_fails_the_handshake_on_every_server(mesh: Mesh, who: str | None) -> None:
    for addr in _addrs(mesh):
        with mesh.channel(addr, who) as ch:
            call = auth_pb2_grpc.AuthServiceStub(ch).WhoAmI
            code = status_of(lambda: call(auth_pb2.WhoAmIRequest(), timeout=5))  # noqa: B023
        assert code == grpc.StatusCode.UNAVAILABLE, addr
    # a token does not stand in for the certificate the server requires
    with mesh.channel(mesh.stack.addr, who) as ch:
        stub = auth_pb2_grpc.AuthServiceStub(ch)
        code = status_of(
            lambda: stub.WhoAmI(
                auth_pb2.WhoAmIRequest(),
                metadata=(("authorization", f"Bearer {TEST_TOKEN}"),),
                timeout=5,
            )
        )
    assert code == grpc.StatusCode.UNAVAILABLE


def test_plaintext_is_refused(mesh: Mesh) -> None:
    with grpc.insecure_channel(mesh.stack.addr) as ch:
        code = status_of(
            lambda: auth_pb2_grpc.AuthServiceStub(ch).WhoAmI(auth_pb2.WhoAmIRequest(), timeout=5)
        )
    assert code == grpc.StatusCode.UNAVAILABLE


def test_mrmctl_presents_its_certificate(mesh: Mesh, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MRM_TOKEN", raising=False)
    pair = mesh.certs["auditor"]
    done = CliRunner().invoke(
        mrmctl,
        ["--registry-addr", mesh.stack.registry_addr, "--tls-ca", str(mesh.ca.file),
         "--tls-cert", str(pair.cert), "--tls-key", str(pair.key), "whoami"],
        env={"MRM_AUTH": "", "MRM_HOME": str(mesh.ca.directory)},
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert AUDITOR in done.stdout
    assert "mtls" in done.stdout


def test_the_reports_are_served_over_mutual_tls(mesh: Mesh) -> None:
    url = f"https://{mesh.stack.http_addr}/reports/01a2495b-254a-71d1-8e45-279cf4160000"
    pair = mesh.certs["auditor"]
    with urllib3.PoolManager(
        ca_certs=str(mesh.ca.file), cert_file=str(pair.cert), key_file=str(pair.key)
    ) as http:
        answer = http.request("GET", url, redirect=False, retries=False)
    assert answer.status == 404  # signed in by the certificate; no such decision
    with (
        urllib3.PoolManager(ca_certs=str(mesh.ca.file)) as http,
        pytest.raises(urllib3.exceptions.HTTPError),
    ):
        http.request("GET", url, retries=False)
    rogue = mesh.certs["rogue"]
    with (
        urllib3.PoolManager(
            ca_certs=str(mesh.ca.file), cert_file=str(rogue.cert), key_file=str(rogue.key)
        ) as http,
        pytest.raises(urllib3.exceptions.HTTPError),
    ):
        http.request("GET", url, retries=False)
