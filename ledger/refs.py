"""The artifact rule: an event names an object of the artifact store only in a field typed
``Artifact``.

Every event type's fields are walked once, by type — nested structs, lists, tuples, sets, dicts
(keys and values), optional fields and unions included — into a small plan per type. ``scan``
follows the plan over one event and returns its artifact references (the ``Artifact`` slots) and
every other sha256-sized hex string (64 hex digits) it holds outside a declared ``Digest`` or
``PublicKey`` slot: in a free-form ``Any`` (a config dict), a plain ``str``, a list of ``str``.
``Ledger.save`` refuses an event whose undeclared hex string names an object in the artifact store —
an artifact verify could not see — and signs the declared references with the event, so verify
checks every artifact without decoding. A hash of something that is not stored (a task folder's
digest recorded in a config) stays allowed; give it a ``Digest`` field when it is a fact of its own.

``undeclared_hash_fields`` is the catalogue's static half: a plain ``str`` field named like a hash
(``*_sha``, ``*_hash``, ``*digest``…) must be typed. The catalogue test runs it on every event type.

Ledgers written before the rule hold one known hidden reference: the campaign's baseline snapshot,
``CampaignOpened.config["baseline_tree_sha"]``. ``legacy_refs`` reads it, so verify checks it too.
"""

from __future__ import annotations

import re
import types
import typing
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Union

import msgspec

from ledger import events as ev


class Found:
    """What a scan found: artifact references, and hex strings outside declared slots."""

    __slots__ = ("hidden", "refs")

    def __init__(self) -> None:
        self.refs: list[str] = []
        self.hidden: list[str] = []


_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
Walker = Callable[[Any, Found], None]


def is_hex64(s: object) -> bool:
    return type(s) is str and len(s) == 64 and _HEX64.fullmatch(s) is not None


def _plain(v: Any, out: Found) -> None:
    if type(v) is str and len(v) == 64 and _HEX64.fullmatch(v):
        out.hidden.append(v.lower())


def _artifact(v: Any, out: Found) -> None:
    if v:
        out.refs.append(v)


def _free(v: Any, out: Found) -> None:
    """A free-form value (``Any``): every hex string inside it is undeclared."""
    t = type(v)
    if t is str:
        _plain(v, out)
    elif t is dict:
        for k, x in v.items():
            _free(k, out)
            _free(x, out)
    elif t in (list, tuple, set, frozenset):
        for x in v:
            _free(x, out)
    elif isinstance(v, msgspec.Struct):
        _plan_walker(type(v), True)(v, out)


def _seq(elem: Walker) -> Walker:
    def walk(v: Any, out: Found) -> None:
        for x in v:
            elem(x, out)
    return walk


def _mapping(kw: Walker | None, vw: Walker | None) -> Walker:
    def walk(v: Any, out: Found) -> None:
        for k, x in v.items():
            if kw is not None:
                kw(k, out)
            if vw is not None:
                vw(x, out)
    return walk


def _union(members: list[tuple[type, Walker]]) -> Walker:
    def walk(v: Any, out: Found) -> None:
        if v is None:
            return
        for t, w in members:
            if isinstance(v, t):
                w(v, out)
                return
    return walk


def _optional(w: Walker) -> Walker:
    def walk(v: Any, out: Found) -> None:
        if v is not None:
            w(v, out)
    return walk


def _runtime_type(tp: Any) -> type:
    base = typing.get_args(tp)[0] if typing.get_origin(tp) is Annotated else tp
    origin = typing.get_origin(base)
    if origin is not None:
        return origin if isinstance(origin, type) else object
    return base if isinstance(base, type) else object


_PLANS: dict[tuple[type, bool], Walker] = {}


