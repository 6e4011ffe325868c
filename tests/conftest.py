"""Shared fixtures: real SQLite ledgers in tmp dirs, real PostgreSQL schemas when the server runs."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

PG_DSN = dict(host=os.environ.get("ARLEDGER_TEST_PGHOST", "127.0.0.1"),
              port=int(os.environ.get("ARLEDGER_TEST_PGPORT", "5432")),
              user=os.environ.get("ARLEDGER_TEST_PGUSER", "postgres"),
              dbname=os.environ.get("ARLEDGER_TEST_PGDB", "test"))


def _pg_reason() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'arledger[postgres]')"
    try:
        with psycopg.connect(connect_timeout=3, **PG_DSN) as c:
            c.execute("SELECT 1")
    except Exception as e:  # noqa: BLE001
        return f"PostgreSQL not reachable at {PG_DSN['host']}:{PG_DSN['port']}/{PG_DSN['dbname']} ({str(e).strip()[:80]})"
    return None


PG_SKIP = _pg_reason()
if PG_SKIP and os.environ.get("CI") and os.environ.get("ARLEDGER_REQUIRE_PG", "1") == "1":
    # in CI the server is part of the machine: a missing server is a failure, not a skip
    raise RuntimeError(f"CI run but {PG_SKIP}")


@pytest.fixture(autouse=True)
def _arledger_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Actor keys and the ledger key of PostgreSQL and memory ledgers live under $ARLEDGER_HOME
    (else ~/.arledger): one fresh home per test, inherited by the processes it starts."""
    monkeypatch.setenv("ARLEDGER_HOME", str(tmp_path_factory.mktemp("arledger-home")))


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema for one test, dropped afterwards."""
    if PG_SKIP:
        pytest.skip(PG_SKIP)
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(autocommit=True, **PG_DSN) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    yield f"postgresql://{PG_DSN['user']}@{PG_DSN['host']}:{PG_DSN['port']}/{PG_DSN['dbname']}?schema={schema}"
    with psycopg.connect(autocommit=True, **PG_DSN) as c:
        c.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:{tmp_path}/.arledger/ledger.db"


@pytest.fixture(params=["sqlite", "postgres"])
def any_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:{tmp_path}/.arledger/ledger.db"
    else:
        yield request.getfixturevalue("pg_url")
