"""`tradeloop certs`: a self-signed pair that a real TLS server and client accept, for the names asked for."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import threading

from click.testing import CliRunner
from cryptography import x509

from orchestration.cli.certs import certs


def _handshake(cert_file, key_file, server_name: str) -> str:
    """A TLS handshake over loopback: the server loads the pair, the client trusts only the certificate and checks the
    name. Returns the negotiated protocol."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_file, key_file)
    client_ctx = ssl.create_default_context(cafile=str(cert_file))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    errors = []

    def serve():
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok")
        except Exception as exc:  # noqa: BLE001 - reported by the client's assertion
            errors.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                client_ctx.wrap_socket(raw, server_hostname=server_name) as tls:
            assert tls.recv(2) == b"ok"
            return tls.version()
    finally:
        thread.join(5)
        listener.close()


def test_the_pair_loads_and_carries_the_names_asked_for(tmp_path):
    out = tmp_path / "tls"
    result = CliRunner().invoke(certs, ["--out", str(out), "--host", "gw.lab.internal", "--host", "10.1.2.3",
                                        "--days", "30"])
    assert result.exit_code == 0, result.output
    cert_file, key_file = out / "gateway.crt", out / "gateway.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert f"TRADELOOP_TLS_CERT_FILE={cert_file}" in result.output and "PRIVATE KEY" not in result.output
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_file, key_file)

    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["gw.lab.internal"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.1.2.3")]
    assert 29 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 30
    assert _handshake(cert_file, key_file, "gw.lab.internal") in ("TLSv1.2", "TLSv1.3")


def test_defaults_serve_localhost_and_a_wrong_name_is_refused(tmp_path):
    assert CliRunner().invoke(certs, ["--out", str(tmp_path)]).exit_code == 0
    assert _handshake(tmp_path / "gateway.crt", tmp_path / "gateway.key", "localhost")
    try:
        _handshake(tmp_path / "gateway.crt", tmp_path / "gateway.key", "elsewhere.example")
    except ssl.SSLCertVerificationError as exc:
        assert "Hostname mismatch" in str(exc) or "doesn't match" in str(exc)
    else:
        raise AssertionError("a certificate for localhost was accepted for elsewhere.example")


def test_bad_input_is_one_line_and_an_existing_pair_is_kept(tmp_path):
    runner = CliRunner()
    assert runner.invoke(certs, ["--out", str(tmp_path)]).exit_code == 0
    before = (tmp_path / "gateway.key").read_bytes()
    for args, message in ((["--out", str(tmp_path)], "exists (--force replaces the pair)"),
                          (["--out", str(tmp_path / "x"), "--days", "0"], "--days 0: must be between 1 and 825"),
                          (["--out", str(tmp_path / "x"), "--host", "not a name!"], "neither an IP address nor")):
        result = runner.invoke(certs, args)
        assert result.exit_code == 1 and message in result.output and len(result.output.strip().splitlines()) == 1
    assert (tmp_path / "gateway.key").read_bytes() == before
    assert runner.invoke(certs, ["--out", str(tmp_path), "--force"]).exit_code == 0
    assert (tmp_path / "gateway.key").read_bytes() != before
