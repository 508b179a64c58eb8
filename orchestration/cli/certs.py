"""`tradeloop certs`: a self-signed TLS certificate and key for a lab gateway (TRADELOOP_TLS_CERT_FILE /
TRADELOOP_TLS_KEY_FILE). For anything exposed beyond a lab, use a certificate from a real CA."""

from __future__ import annotations

import ipaddress
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click


def make_self_signed(cert_path: Path, key_path: Path, hosts: list[str], days: int = 365) -> None:
    """An EC P-256 key (owner-only file) and a certificate for ``hosts`` (DNS names or IP addresses)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tradeloop lab")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    key_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@click.command("certs")
@click.option("--host", "hosts", multiple=True, help="Name or address the gateway is reached at (repeatable; "
                                                     "default: localhost and 127.0.0.1).")
@click.option("--days", default=365, show_default=True, type=click.IntRange(1, 3650), help="Validity.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Directory of gateway.crt and gateway.key (default: <home>/tls).")
@click.option("--force", is_flag=True, help="Replace an existing pair.")
def certs(hosts: tuple[str, ...], days: int, out_dir: Path | None, force: bool) -> None:
    """Generate a self-signed certificate and key for the gateway (a lab's TLS)."""
    from deploy.settings import get_settings

    out_dir = out_dir or get_settings().home / "tls"
    cert_path, key_path = out_dir / "gateway.crt", out_dir / "gateway.key"
    if (cert_path.exists() or key_path.exists()) and not force:
        raise click.ClickException(f"{cert_path} or {key_path} exists (--force replaces them)")
    make_self_signed(cert_path, key_path, list(hosts) or ["localhost", "127.0.0.1"], days)
    click.echo(f"certificate {cert_path}\nkey         {key_path} (owner-only)")
    click.echo(f"use: TRADELOOP_TLS_CERT_FILE={cert_path} TRADELOOP_TLS_KEY_FILE={key_path}")
