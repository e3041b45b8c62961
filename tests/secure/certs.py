"""Certificates for the SASL_SSL and mutual-TLS tests, made with ``cryptography``: a CA, the
broker's certificate (for 127.0.0.1 and localhost), a client certificate, and a second CA that
nobody trusts."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pem:
    cert: Path
    key: Path

    @property
    def combined(self) -> Path:
        """Key then certificate in one file (a Java PEM keystore)."""
        return self.cert.with_suffix(".keystore.pem")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(folder: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Pem:
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pem = Pem(folder / f"{stem}.crt", folder / f"{stem}.key")
    pem.cert.write_bytes(cert_pem)
    pem.key.write_bytes(key_pem)
    pem.combined.write_bytes(key_pem + cert_pem)
    return pem


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    signer_name = issuer[0].subject if issuer else _name(subject)
    signer_key = issuer[1] if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(signer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is not None:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(signer_key, hashes.SHA256())


@dataclass(frozen=True)
class Certificates:
    ca: Pem
    server: Pem
    client: Pem
    rogue_ca: Pem
    """A CA nobody trusts."""
    rogue_client: Pem
    """A client certificate signed by the rogue CA."""


def make_certificates(folder: Path) -> Certificates:
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for prefix in ("", "rogue-"):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _certificate(f"{prefix}clickstream test CA", ca_key, None)
        made[f"{prefix}ca"] = _write(folder, f"{prefix}ca", ca, ca_key)
        for who, server in (("server", True), ("client", False)):
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _certificate(f"{prefix}{who}", key, (ca, ca_key), server=server)
            made[f"{prefix}{who}"] = _write(folder, f"{prefix}{who}", cert, key)
    return Certificates(
        ca=made["ca"],
        server=made["server"],
        client=made["client"],
        rogue_ca=made["rogue-ca"],
        rogue_client=made["rogue-client"],
    )


def pkcs12_keystore(pem: Pem, path: Path, password: str) -> Path:
    """``pem``'s key and certificate as a PKCS12 keystore (a Java server's), with the legacy
    algorithms every JDK reads."""
    cert = x509.load_pem_x509_certificate(pem.cert.read_bytes())
    key = serialization.load_pem_private_key(pem.key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(50_000)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())
        .build(password.encode())
    )
    path.write_bytes(pkcs12.serialize_key_and_certificates(b"server", key, cert, None, encryption))
    return path
