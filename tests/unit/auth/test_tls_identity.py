"""Who a client certificate names (URI SAN, else DNS SAN, else CN), and the TLS files."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mrm.core.auth.tls import ServerTls, certificate_identity, der_to_pem
from tests.support.pki import Ca

SPIFFE = "spiffe://mrm.test/ns/mrm/sa/proxy"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Ca:
    return Ca(tmp_path_factory.mktemp("pki"), "ca")


def _bare(ca: Ca, cn: str | None) -> bytes:
    """A certificate with no SAN extension at all (and a CN, or no subject)."""
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(ca.key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_a_uri_san_comes_before_a_dns_san_and_the_cn(ca: Ca) -> None:
    pem = ca.issue("cn-name", uri=SPIFFE, server=True).cert.read_bytes()
    assert certificate_identity(pem) == SPIFFE


def test_a_dns_san_comes_before_the_cn(ca: Ca) -> None:
    assert certificate_identity(ca.issue("cn-name", server=True).cert.read_bytes()) == "localhost"


def test_the_cn_when_the_san_names_nothing_usable(ca: Ca) -> None:
    assert certificate_identity(ca.issue("only-cn").cert.read_bytes()) == "only-cn"


def test_the_cn_when_there_is_no_san_extension(ca: Ca) -> None:
    assert certificate_identity(_bare(ca, "bare-cn")) == "bare-cn"


def test_nothing_when_the_certificate_names_no_one(ca: Ca) -> None:
    assert certificate_identity(_bare(ca, None)) == ""


def test_der_to_pem_gives_back_the_same_certificate(ca: Ca) -> None:
    pem = ca.issue("round", uri=SPIFFE).cert.read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    assert certificate_identity(der_to_pem(der)) == SPIFFE


def test_server_tls_is_mutual_only_with_a_client_ca(ca: Ca, tmp_path: Path) -> None:
    pair = ca.issue("server", server=True)
    plain = ServerTls(pair.cert, pair.key)
    assert not plain.mutual
    assert plain.ssl_context().verify_mode is ssl.CERT_NONE
    mutual = ServerTls(pair.cert, pair.key, ca.file)
    assert mutual.mutual
    ctx = mutual.ssl_context()
    assert ctx.verify_mode is ssl.CERT_REQUIRED
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_2


def test_a_missing_tls_file_is_named(ca: Ca, tmp_path: Path) -> None:
    pair = ca.issue("server2", server=True)
    gone = tmp_path / "gone.key"
    with pytest.raises(ValueError, match=f"cannot read the TLS key \\(MRM_TLS_KEY_FILE\\) {gone}"):
        ServerTls(pair.cert, gone).grpc_credentials()
    with pytest.raises(ValueError, match="cannot load the TLS certificate or key"):
        ServerTls(pair.cert, gone).ssl_context()
