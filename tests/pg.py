"""A real PostgreSQL server for tests: initdb in a temporary folder, started on 127.0.0.1, stopped at teardown.

    server = start_postgres()          # raises PostgresUnavailable with what to install
    with server.connect() as conn: ...
    server.jdbc_url, server.user, server.password, server.port, server.dbname
    server.stop()

The server binaries come from Debian's ``postgresql`` package
(/usr/lib/postgresql/<version>/bin). When they are missing and we are root,
they are installed with apt-get; otherwise the error names the package.
``initdb`` refuses to run as root, so as root the cluster is created and run
by the ``postgres`` user. TCP connections need the password (scram-sha-256),
so tests exercise passing it; the Unix socket in the temporary folder trusts
the owner.

``jdbc_jar()`` is the PostgreSQL JDBC driver for Spark's ``spark.jars``.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

SERVER_PACKAGE = "postgresql"
JDBC_PACKAGE = "libpostgresql-jdbc-java"
JDBC_JAR = "/usr/share/java/postgresql.jar"
SERVER_USER = "postgres"


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server (or its JDBC driver) is not installed and could not be installed."""


def _is_root() -> bool:
    return os.geteuid() == 0


def _apt_install(package: str) -> None:
    """apt-get install ``package`` (root only); an ``apt-get update`` first if the plain install fails."""
    if not _is_root() or shutil.which("apt-get") is None:
        raise PostgresUnavailable(f"Debian package {package} is not installed; install it with "
                                  f"`apt-get install -y {package}` (as root)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", package]
    if subprocess.run(cmd, env=env, capture_output=True).returncode == 0:
        return
    subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise PostgresUnavailable(f"`apt-get install -y {package}` failed: {done.stderr.strip()[-500:]}; "
                                  f"install Debian package {package} by hand")


def find_bin_dir() -> str | None:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb and pg_ctl, or None."""
    candidates = [d for d in glob.glob("/usr/lib/postgresql/*/bin")
                  if os.path.exists(os.path.join(d, "initdb")) and os.path.exists(os.path.join(d, "pg_ctl"))]
    candidates.sort(key=lambda d: int(d.split("/")[-2]) if d.split("/")[-2].isdigit() else 0)
    return candidates[-1] if candidates else None


def server_bin_dir() -> str:
    """The server binaries' folder, installing Debian's ``postgresql`` package if needed."""
    found = find_bin_dir()
    if found is None:
        _apt_install(SERVER_PACKAGE)
        found = find_bin_dir()
    if found is None:
        raise PostgresUnavailable(f"no /usr/lib/postgresql/*/bin/initdb even after installing {SERVER_PACKAGE}")
    return found


def jdbc_jar() -> str:
    """/usr/share/java/postgresql.jar (Debian's libpostgresql-jdbc-java), installing it if needed."""
    if not os.path.exists(JDBC_JAR):
        _apt_install(JDBC_PACKAGE)
    if not os.path.exists(JDBC_JAR):
        raise PostgresUnavailable(f"{JDBC_JAR} is missing even after installing {JDBC_PACKAGE}")
    return JDBC_JAR


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    """A running server; ``dbname`` is a database created for the tests."""

    bin_dir: str
    base: str
    port: int
    password: str
    user: str = SERVER_USER
    host: str = "127.0.0.1"
    dbname: str = "recon_test"
    _stopped: bool = field(default=False, repr=False)

    @property
    def data_dir(self) -> str:
        return os.path.join(self.base, "data")

    @property
    def socket_dir(self) -> str:
        return os.path.join(self.base, "sock")

    @property
    def log_file(self) -> str:
        return os.path.join(self.base, "server.log")

    @property
    def jdbc_url(self) -> str:
        return self.jdbc_url_for(self.dbname)

    def jdbc_url_for(self, dbname: str) -> str:
        return f"jdbc:postgresql://{self.host}:{self.port}/{dbname}"

    def conninfo(self, dbname: str | None = None) -> str:
        """libpq connection string without the password (pass it separately)."""
        return f"host={self.host} port={self.port} dbname={dbname or self.dbname} user={self.user}"

    def connect(self, dbname: str | None = None, **kwargs):
        """A psycopg (v3) connection over TCP with the password."""
        import psycopg

        return psycopg.connect(self.conninfo(dbname), password=self.password, connect_timeout=10, **kwargs)

    def create_database(self, name: str) -> str:
        with self.connect("postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with self.connect("postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            _run_as_owner([os.path.join(self.bin_dir, "pg_ctl"), "-D", self.data_dir, "-m", "fast", "-w", "-t", "30",
                           "stop"], check=False)
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def _run_as_owner(cmd: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
    """Run a server command as ``postgres`` when we are root (initdb and postgres refuse root)."""
    if _is_root():
        cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        raise PostgresUnavailable(f"{' '.join(cmd)} failed ({done.returncode}): "
                                  f"{(done.stderr or done.stdout).strip()[-1500:]}")
    return done


def start_postgres(dbname: str = "recon_test") -> PostgresServer:
    """initdb + pg_ctl start on 127.0.0.1 at a free port; creates ``dbname``. Call ``stop()`` when done."""
    bin_dir = server_bin_dir()
    if _is_root():
        try:
            import pwd

            owner = pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise PostgresUnavailable(f"user {SERVER_USER!r} does not exist; installing Debian package "
                                      f"{SERVER_PACKAGE} creates it") from None
    base = tempfile.mkdtemp(prefix="recon-pg-")
    password = secrets.token_urlsafe(18)
    try:
        os.makedirs(os.path.join(base, "sock"))
        pwfile = os.path.join(base, "pwfile")
        with open(pwfile, "w", encoding="utf-8") as fh:
            fh.write(password + "\n")
        os.chmod(pwfile, 0o600)
        if _is_root():
            for path in (base, os.path.join(base, "sock"), pwfile):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        server = PostgresServer(bin_dir=bin_dir, base=base, port=0, password=password, dbname=dbname)
        _run_as_owner([os.path.join(bin_dir, "initdb"), "-D", server.data_dir, "-U", SERVER_USER,
                       f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                       "--locale=C", "--no-sync"])
        os.remove(pwfile)
        last_error = None
        for _ in range(3):  # another process may grab the free port before the server binds it
            server.port = free_port()
            opts = (f"-p {server.port} -k {server.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                    f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=40")
            done = _run_as_owner([os.path.join(bin_dir, "pg_ctl"), "-D", server.data_dir, "-l", server.log_file,
                                  "-w", "-t", "60", "-o", opts, "start"], check=False)
            if done.returncode == 0:
                break
            last_error = _tail(server.log_file) or done.stderr
            time.sleep(0.5)
        else:
            raise PostgresUnavailable(f"pg_ctl start failed: {last_error}")
        try:
            server.create_database(dbname)
        except Exception:
            server.stop()
            raise
        return server
    except BaseException:
        if os.path.exists(os.path.join(base, "data", "postmaster.pid")):
            _run_as_owner([os.path.join(bin_dir, "pg_ctl"), "-D", os.path.join(base, "data"), "-m", "immediate",
                           "stop"], check=False)
        shutil.rmtree(base, ignore_errors=True)
        raise


def _tail(path: str, chars: int = 1500) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()[-chars:]
    except OSError:
        return ""
