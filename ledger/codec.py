"""Event bytes: msgspec MessagePack, zstd-compressed; and the stored-row leaf encoding.

``encode``/``decode`` turn an :class:`~ledger.events.Event` into the bytes the store keeps and back,
validating every field on the way in; ``encode_event`` also applies the artifact rule
(``ledger.refs``): it returns the event's artifact references and any sha256-like string it holds
outside a declared field. ``LedgerMapper`` plugs them into eventsourcing in place of its JSON
transcoder. ``leaf_data`` is the canonical byte string of one stored row — position, originator id,
version, topic, stored bytes — which the Merkle log hashes, so verification needs no decoder;
``event_digest`` hashes the same bytes less the position, which is what a writer signs.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import uuid
from typing import Any

import msgspec
import zstandard
from eventsourcing.persistence import Mapper, StoredEvent

from ledger.events import BY_TOPIC, TOPIC_OF, Event

ZSTD_LEVEL = 3
_local = threading.local()
_encoder = msgspec.msgpack.Encoder()
_decoders = {topic: msgspec.msgpack.Decoder(cls) for topic, cls in BY_TOPIC.items()}


class DecodeError(ValueError):
    """Stored bytes that do not decode to a valid event of their topic."""


class EncodeError(TypeError):
    """An event the ledger refuses to store: it names an artifact outside an Artifact field."""


def _zstd() -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
    pair = getattr(_local, "zstd", None)
    if pair is None:
        pair = (zstandard.ZstdCompressor(level=ZSTD_LEVEL), zstandard.ZstdDecompressor())
        _local.zstd = pair
    return pair


def encode(event: Event) -> tuple[str, bytes]:
    """(topic, stored bytes) of an event."""
    topic, state, _refs, _hidden = encode_event(event)
    return topic, state


def encode_event(event: Event) -> tuple[str, bytes, list[str], list[str]]:
    """(topic, stored bytes, artifact references, hex strings outside declared fields) of an event
    (see ``ledger.refs``; ``Ledger.save`` refuses an event whose undeclared hex names an artifact)."""
    from ledger.refs import scan

    try:
        topic = TOPIC_OF[type(event)]
    except KeyError:
        raise TypeError(f"{type(event).__name__} is not a ledger event type") from None
    found = scan(event)
    return topic, _zstd()[0].compress(_encoder.encode(event)), found.refs, found.hidden


def decode(topic: str, data: bytes) -> Event:
    dec = _decoders.get(topic)
    if dec is None:
        raise DecodeError(f"unknown event topic {topic!r}")
    try:
        raw = _zstd()[1].decompress(data)
    except zstandard.ZstdError as e:
        raise DecodeError(f"stored bytes of a {topic} event are not valid zstd: {e}") from e
    try:
        return dec.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise DecodeError(f"stored bytes do not decode as {topic}: {e}") from e


_LEAF_HEAD = struct.Struct(">QQ16sH")


def leaf_data(position: int, originator_id: uuid.UUID | str, version: int, topic: str, state: bytes) -> bytes:
    """Canonical bytes of one stored row: position, version, originator id (16 bytes), topic, state."""
    if isinstance(originator_id, uuid.UUID):
        oid = originator_id.bytes
    elif len(originator_id) == 32:
        oid = bytes.fromhex(originator_id)
    else:
        oid = uuid.UUID(originator_id).bytes
    t = topic.encode()
    return _LEAF_HEAD.pack(position, version, oid, len(t)) + t + bytes(state)


_IDENT_HEAD = struct.Struct(">Q16sH")


def event_digest(originator_id: uuid.UUID | str, version: int, topic: str, state: bytes) -> bytes:
    """sha256 of a stored row without its position (``leaf_data`` from byte 8 on): what a writer signs."""
    if isinstance(originator_id, uuid.UUID):
        oid = originator_id.bytes
    elif len(originator_id) == 32:
        oid = bytes.fromhex(originator_id)
    else:
        oid = uuid.UUID(originator_id).bytes
    t = topic.encode()
    return hashlib.sha256(_IDENT_HEAD.pack(version, oid, len(t)) + t + bytes(state)).digest()


def decompress_many(states: list[bytes]) -> list[bytes]:
    """Decompress a batch of stored states (in C threads when the batch is large)."""
    d = _zstd()[1]
    if len(states) >= 256:
        try:
            res = d.multi_decompress_to_buffer(states, threads=-1)
            return [res[i].tobytes() for i in range(len(res))]
        except zstandard.ZstdError:
            pass  # a corrupt frame somewhere: fall back to one by one, so the caller can name it
    out = []
    for s in states:
        try:
            out.append(d.decompress(s))
        except zstandard.ZstdError:
            out.append(b"")
    return out


def decode_raw(topic: str, raw: bytes) -> Event:
    """Decode already-decompressed bytes."""
    dec = _decoders.get(topic)
    if dec is None:
        raise DecodeError(f"unknown event topic {topic!r}")
    if not raw:
        raise DecodeError(f"stored bytes of a {topic} event are not valid zstd")
    try:
        return dec.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise DecodeError(f"stored bytes do not decode as {topic}: {e}") from e


class LedgerMapper(Mapper):
    """eventsourcing Mapper that stores msgspec Structs as zstd-compressed MessagePack."""

    def __init__(self, transcoder: Any = None, compressor: Any = None, cipher: Any = None):
        super().__init__(transcoder=transcoder, compressor=None, cipher=None)

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        topic, state = encode(domain_event)
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=topic,
            state=state,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        ev = decode(stored_event.topic, stored_event.state)
        if ev.originator_id != _as_uuid(stored_event.originator_id) or (
            ev.originator_version != stored_event.originator_version
        ):
            raise DecodeError(
                f"event bytes say {ev.originator_id} v{ev.originator_version} but the row says "
                f"{stored_event.originator_id} v{stored_event.originator_version}"
            )
        return ev


def _as_uuid(v: Any) -> uuid.UUID:
    return v if isinstance(v, uuid.UUID) else uuid.UUID(str(v))
