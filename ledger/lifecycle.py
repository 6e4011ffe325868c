"""A trial's phases, and the one rule that moves it from phase to phase.

    proposed -> queued -> claimed -> running -> finished -> evaluated -> labelled
                  ^                                                         |
                  +----------- requeued (a runner lost its lease) ----------+
                  +----------- requeued by hand (a failed or a live attempt) +

A trial that is not labelled yet may be cancelled from any phase (``Trial.cancel``: the label
``cancelled``); its runner's next fenced append is refused, which stops the run.

The Trial aggregate, the runners' launch queue and the trial table all fold events through
:func:`phase_after`, so the three can never disagree about where a trial is.
"""

from __future__ import annotations

from ledger import events as ev

PROPOSED, QUEUED, CLAIMED, RUNNING, FINISHED, EVALUATED, LABELLED = (
    "proposed", "queued", "claimed", "running", "finished", "evaluated", "labelled")
PHASES = (PROPOSED, QUEUED, CLAIMED, RUNNING, FINISHED, EVALUATED, LABELLED)
LEASED = frozenset({CLAIMED, RUNNING, FINISHED, EVALUATED})
"""Phases in which a runner holds the trial's lease."""

_NEXT: dict[type[ev.Event], str] = {
    ev.LaunchRequested: QUEUED,
    ev.LaunchRequeued: QUEUED,
    ev.LaunchClaimed: CLAIMED,
    ev.TrialStarted: RUNNING,
    ev.TrialFinished: FINISHED,
    ev.TrialEvaluated: EVALUATED,
    ev.OutcomeLabelled: LABELLED,
}
PHASE_EVENTS: tuple[type[ev.Event], ...] = tuple(_NEXT)
"""The event types that move a trial's phase."""


def phase_after(phase: str, event: ev.Event) -> str:
    """The phase a trial is in after ``event`` (events that do not move it leave it where it was).

    A ``runner_lost`` label ends an attempt, not the trial: the ``LaunchRequeued`` saved with it
    puts the trial back in the queue."""
    return _NEXT.get(type(event), phase)
