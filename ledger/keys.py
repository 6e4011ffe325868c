"""Ed25519 signing keys, signed appends and signed checkpoints.

A checkpoint is the statement "the ledger <id> had <size> events with Merkle root <root>", signed
with the key ``arledger init`` made. It is recorded in the ledger (CheckpointSigned) and written as
a small text file that can be published or kept elsewhere; ``audit verify --checkpoint FILE`` later
proves the ledger still extends exactly that state.

Every append is signed too, by the writer's :class:`Signer`: one signature per transaction over
``append_message`` — the ledger id, then for each event ``codec.event_digest`` (sha256 of its
version, originator id, topic and stored bytes: everything but its position) and the artifact
references the batch carries. An actor's key is trusted once a ledger key endorsed it
(``endorsement_message``, recorded as SignerEnrolled).
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.store import LedgerError

CHECKPOINT_HEADER = "arledger checkpoint v1"


def key_id(public_hex: str) -> str:
    return hashlib.sha256(bytes.fromhex(public_hex)).hexdigest()[:16]


def public_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def generate_key(path: Path) -> Ed25519PrivateKey:
    """Make a new key at ``path`` (mode 0600). Refuses to overwrite an existing file
    (FileExistsError); the file appears whole or not at all, so a process that loses a race to
    make the same key can read the winner's."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.link(tmp, path)  # atomic, and fails if the key exists
    finally:
        tmp.unlink(missing_ok=True)
    return key


def load_key(path: Path) -> Ed25519PrivateKey:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise LedgerError(
            f"signing key {path} not found; run `arledger init` to make one, or pass --key / set ARLEDGER_KEY"
        ) from None
    except OSError as e:
        raise LedgerError(f"signing key {path} cannot be read ({e.strerror}); check its permissions") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise LedgerError(f"signing key {path} is not an unencrypted Ed25519 PEM key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise LedgerError(f"signing key {path} is not an Ed25519 key")
    return key


APPEND_HEADER = b"arledger signed append v1\n"
ENDORSEMENT_HEADER = "arledger signer key v1"
GENESIS_LEDGER_ID = bytes(16)
"""The ledger id a batch signs with when it is the ledger's first (the id is that batch's first leaf)."""

_COUNT = struct.Struct(">I")


def append_message(ledger_id: bytes, digests: bytes, refs: bytes) -> bytes:
    """What a writer signs for one append: ledger id (16 bytes), the number of events, their
    digests (32 bytes each, in order), then the batch's artifact references (``refs`` rows)."""
    return APPEND_HEADER + ledger_id + _COUNT.pack(len(digests) // 32) + digests + refs


def endorsement_message(ledger_id: str, signer: str, public_key_hex: str) -> bytes:
    return f"{ENDORSEMENT_HEADER}\nledger {ledger_id}\nsigner {signer}\nkey {public_key_hex}\n".encode()


REF_ROW = struct.Struct(">I32s")
"""One artifact reference of a signed batch: the event's index in the batch, the artifact's sha256."""


@dataclass(frozen=True)
class Signer:
    """An actor's identity: the name it writes under and its Ed25519 key."""

    actor: str
    key: Ed25519PrivateKey = field(repr=False, compare=False)
    public_key: bytes = field(init=False)  # raw, 32 bytes
    key_id: str = field(init=False)

    def __post_init__(self) -> None:
        pub = self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        object.__setattr__(self, "public_key", pub)
        object.__setattr__(self, "key_id", key_id(pub.hex()))

    @property
    def public_hex(self) -> str:
        return self.public_key.hex()

    def sign(self, message: bytes) -> bytes:
        return self.key.sign(message)


@dataclass(frozen=True)
class SignedBatch:
    """The signature row one append stores beside its events (see ``ledger.recorders``)."""

    public_key: bytes  # raw, 32 bytes
    signature: bytes  # 64 bytes
    refs: bytes  # REF_ROW rows
    genesis: bool  # signed with GENESIS_LEDGER_ID: valid only as the ledger's first batch


def verify_raw(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def checkpoint_message(ledger_id: str, size: int, root_hex: str) -> bytes:
    return f"{CHECKPOINT_HEADER}\nledger {ledger_id}\nsize {size}\nroot {root_hex}\n".encode()


def verify_signature(public_hex_: str, message: bytes, signature_hex: str) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex_)).verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Checkpoint:
    ledger_id: str
    size: int
    root: str  # hex
    key_id: str
    public_key: str  # hex
    signature: str  # hex

    @property
    def message(self) -> bytes:
        return checkpoint_message(self.ledger_id, self.size, self.root)

    def signature_ok(self) -> bool:
        return key_id(self.public_key) == self.key_id and verify_signature(self.public_key, self.message, self.signature)

    def to_text(self) -> str:
        return (
            f"{CHECKPOINT_HEADER}\n"
            f"ledger: {self.ledger_id}\n"
            f"size: {self.size}\n"
            f"root: {self.root}\n"
            f"key-id: {self.key_id}\n"
            f"public-key: {self.public_key}\n"
            f"signature: {self.signature}\n"
        )

    @classmethod
    def from_text(cls, text: str, source: str = "checkpoint") -> Checkpoint:
        lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
        if not lines or lines[0] != CHECKPOINT_HEADER:
            raise LedgerError(f"{source} is not an arledger checkpoint (first line must be {CHECKPOINT_HEADER!r})")
        fields: dict[str, str] = {}
        for ln in lines[1:]:
            k, sep, v = ln.partition(":")
            if not sep:
                raise LedgerError(f"{source}: malformed line {ln[:60]!r}")
            fields[k.strip()] = v.strip()
        need = ["ledger", "size", "root", "key-id", "public-key", "signature"]
        missing = [k for k in need if k not in fields]
        if missing:
            raise LedgerError(f"{source}: missing field(s) {', '.join(missing)}")
        try:
            size = int(fields["size"])
            bytes.fromhex(fields["root"])
            bytes.fromhex(fields["signature"])
            bytes.fromhex(fields["public-key"])
        except ValueError:
            raise LedgerError(f"{source}: size, root, signature or public-key is malformed") from None
        return cls(fields["ledger"], size, fields["root"], fields["key-id"], fields["public-key"], fields["signature"])

    @classmethod
    def read(cls, path: Path) -> Checkpoint:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise LedgerError(f"checkpoint file {path} cannot be read ({e.strerror})") from None
        return cls.from_text(text, source=str(path))


def sign_checkpoint(key: Ed25519PrivateKey, ledger_id: str, size: int, root_hex: str) -> Checkpoint:
    pub = public_hex(key)
    sig = key.sign(checkpoint_message(ledger_id, size, root_hex)).hex()
    return Checkpoint(ledger_id, size, root_hex, key_id(pub), pub, sig)