def _walker(tp: Any, strict: bool) -> Walker | None:
    """What to look at in a value of type ``tp`` (None: nothing there). ``strict``: also report hex
    strings in undeclared slots; else collect the Artifact slots only."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Annotated:
        role = next((m for m in args[1:] if isinstance(m, ev.HexRole)), None)
        if role is ev.ARTIFACT:
            return _artifact
        if role is not None:
            return None  # a declared digest or key: allowed, and not in the store
        return _walker(args[0], strict)
    if tp is str:
        return _plain if strict else None
    if tp is Any or tp is object:
        return _free if strict else None
    if origin is Union or origin is types.UnionType:
        members = []
        for a in args:
            if a is type(None):
                continue
            w = _walker(a, strict)
            if w is not None:
                members.append((_runtime_type(a), w))
        if not members:
            return None
        if len(members) == 1 and members[0][0] is not object:
            return _optional(members[0][1])
        return _union(members)
    if origin in (list, set, frozenset) or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
        w = _walker(args[0], strict) if args else (_free if strict else None)
        return None if w is None else _seq(w)
    if origin is tuple:
        ws = [_walker(a, strict) for a in args]
        if not any(ws):
            return None

        def walk_tuple(v: Any, out: Found) -> None:
            for x, w in zip(v, ws, strict=False):
                if w is not None:
                    w(x, out)
        return walk_tuple
    if origin is dict:
        kw, vw = (_walker(args[0], strict), _walker(args[1], strict)) if args else ((_free, _free) if strict
                                                                                    else (None, None))
        return None if kw is None and vw is None else _mapping(kw, vw)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return _plan_walker(tp, strict)
    if isinstance(tp, type) and issubclass(tp, int | float | bool | bytes | uuid.UUID):
        return None
    if origin is typing.Literal:
        return None
    return _free if strict else None  # anything else: treat as free-form


def _plan_walker(cls: type, strict: bool) -> Walker:
    got = _PLANS.get((cls, strict))
    if got is not None:
        return got
    fields: list[tuple[str, Walker]] = []

    def walk(v: Any, out: Found) -> None:
        for name, w in fields:
            w(getattr(v, name), out)

    _PLANS[(cls, strict)] = walk  # before filling: a struct that contains itself terminates
    hints = typing.get_type_hints(cls, include_extras=True)
    for name in cls.__struct_fields__:
        w = _walker(hints[name], strict)
        if w is not None:
            fields.append((name, w))
    return walk


def scan(event: ev.Event) -> Found:
    """The artifact shas ``event`` refers to (declared fields, in order) and the hex strings it holds
    outside declared slots."""
    out = Found()
    _plan_walker(type(event), True)(event, out)
    return out


def artifact_shas(event: ev.Event) -> list[str]:
    """Every artifact a stored event refers to: its Artifact fields and, for events written before
    the rule, the legacy places."""
    out = Found()
    _plan_walker(type(event), False)(event, out)
    out.refs.extend(legacy_refs(event))
    return out.refs


def where(event: ev.Event, value: str) -> str:
    """The path of ``value`` in ``event`` (for messages), e.g. ``CampaignOpened.config['base']``."""
    def find(v: Any, path: str) -> str | None:
        if isinstance(v, str):
            return path if v.lower() == value else None
        if isinstance(v, dict):
            for k, x in v.items():
                got = find(k, f"{path}[{k!r}]") or find(x, f"{path}[{k!r}]")
                if got:
                    return got
        if isinstance(v, list | tuple):
            for i, x in enumerate(v):
                got = find(x, f"{path}[{i}]")
                if got:
                    return got
        return None

    d = msgspec.to_builtins(event)
    for k, v in d.items():
        got = find(v, f"{type(event).__name__}.{k}")
        if got:
            return got
    return type(event).__name__


LEGACY: dict[type, tuple[tuple[str, str], ...]] = {
    ev.CampaignOpened: (("config", "baseline_tree_sha"),),
}
"""Artifact references that ledgers older than the rule keep inside a free-form field."""
LEGACY_TOPICS: frozenset[str] = frozenset(ev.TOPIC_OF[t] for t in LEGACY)


def legacy_refs(event: ev.Event) -> list[str]:
    out = []
    for field_name, key in LEGACY.get(type(event), ()):
        v = getattr(event, field_name, None)
        sha = v.get(key) if isinstance(v, dict) else None
        if is_hex64(sha):
            out.append(sha.lower())
    return out


def undeclared_hash_fields(cls: type) -> list[str]:
    """Paths of plain ``str`` slots in ``cls`` (nested ones included) whose name says they hold a
    hash (``*_sha``, ``*sha256``, ``*_hash``, ``*digest``, ``*checksum``), for the catalogue test."""
    bad: list[str] = []
    _find_undeclared(cls, "", bad, set())
    return bad


_HASHY = re.compile(r"(^|_)(sha|sha256|hash|digest|checksum)s?($|_)|_sha$")


def _find_undeclared(tp: Any, path: str, bad: list[str], seen: set[type]) -> None:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        if any(isinstance(m, ev.HexRole) for m in typing.get_args(tp)[1:]):
            return
        _find_undeclared(typing.get_args(tp)[0], path, bad, seen)
        return
    if tp is str:
        leaf = path.rsplit(".", 1)[-1].split("[")[0]
        if _HASHY.search(leaf):
            bad.append(path)
        return
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        if tp in seen:  # a struct inside itself: its fields are reported where it first appears
            return
        hints = typing.get_type_hints(tp, include_extras=True)
        for name in tp.__struct_fields__:
            _find_undeclared(hints[name], f"{path}.{name}" if path else f"{tp.__name__}.{name}", bad, seen | {tp})
        return
    for a in typing.get_args(tp):
        if a is not Ellipsis and a is not type(None):
            _find_undeclared(a, path + "[]" if origin in (list, set, frozenset, tuple, dict) else path, bad, seen)
