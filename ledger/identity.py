"""Who writes: every writer of a ledger signs as an actor with its own Ed25519 key.

    signer = signer_for(led, "runner:host-3")      # load or make the key, enrol it on first use
    led = led.with_signer(signer)                   # every save() of this view is signed by it

Actor keys live in ``<home>/keys/<actor>.key`` (mode 0600), where home is the SQLite ledger's
folder (``.arledger/``), or ``$ARLEDGER_HOME`` / ``~/.arledger`` for PostgreSQL and memory ledgers.
A key is trusted once the ledger records it in a ``SignerEnrolled`` event endorsed by a ledger key
(the key ``arledger init`` made, or one added with KeyAdded). ``signer_for`` enrols a new key itself
when the ledger key is on this machine (``init_ledger``'s key, ``$ARLEDGER_KEY`` or
``<home>/signing.key``). Where it is not — a runner on another host — it raises a LedgerError that
names the actor, its key and the command to run where the ledger key lives:
``arledger keys trust ACTOR PUBLIC_KEY``.

The ledger key itself signs as the actor ``ledger`` (initialisation, enrolments, checkpoints).
"""

from __future__ import annotations

import getpass
import os
import socket
from pathlib import Path
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import events as ev
from ledger.aggregates import LedgerRoot
from ledger.app import ConflictError, Ledger
from ledger.keys import Signer, endorsement_message, generate_key, key_id, load_key, public_hex
from ledger.store import LedgerError

LEDGER_ACTOR = "ledger"


def default_actor() -> str:
    """Who a process writes as when it names no one: ``$ARLEDGER_ACTOR``, else ``human:<login>``."""
    env = os.environ.get("ARLEDGER_ACTOR", "").strip()
    if env:
        return env
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"human:{user}"


def keys_dir(led: Ledger) -> Path:
    return led.home / "keys"


def key_path_for(led: Ledger, actor: str) -> Path:
    return keys_dir(led) / f"{quote(actor, safe=':@-_.+')}.key"


def default_ledger_key_path(led: Ledger) -> Path:
    env = os.environ.get("ARLEDGER_KEY")
    return Path(env) if env else led.home / "signing.key"


def _check_actor(actor: str) -> None:
    if not actor or actor != actor.strip() or any(c in actor for c in "\n\r\t") or actor == LEDGER_ACTOR:
        raise LedgerError(f"{actor!r} is not a usable actor name; use KIND:NAME, e.g. runner:host-3 or human:alice")


def signer_for(led: Ledger, actor: str, *, required: bool | None = None) -> Signer:
    """The identity ``actor`` writes ``led`` with: its key (made on first use, mode 0600), trusted
    by the ledger (enrolled on first use where the ledger key is on this machine).

    ``required``: fail when the key cannot be enrolled here (default: when the ledger's events are
    signed; a ledger from before signing does not need it yet)."""
    _check_actor(actor)
    path = key_path_for(led, actor)
    key = load_key(path) if path.exists() else _make_key(path)
    signer = Signer(actor, key)
    if required is None:
        required = bool(led.recorder.has_signatures())
    ensure_trusted(led, signer, required=required)
    return signer


def _make_key(path: Path) -> Ed25519PrivateKey:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return generate_key(path)
    except FileExistsError:  # another process of the same actor made it a moment ago
        return load_key(path)
    except OSError as e:
        raise LedgerError(f"cannot write the signing key {path} ({e.strerror}); set ARLEDGER_HOME to a "
                          "folder you can write") from None


def ledger_signer(key: Ed25519PrivateKey) -> Signer:
    return Signer(LEDGER_ACTOR, key)


def trusted_key_ids(root: LedgerRoot, actor: str) -> set[str]:
    if actor == LEDGER_ACTOR:
        return set(root.public_keys)
    return set(root.signers.get(actor, {}))


def local_ledger_key(led: Ledger, root: LedgerRoot | None = None) -> tuple[Ed25519PrivateKey, Path] | None:
    """The ledger key, if this machine holds it: the key given to ``init_ledger``, ``$ARLEDGER_KEY``
    or ``<home>/signing.key`` — whichever exists and is one this ledger trusts."""
    root = root or led.ledger_root()
    seen: set[Path] = set()
    for p in (led.ledger_key_path, default_ledger_key_path(led)):
        if p is None or p in seen or not p.exists():
            continue
        seen.add(p)
        key = load_key(p)
        if key_id(public_hex(key)) in root.public_keys:
            return key, p
    return None


def ensure_trusted(led: Ledger, signer: Signer, *, required: bool) -> None:
    """Make sure the ledger trusts ``signer``: enrol it with the local ledger key if it is new.
    Raises LedgerError when it is not enrolled, cannot be here, and ``required``."""
    root = led.ledger_root()
    if signer.key_id in trusted_key_ids(root, signer.actor):
        led.mark_trusted(signer)
        return
    if not root.public_keys:  # not initialised: there is nothing to be trusted by yet
        if required:
            raise LedgerError(f"{led.describe()} is not initialised; run `arledger init`")
        return
    if signer.actor == LEDGER_ACTOR:
        raise LedgerError(f"the key {signer.key_id} is not a key this ledger trusts (trusted: "
                          f"{', '.join(root.public_keys)}); use the key `arledger init` made")
    found = local_ledger_key(led, root)
    if found is None:
        if not required:
            return
        raise LedgerError(
            f"{signer.actor} (key {signer.key_id}) is not trusted by {led.describe()} yet, and the ledger key is "
            f"not on this machine ({default_ledger_key_path(led)}); where it is, run "
            f"`arledger keys trust {signer.actor} {signer.public_hex} --ledger {_safe_url(led)}`, then start again"
        )
    key, path = found
    enroll(led, signer.actor, signer.public_hex, key, actor=signer.actor,
           reason=f"first use on {socket.gethostname()} (ledger key {path})")
    led.mark_trusted(signer)


def enroll(led: Ledger, signer_actor: str, public_key_hex: str, ledger_key: Ed25519PrivateKey, *, actor: str,
           reason: str = "") -> ev.SignerEnrolled | None:
    """Record ``signer_actor``'s public key as trusted, endorsed by ``ledger_key``. Returns the
    event, or None when that key was already enrolled for that actor."""
    _check_actor(signer_actor)
    try:
        raw = bytes.fromhex(public_key_hex)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise LedgerError(f"{public_key_hex[:80]!r} is not an Ed25519 public key (64 hex digits)")
    kid = key_id(public_key_hex)
    lsigner = ledger_signer(ledger_key)
    endorsement = ledger_key.sign(endorsement_message(led.ledger_id(), signer_actor, public_key_hex)).hex()
    writer = led.with_signer(lsigner)
    for _ in range(30):
        root = led.ledger_root()
        if kid in root.signers.get(signer_actor, {}):
            return None
        e = root._trigger(ev.SignerEnrolled, actor=actor, signer=signer_actor, public_key=public_key_hex,
                          key_id=kid, endorsed_by=lsigner.key_id, endorsement=endorsement, reason=reason)
        try:
            writer.save(root)
        except ConflictError:
            continue
        assert isinstance(e, ev.SignerEnrolled)
        return e
    raise LedgerError("could not record the key: the ledger is too busy; try again")


def _safe_url(led: Ledger) -> str:
    c = led.cfg
    if c.kind == "postgres":
        return f"postgresql://{c.user}@{c.host}:{c.port}/{c.dbname}" + (f"?schema={c.schema}" if c.schema != "public"
                                                                      else "")
    return c.url
