"""A private PostgreSQL server for tests and benches: a temporary directory, a free loopback port.

``private_server()`` starts one and stops it after; ``postgres`` (a session
fixture) is that server for the tests and benches. Without
PostgreSQL on the machine (``initdb``/``pg_ctl`` on the PATH or in
``pg_config --bindir``) or psycopg, the tests that use it are skipped with
the reason -- unless ``PERFSDK_REQUIRE_POSTGRES=1`` (``.ci/run`` sets it),
where that is a failure. PostgreSQL refuses to run as root: as root, the
server runs as the ``postgres`` user.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest


def _bindir() -> Path | None:
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return Path(out) if (Path(out) / "initdb").exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Unavailable(Exception):
    """PostgreSQL or psycopg is not installed."""


class Server:
    """A running server: ``dsn``, and ``run`` for its client tools."""

    def __init__(self, bindir: Path, root: Path, port: int, as_user: list[str]) -> None:
        self.bindir, self.root, self.port, self.as_user = bindir, root, port, as_user
        self.dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"

    def run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_user, str(self.bindir / tool), *args], check=True, capture_output=True,
                       text=True, cwd="/")


@contextmanager
def private_server() -> Iterator[Server]:
    """Start a server in a temporary directory on a free loopback port; stop and remove it after.
    Raises ``Unavailable`` when PostgreSQL or psycopg is not installed."""
    bindir = _bindir()
    if bindir is None:
        raise Unavailable("initdb and pg_ctl are not installed (Debian: apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise Unavailable("psycopg is not installed") from None
    root = Path(tempfile.mkdtemp(prefix="perfsdk-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    server = Server(bindir, root, _free_port(), as_user)
    data = root / "data"
    try:
        server.run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
        server.run("pg_ctl", "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60", "-o",
                   f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200 "
                   "-c fsync=off -c synchronous_commit=off", "start")
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL: {exc.stderr or exc}") from None
    try:
        yield server
    finally:
        try:
            server.run("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Server]:
    try:
        with private_server() as server:
            yield server
    except Unavailable as missing:
        if os.environ.get("PERFSDK_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required here (PERFSDK_REQUIRE_POSTGRES=1) but {missing}")
        pytest.skip(f"needs PostgreSQL: {missing}")
