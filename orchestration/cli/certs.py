"""`tradeloop certs`: a self-signed certificate and key for a lab (deploy/certs.py)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of gateway.crt and gateway.key, PEM (default: <home>/tls).")
@click.option("--host", "hosts", multiple=True,
              help="A name or IP address clients use to reach the service (repeatable; default: localhost, "
                   "127.0.0.1, ::1).")
@click.option("--days", default=365, show_default=True, type=int, help="Validity in days (at most 825).")
@click.option("--force", is_flag=True, help="Replace an existing pair.")
def certs(out_dir: Path | None, hosts: tuple[str, ...], days: int, force: bool) -> None:
    """Generate a self-signed TLS certificate and key (key file mode 0600) for exposing the gateway in a lab.
    Clients must be told to trust gateway.crt; beyond a lab, use a certificate from your own CA."""
    from deploy.certs import DEFAULT_HOSTS, CertError, generate
    from deploy.settings import get_settings

    out_dir = out_dir or get_settings().home / "tls"
    try:
        pair = generate(out_dir, hosts or DEFAULT_HOSTS, days, force)
    except (CertError, OSError) as exc:
        raise click.ClickException(f"certs: {exc}") from None
    click.echo(f"certificate  {pair.cert_file}  (valid until {pair.not_after:%Y-%m-%d}, for {', '.join(pair.hosts)})")
    click.echo(f"key          {pair.key_file}  (mode 0600)")
    click.echo(f"sha256       {pair.fingerprint_sha256}")
    click.echo("use it:")
    click.echo(f"  TRADELOOP_TLS_CERT_FILE={pair.cert_file}")
    click.echo(f"  TRADELOOP_TLS_KEY_FILE={pair.key_file}")
