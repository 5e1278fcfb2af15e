"""A throw-away certificate authority for etcd over TLS: the tests, scripts/gen_certs.py, trying it out.

Issues a CA, a server certificate for ``localhost``/``127.0.0.1`` (plus any names given) and
client certificates whose common name etcd can map to a user (``--client-cert-auth``). Uses
``cryptography`` (the ``tls`` extra, also part of ``test``): import this module only where
certificates are made.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    """CN, plus O attributes: the Kubernetes API server reads a client certificate's O as its groups."""
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
                     + [x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> CertFiles:
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return CertFiles(cert_path, key_path)


class LocalCA:
    """A CA in ``directory`` (``ca.crt``/``ca.key``): a new one, or with :meth:`load` the one already there."""

    def __init__(self, directory: Path, name: str = "dapr-etcd-resolver test CA", *, _existing: bool = False) -> None:
        self.directory = directory
        if _existing:
            self.files = CertFiles(directory / "ca.crt", directory / "ca.key")
            self._cert = x509.load_pem_x509_certificate(self.files.cert.read_bytes())
            key = serialization.load_pem_private_key(self.files.key.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{self.files.key} is not an EC private key (not made by this tool)")
            self._key = key
            return
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self._cert = (
            x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.files = _write(directory, "ca", self._cert, self._key)

    @classmethod
    def load(cls, directory: Path) -> LocalCA:
        """The CA already in ``directory`` (to issue more certificates without replacing it)."""
        return cls(directory, _existing=True)

    @staticmethod
    def exists(directory: Path) -> bool:
        return (directory / "ca.crt").exists() or (directory / "ca.key").exists()

    def issue(self, common_name: str, *, server_names: tuple[str, ...] = (), client: bool = True,
              organizations: tuple[str, ...] = ()) -> CertFiles:
        """A leaf certificate; with ``server_names`` it also serves TLS for those names/IPs."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        builder = (
            x509.CertificateBuilder().subject_name(_name(common_name, organizations)).issuer_name(self._cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server_names:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
            alternatives: list[x509.GeneralName] = []
            for name in server_names:
                try:
                    alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
                except ValueError:
                    alternatives.append(x509.DNSName(name))
            builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        return _write(self.directory, common_name.replace(":", "-"), builder.sign(self._key, hashes.SHA256()), key)

    def server(self, *names: str) -> CertFiles:
        return self.issue("etcd-server", server_names=("localhost", "127.0.0.1", *names))
