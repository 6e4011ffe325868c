"""The projection protocol: a pure, incrementally maintained fold over the event log.

A :class:`Projection` sees every :class:`~ledger.app.Recorded` event once, in commit order, through
``apply``. Its ``state`` is plain data (dicts, lists, numbers, strings) so two projections can be
compared: folding a log in any chunking, with ``state`` read between chunks, gives the same
``state`` as ``Projector.rebuild(events)`` over the whole log at once.

Handlers are methods named ``on_<EventType>(self, rec, event)``; ``apply`` dispatches on the event's
type. A projection may declare projections it reads (``requires``); the
:class:`~projections.projector.Projector` applies those first for every event and hands them over in
``self.deps``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from ledger import events as ev
from ledger.app import Recorded


class Projection:
    name: ClassVar[str] = ""
    requires: ClassVar[tuple[type[Projection], ...]] = ()
    _handlers: ClassVar[dict[type, Callable[..., None]]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        handlers: dict[type, Callable[..., None]] = {}
        for klass in reversed(cls.__mro__):
            for attr, fn in vars(klass).items():
                if attr.startswith("on_") and callable(fn):
                    et = getattr(ev, attr[3:], None)
                    if isinstance(et, type) and issubclass(et, ev.Event):
                        handlers[et] = fn
        cls._handlers = handlers

    def __init__(self, deps: dict[type[Projection], Projection] | None = None):
        self.deps: dict[type[Projection], Projection] = dict(deps or {})
        for need in self.requires:
            if need not in self.deps:
                raise ValueError(f"{type(self).__name__} needs {need.__name__}; build it through a Projector")

    def apply(self, rec: Recorded) -> None:
        h = self._handlers.get(type(rec.event))
        if h is not None:
            h(self, rec, rec.event)

    @property
    def state(self) -> Any:
        """Plain, comparable data: what this projection knows."""
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.state == other.state  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]
