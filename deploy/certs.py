"""A self-signed TLS certificate and key for a lab (`tradeloop certs`): what the gateway serves HTTPS with when
tls_cert_file / tls_key_file are set. For anything beyond a lab, use a certificate from your own CA.

ECDSA P-256 (small, fast, accepted by every TLS 1.2/1.3 client); the names asked for are subjectAltNames (DNS
names, or IP addresses when they parse as such); the key file is created owner-only (0600) before a byte of it
is written.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
CERT_NAME, KEY_NAME = "gateway.crt", "gateway.key"  # PEM both
MAX_DAYS = 825  # the longest validity browsers accept for a server certificate


class CertError(ValueError):
    """One line for the user."""


@dataclass(frozen=True)
class CertPair:
    cert_file: Path
    key_file: Path
    fingerprint_sha256: str
    not_after: datetime
    hosts: tuple[str, ...]


def _san(host: str):
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    name = host.strip().lower().rstrip(".")
    labels = name.removeprefix("*.").split(".")
    if not name or not all(label and len(label) <= 63 and all(c.isalnum() or c == "-" for c in label)
                           and not label.startswith("-") and not label.endswith("-") for label in labels):
        raise CertError(f"--host {host!r} is neither an IP address nor a DNS name")
    return x509.DNSName(name)


def generate(out_dir: Path, hosts: tuple[str, ...] = DEFAULT_HOSTS, days: int = 365, force: bool = False,
             now: datetime | None = None) -> CertPair:
    """Write ``gateway.crt`` and ``gateway.key`` into ``out_dir``; refuses to replace an existing pair unless
    ``force``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if not 1 <= days <= MAX_DAYS:
        raise CertError(f"--days {days}: must be between 1 and {MAX_DAYS}")
    hosts = tuple(dict.fromkeys(h.strip() for h in hosts if h.strip()))
    if not hosts:
        raise CertError("at least one --host is needed")
    names = [_san(h) for h in hosts]
    out_dir = Path(out_dir)
    cert_file, key_file = out_dir / CERT_NAME, out_dir / KEY_NAME
    existing = [p for p in (cert_file, key_file) if p.exists()]
    if existing and not force:
        raise CertError(f"{existing[0]} exists (--force replaces the pair)")

    key = ec.generate_private_key(ec.SECP256R1())
    now = now or datetime.now(timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0][:64]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tradeloop lab (self-signed)")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))  # a client whose clock is a little behind
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    _write(key_file, key_pem, 0o600)
    _write(cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return CertPair(cert_file, key_file, cert.fingerprint(hashes.SHA256()).hex(":").upper(),
                    cert.not_valid_after_utc, hosts)


def _write(path: Path, data: bytes, mode: int) -> None:
    # a temporary file with its final mode from creation, then renamed over: never a moment world-readable
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)  # the umask may have taken bits off the cert's 0644
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
