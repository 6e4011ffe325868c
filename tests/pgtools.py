"""The local PostgreSQL server for tests: is it there, a fresh schema per test, restarting it.

Tests that need it skip (with the reason) when no server answers at 127.0.0.1:5432; in CI it runs.
A test that restarts it leaves it running (``restart_postgres`` waits until it accepts connections).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}


def pg_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
    except OSError:
        return False
    try:
        import psycopg

        with psycopg.connect(**PG, connect_timeout=3):
            return True
    except Exception:
        return False


@contextlib.contextmanager
def pg_schema(prefix: str = "t_"):
    """A fresh PostgreSQL schema; yields the ledger URL; drops it afterwards."""
    import psycopg

    name = prefix + uuid.uuid4().hex[:12]
    with psycopg.connect(**PG, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/test?schema={name}"
    finally:
        wait_for_postgres()
        with psycopg.connect(**PG, autocommit=True) as c:
            c.execute(f"DROP SCHEMA {name} CASCADE")


def _cluster() -> tuple[str, str]:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    return (versions[-1] if versions else "15"), "main"


def can_restart_postgres() -> str | None:
    """None when this process can restart the local server, else why not."""
    if shutil.which("pg_ctlcluster") is None:
        return "pg_ctlcluster is not installed (the server is not a Debian cluster this test can restart)"
    if os.geteuid() != 0:
        return "restarting the PostgreSQL server needs root (pg_ctlcluster)"
    return None


def restart_postgres(down_s: float = 0.0) -> None:
    """Restart the local server (fast mode: open connections are terminated, as an administrator's
    restart does); with ``down_s``, stop it, wait that long, start it. Returns once it accepts
    connections again."""
    version, name = _cluster()
    base = ["pg_ctlcluster", "--skip-systemctl-redirect", "-m", "fast", version, name]
    if down_s > 0:
        subprocess.run([*base, "stop"], check=True, capture_output=True, timeout=120)
        time.sleep(down_s)
        subprocess.run([*base[:2], version, name, "start"], check=True, capture_output=True, timeout=120)
    else:
        subprocess.run([*base, "restart"], check=True, capture_output=True, timeout=120)
    wait_for_postgres()


def wait_for_postgres(timeout: float = 120.0) -> None:
    t_end = time.time() + timeout
    while time.time() < t_end:
        if pg_available():
            return
        with contextlib.suppress(Exception):
            version, name = _cluster()
            if shutil.which("pg_ctlcluster") and os.geteuid() == 0 and time.time() > t_end - timeout + 20:
                subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "start"],
                               capture_output=True, timeout=60)
        time.sleep(0.3)
    raise RuntimeError("the PostgreSQL server did not come back within 120 s")
