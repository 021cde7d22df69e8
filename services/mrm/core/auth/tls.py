"""TLS for MRM's servers (gRPC and the HTTP pages), and who a client certificate names.

`MRM_TLS_CERT_FILE` and `MRM_TLS_KEY_FILE` switch TLS on for every server a
process runs; `MRM_TLS_CLIENT_CA_FILE` makes it mutual: every client must then
present a certificate signed by that CA, and one that is expired, or signed by
another CA, is refused in the handshake, before any call is made (gRPC's Python
server can ask for client certificates only by requiring them).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID


@dataclass(frozen=True)
class ServerTls:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None

    @property
    def mutual(self) -> bool:
        return self.client_ca_file is not None

    def _read(self, path: Path, what: str) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read {what} {path}: {exc.strerror or exc}") from None

    def grpc_credentials(self) -> grpc.ServerCredentials:
        key = self._read(self.key_file, "the TLS key (MRM_TLS_KEY_FILE)")
        cert = self._read(self.cert_file, "the TLS certificate (MRM_TLS_CERT_FILE)")
        ca = (
            self._read(self.client_ca_file, "the client CA (MRM_TLS_CLIENT_CA_FILE)")
            if self.client_ca_file
            else None
        )
        return grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
        )

    def ssl_context(self) -> ssl.SSLContext:
        """The same for the HTTP server (aiohttp)."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file)
            if self.client_ca_file is not None:
                ctx.load_verify_locations(self.client_ca_file)
                ctx.verify_mode = ssl.CERT_REQUIRED
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load the TLS certificate or key: {exc}") from None
        return ctx


def certificate_identity(pem: bytes) -> str:
    """Who a certificate names: its URI SAN (a SPIFFE ID), else DNS SAN, else the CN."""
    cert = x509.load_pem_x509_certificate(pem)
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        san = None
    if isinstance(san, x509.SubjectAlternativeName):
        for kind in (x509.UniformResourceIdentifier, x509.DNSName):
            names = san.get_values_for_type(kind)
            if names:
                return str(names[0])
    common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(common[0].value) if common else ""


def der_to_pem(der: bytes) -> bytes:
    """aiohttp hands over the peer certificate in DER."""
    return ssl.DER_cert_to_PEM_cert(der).encode()
