"""Pure derivations of the event log: the trial table, lineage tree and lineage view, leaderboard,
statistics, the audit report and the paper export. Depends on ``ledger`` only."""

from projections.base import Projection
from projections.lineage_view import render_lineage_view
from projections.projector import ALL, Projector
from projections.records import CampaignInfo, TrialRow
from projections.trials import TrialTable

__all__ = ["ALL", "CampaignInfo", "Projection", "Projector", "TrialRow", "TrialTable", "render_lineage_view"]
