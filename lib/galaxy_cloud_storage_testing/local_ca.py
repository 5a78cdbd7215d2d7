"""A certificate authority of its own for HTTPS servers on 127.0.0.1 (tests and demo).

MSAL and azure-identity accept only an https authority, and Azurite takes bearer tokens only over
HTTPS: the local token server and Azurite get a certificate for 127.0.0.1 and localhost signed by
this CA, and the plugin trusts it the way an on-premise admin would, through ``ca_bundle``.
"""

import datetime
import ipaddress
import os
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=30)


class LocalCertificates(NamedTuple):
    ca: str  # the CA certificate (PEM): what clients trust
    cert: str  # the server certificate for 127.0.0.1 and localhost (PEM)
    key: str  # the server certificate's private key (PEM, unencrypted, owner-only)


def local_certificates(directory: str) -> LocalCertificates:
    """The CA and server certificate in ``directory``, made there first if missing or expiring
    within a day."""
    os.makedirs(directory, exist_ok=True)
    paths = LocalCertificates(*(os.path.join(directory, name) for name in ("ca.pem", "cert.pem", "key.pem")))
    if not all(os.path.exists(p) for p in paths) or _expires_soon(paths.cert):
        _make(paths)
    return paths


def _expires_soon(cert_path: str) -> bool:
    with open(cert_path, "rb") as fh:
        cert = x509.load_pem_x509_certificate(fh.read())
    return cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc) < datetime.timedelta(days=1)


def _make(paths: LocalCertificates) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "galaxy-cloud-storage local test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    # The CA's own key is not kept: nothing else is ever signed with it.
    _write(
        paths.key,
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        0o600,
    )
    _write(paths.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(paths.ca, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _write(path: str, data: bytes, mode: int) -> None:
    temporary = f"{path}.tmp"
    with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as fh:
        fh.write(data)
    os.replace(temporary, path)


if __name__ == "__main__":
    import sys

    print("\n".join(local_certificates(sys.argv[1] if len(sys.argv) > 1 else ".")))
