"""Helpers for ledger tests: populate a real ledger, and tamper with its raw storage."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

from ledger.aggregates import Campaign, Trial
from ledger.app import Ledger
from ledger.audit import init_ledger, make_checkpoint
from ledger.merkle import Frontier


def populate(url: str, tmp: Path, trials: int = 12) -> tuple[Ledger, Path]:
    """An initialised ledger with a campaign (its baseline snapshot an artifact), trials with diff
    artifacts, and an external checkpoint. The ledger key is ``tmp/signing.key`` (not where a new
    process would look for it)."""
    led, _kp, _ = init_ledger(url, tmp / "signing.key")
    base = led.artifacts.put('{"train.py": "LR = 0.001\\n"}')
    c = Campaign.open(name="demo", actor="human:test", task="golf-mini", task_version="1", task_sha="ab" * 32,
                      metric="val_bpb", direction="min", baseline_sha=base, baseline_tree="cd" * 32)
    led.save(c)
    for n in range(trials):
        diff = f"--- a/train.py\n+++ b/train.py\n@@ -1 +1 @@\n-LR = 0.001\n+LR = 0.00{n + 2}\n"
        t = Trial.propose(c.id, n, actor="agent:opt", specialist="opt", surface="opt", hypothesis=f"raise LR #{n}",
                          diff_sha=led.artifacts.put(diff), diff_bytes=len(diff))
        c.register(t.id, n, "opt", "proposal", "agent:opt")
        led.save(c, t)
    cp_dir = tmp / "held-elsewhere"
    cp_dir.mkdir(exist_ok=True)
    _cp, path = make_checkpoint(led, tmp / "signing.key", write_to=cp_dir)
    assert path is not None
    return led, path


class RawDB:
    """Direct access to the tables behind a ledger, as an attacker with file/database access has."""

    def __init__(self, led: Ledger):
        self.led = led
        self.kind = led.cfg.kind
        if self.kind == "sqlite":
            self.conn = sqlite3.connect(str(led.cfg.path), isolation_level=None)
            self.events, self.nid, self.p = "stored_events", "rowid", "?"
            self.leaves, self.tree, self.sigs = "arledger_leaves", "arledger_tree", "arledger_signatures"
        else:
            import psycopg

            c = led.cfg
            self.conn = psycopg.connect(host=c.host, port=c.port, user=c.user, dbname=c.dbname, autocommit=True)
            s = f'"{c.schema}"'
            self.events, self.nid, self.p = f"{s}.arledger_events", "notification_id", "%s"
            self.leaves, self.tree, self.sigs = f"{s}.arledger_leaves", f"{s}.arledger_tree", f"{s}.arledger_signatures"

    def q(self, sql: str, params: tuple = ()) -> list[tuple]:
        cur = self.conn.execute(sql.replace("?", self.p), params)
        try:
            return list(cur.fetchall())
        except Exception:  # noqa: BLE001
            return []

    def rows(self) -> list[tuple]:
        return [(r[0], r[1], r[2], r[3], bytes(r[4])) for r in self.q(
            f"SELECT {self.nid}, originator_id, originator_version, topic, state FROM {self.events} ORDER BY {self.nid}")]

    def flip_byte(self, index: int, byte: int = 5) -> int:
        nid, *_rest, state = self.rows()[index]
        b = bytearray(state)
        b[min(byte, len(b) - 1)] ^= 0x01
        self.q(f"UPDATE {self.events} SET state = ? WHERE {self.nid} = ?", (bytes(b), nid))
        return nid

    def alter_event_column(self, index: int, column: str) -> None:
        """Change one column of the row at ``index`` as a database user could: another originator id,
        or a topic with one byte flipped (on SQLite no longer valid UTF-8)."""
        nid = self.rows()[index][0]
        if column == "originator_id":
            new = str(uuid.uuid4()) if self.kind == "postgres" else uuid.uuid4().hex
            self.q(f"UPDATE {self.events} SET originator_id = ? WHERE {self.nid} = ?", (new, nid))
        elif column == "topic":
            if self.kind == "sqlite":
                (t,) = self.conn.execute("SELECT CAST(topic AS BLOB) FROM stored_events WHERE rowid = ?", (nid,)).fetchone()
                b = bytearray(t)
                b[3] ^= 0x80
                self.q("UPDATE stored_events SET topic = CAST(? AS TEXT) WHERE rowid = ?", (bytes(b), nid))
            else:
                self.q(f"UPDATE {self.events} SET topic = replace(topic, 'arledger', 'arledgeR') WHERE {self.nid} = ?",
                       (nid,))
        else:
            raise ValueError(column)

    def set_event_value(self, index: int, column: str, value: object) -> None:
        nid = self.rows()[index][0]
        self.q(f"UPDATE {self.events} SET {column} = ? WHERE {self.nid} = ?", (value, nid))

    def flip_leaf(self, position: int) -> None:
        (leaf,) = self.q(f"SELECT leaf FROM {self.leaves} WHERE position = ?", (position,))[0]
        b = bytearray(bytes(leaf))
        b[0] ^= 0x01
        self.q(f"UPDATE {self.leaves} SET leaf = ? WHERE position = ?", (bytes(b), position))

    def flip_signature(self, position: int, column: str) -> None:
        (v,) = self.q(f"SELECT {column} FROM {self.sigs} WHERE position = ?", (position,))[0]
        b = bytearray(bytes(v))
        b[len(b) // 2] ^= 0x01
        self.q(f"UPDATE {self.sigs} SET {column} = ? WHERE position = ?", (bytes(b), position))

    def append_sealed(self, oid: uuid.UUID, version: int, topic: str, state: bytes) -> int:
        """Append an event row and seal it in the Merkle log (leaf and tree head), bypassing arledger:
        what someone with write access to the database can do. Returns its position."""
        from ledger.codec import leaf_data
        from ledger.merkle import leaf_hash

        o = str(oid) if self.kind == "postgres" else oid.hex
        if self.kind == "sqlite":
            cur = self.conn.execute("INSERT INTO stored_events (originator_id, originator_version, topic, state) "
                                    "VALUES (?, ?, ?, ?)", (o, version, topic, state))
            nid = cur.lastrowid
        else:
            nid = self.conn.execute(f"INSERT INTO {self.events} (originator_id, originator_version, topic, state) "
                                    "VALUES (%s, %s, %s, %s) RETURNING notification_id", (o, version, topic, state)
                                    ).fetchone()[0]
        (frontier,) = self.q(f"SELECT frontier FROM {self.tree} WHERE id = 1")[0]
        fr = Frontier.from_bytes(bytes(frontier))
        pos = fr.size
        leaf = leaf_hash(leaf_data(pos, oid, version, topic, state))
        fr.append(leaf)
        self.q(f"INSERT INTO {self.leaves} (position, notification_id, leaf) VALUES (?, ?, ?)", (pos, nid, leaf))
        self.q(f"UPDATE {self.tree} SET size = ?, frontier = ? WHERE id = 1", (fr.size, fr.to_bytes()))
        return pos

    def delete(self, index: int) -> int:
        nid = self.rows()[index][0]
        self.q(f"DELETE FROM {self.events} WHERE {self.nid} = ?", (nid,))
        return nid

    def swap(self, i: int, j: int) -> None:
        rows = self.rows()
        a, b = rows[i], rows[j]
        tmp = str(uuid.uuid4()) if self.kind == "postgres" else uuid.uuid4().hex
        up = f"UPDATE {self.events} SET originator_id = ?, originator_version = ?, topic = ?, state = ? WHERE {self.nid} = ?"
        self.q(up, (tmp, 0, "x", b"", a[0]))
        self.q(up, (a[1], a[2], a[3], a[4], b[0]))
        self.q(up, (b[1], b[2], b[3], b[4], a[0]))

    def insert(self, oid: uuid.UUID, version: int, topic: str, state: bytes) -> None:
        o = str(oid) if self.kind == "postgres" else oid.hex
        self.q(f"INSERT INTO {self.events} (originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?)",
               (o, version, topic, state))

    def truncate(self, k: int) -> int:
        """Remove the last k events, their leaves, and rewrite the tree head to match (a careful attacker)."""
        rows = self.rows()
        for r in rows[-k:]:
            self.q(f"DELETE FROM {self.events} WHERE {self.nid} = ?", (r[0],))
        keep = len(rows) - k
        self.q(f"DELETE FROM {self.leaves} WHERE position >= ?", (keep,))
        leaves = [bytes(r[0]) for r in self.q(f"SELECT leaf FROM {self.leaves} ORDER BY position")]
        fr = Frontier()
        for leaf in leaves:
            fr.append(leaf)
        self.q(f"UPDATE {self.tree} SET size = ?, frontier = ? WHERE id = 1", (fr.size, fr.to_bytes()))
        return keep

    def close(self) -> None:
        self.conn.close()


def replace_artifact(led: Ledger, sha: str, data: bytes) -> None:
    import zstandard

    blob = zstandard.ZstdCompressor().compress(data)
    if led.cfg.kind == "sqlite":
        led.artifacts.path(sha).write_bytes(blob)  # type: ignore[attr-defined]
    else:
        raw = RawDB(led)
        raw.q(f'UPDATE "{led.cfg.schema}".arledger_artifacts SET data = ? WHERE sha = ?', (blob, sha))
        raw.close()


def delete_artifact(led: Ledger, sha: str) -> None:
    if led.cfg.kind == "sqlite":
        led.artifacts.path(sha).unlink()  # type: ignore[attr-defined]
    else:
        raw = RawDB(led)
        raw.q(f'DELETE FROM "{led.cfg.schema}".arledger_artifacts WHERE sha = ?', (sha,))
        raw.close()
