"""Importers: existing auto-research records turned into ledger events.

Two formats are understood:

* **cmu** — a blackboard folder of the CMU specialist-agent harness (arXiv 2605.05724): ``results.tsv``
  (one row per trial), ``tree.tsv`` (the same trials with their final status and score) and
  ``best.json``. The real files are messy: some ``results.tsv`` rows are cut short after the
  hypothesis column; status, score, parent and delta are then recovered from ``tree.tsv``.
* **autoresearch** — karpathy/autoresearch's ``results.tsv``: ``commit  val_bpb  memory_gb  status
  description`` with statuses keep/discard/crash; the first row is the baseline and a trial's parent
  is the most recent keep before it.

An import writes, atomically and in trial order: ``CampaignOpened`` (named after the run folder —
the parent of a ``blackboard/`` folder — or the file stem; with the record's metric, its direction
as the record tells it (:func:`_cmu_direction`) and, for the released CMU runs, their arm),
``NoiseMeasured(source="imported")`` where the noise is documented, and per trial
``TrialRegistered`` + ``TrialProposed(kind="baseline"|"imported")``, ``TrialFinished`` (timings,
artifact size) where present, ``TrialEvaluated`` (evaluator ``imported:<format>``) where a score
exists, ``OutcomeLabelled`` with the record's status, and ``IncumbentPromoted`` for every keep,
``TrialQuarantined`` where the record's notes say the harness quarantined the trial; finally a
``RecordImported`` on the ledger aggregate with the sha256 of each source file. Every
event's actor is ``importer:<format>``, and the append is signed with that actor's key
(``ledger.identity.signer_for``). Importing the same source (or into an existing campaign
name) twice is refused and nothing is written.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ledger import events as ev
from ledger.aggregates import Campaign, Trial
from ledger.identity import signer_for
from ledger.store import LedgerError

csv.field_size_limit(1 << 30)


_ERRORISH = re.compile(r"Error|Exception|Traceback|QUARANTINED|Killed|failed", re.I)


_QUARANTINE = re.compile(r"\[QUARANTINED\s+(\d{4}-\d\d-\d\dT[\d:.]+Z?):\s*([^\]]*)\]")


class ImportRefused(LedgerError):
    """The source cannot be imported (malformed, or already imported); nothing was written."""


@dataclass(frozen=True)
class ImportResult:
    campaign: str
    campaign_id: uuid.UUID
    format: str
    trials: int  # trials excluding the baseline
    keeps: int
    events: int
    files: dict[str, str]


# Known metrics: the optimisation direction of the metric column a record carries (NanoChat's CORE
# is a score to raise).
DIRECTIONS = {
    "val_bpb": "min", "val_loss": "min", "loss": "min", "bpb": "min", "train_s": "min", "time_s": "min",
    "wallclock_s": "min", "accuracy": "max", "acc": "max", "core": "max", "core_metric": "max", "score": "max",
}
# Documented run-to-run noise of a metric in the released records (the paper's ±0.001 val_bpb).
DOCUMENTED_NOISE = {"val_bpb": 0.001}
# Task slug and title (Table 1's "run" column) of the known CMU runs, keyed by their metric column.
CMU_TITLES = {"val_bpb": ("parameter-golf", "Parameter Golf"), "train_s": ("cifar10-airbench96", "CIFAR-10 Airbench96"),
              "core_metric": ("nanochat-d12", "NanoChat-D12")}
# The arm (in `arledger run --arm` terms) of the released runs, by their folder name in
# release_artifacts/; any other folder imports as the lineage arm.
CMU_ARMS = {"pg_ablation_lineage_off": "no-lineage", "pg_variant_single_agent": "single",
            "pg_variant_generic_multi": "generic:10"}


# ---------------------------------------------------------------------------------------------
# helpers


def _sha_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_tsv(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise ImportRefused(f"{path} is missing; a CMU blackboard folder holds results.tsv, tree.tsv and best.json") from None
    except OSError as e:
        raise ImportRefused(f"{path} cannot be read ({e.strerror})") from None
    rows = list(csv.reader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise ImportRefused(f"{path} is empty")
    return [h.strip() for h in rows[0]], rows[1:]


def _num(s: str | None) -> float | None:
    if s is None:
        return None
    s = s.strip().replace("\u2212", "-")  # unicode minus
    if not s or s in ("-", "—", "nan", "NaN", "None", "null"):
        return None
    try:
        v = float(s)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _ts(s: str | None, default: float) -> float:
    if not s or not s.strip():
        return default
    s = s.strip()
    try:
        d = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return default
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return d.timestamp()


def _trial_number(s: str, where: str) -> int:
    s = s.strip()
    m = re.fullmatch(r"(?:exp_)?(\d+)", s)
    if not m:
        raise ImportRefused(f"{where}: {s!r} is not a trial id (expected digits such as 042)")
    return int(m.group(1))


def _recover_leaked_tail(header: list[str], r: list[str], row: dict[str, str]) -> bool:
    """Recover a results.tsv row cut short after the hypothesis column.

    The CMU harness wrote some hypotheses quoted and then joined the rest of the row with single
    spaces instead of tabs: ``"<hypothesis>" <expected_delta> <status> <metric> ...``. Empty fields
    leave consecutive spaces, so splitting on single spaces restores the columns. Returns whether
    the row could be recovered; if not, the row keeps only the columns it has (tree.tsv still
    carries status and score)."""
    if "hypothesis" not in header or len(r) != header.index("hypothesis") + 1:
        return False
    hi = header.index("hypothesis")
    rest_cols = header[hi + 1:]
    text = r[hi]
    if not text.startswith('"') or "status" not in rest_cols:
        return False
    si = rest_cols.index("status")
    start = 1
    while True:
        end = text.find('" ', start)
        if end < 0:
            return False
        parts = text[end + 2:].split(" ", len(rest_cols) - 1)
        if len(parts) > si and parts[si] in ev.STATUSES:
            row["hypothesis"] = text[1:end].replace('""', '"')
            for col, v in zip(rest_cols, parts, strict=False):
                row[col] = v.strip()
            return True
        start = end + 1


def _row_note(n: int, results: dict[int, dict[str, str]], got: int, want: int) -> str:
    if n not in results:
        return " (no results.tsv row)"
    if got >= want:
        return ""
    if "expected_delta" in results[n] and results[n].get("status"):
        return " (results.tsv row repaired: its columns had leaked into the hypothesis)"
    return " (results.tsv row truncated)"


def _refuse_duplicates(ledger: Any, name: str, fmt: str, files: dict[str, str]) -> None:
    if not ledger.is_initialised():
        raise ImportRefused(f"{ledger.describe()} is not initialised; run `arledger init` first, then import")
    root = ledger.ledger_root()
    for e in root.history:
        if isinstance(e, ev.RecordImported) and e.format == fmt and e.files == files:
            when = datetime.fromtimestamp(e.at, UTC).strftime("%Y-%m-%d %H:%M UTC")
            raise ImportRefused(
                f"this {fmt} record ({', '.join(sorted(files))}) was already imported as campaign "
                f"{e.campaign!r} on {when}; nothing was written"
            )
    if ledger.exists(ev.campaign_id_for(name)):
        raise ImportRefused(
            f"a campaign named {name!r} already exists in {ledger.describe()}; nothing was written "
            "(import under another name with --name)"
        )


class _Writer:
    """Collects events in the order they happen, then saves them in one atomic append."""

    def __init__(self, fmt: str):
        self.fmt = fmt
        self.actor = f"importer:{fmt}"
        self.events: list[ev.Event] = []

    def take(self, *aggs: Any) -> None:
        for a in aggs:
            self.events.extend(a.collect_events())


def _emit_trial(w: _Writer, campaign: Campaign, *, number: int, at: float, specialist: str, surface: str,
                hypothesis: str, kind: str, parent_id: uuid.UUID | None, expected_delta: float | None,
                notes: str, status: str, score: float | None, delta: float | None, metrics: dict[str, float],
                wall_s: float, artifact_bytes: int, gates: list[ev.GateResult], excerpt: str,
                reason: str) -> Trial:
    actor = w.actor
    t = Trial.propose(campaign.id, number, actor=actor, at=at, specialist=specialist, surface=surface,
                      hypothesis=hypothesis, parent_id=parent_id, expected_delta=expected_delta, notes=notes,
                      kind=kind)
    campaign.register(t.id, number, specialist, kind, actor)
    w.take(campaign, t)
    if wall_s or artifact_bytes:
        t._trigger(ev.TrialFinished, actor=actor, at=at, epoch=0, exit_status=None, wall_s=wall_s,
                   artifact_bytes=artifact_bytes)
    if score is not None or metrics:
        t._trigger(ev.TrialEvaluated, actor=actor, at=at, epoch=0, score=score, metrics=metrics, gates=gates,
                   evaluator=f"imported:{w.fmt}")
    t._trigger(ev.OutcomeLabelled, actor=actor, at=at, status=status, reason=reason, excerpt=excerpt,
               score=score, delta=delta)
    w.take(t)
    return t


def _finish(ledger: Any, w: _Writer, campaign: Campaign, *, fmt: str, source: Path, files: dict[str, str],
            trials: int, keeps: int) -> ImportResult:
    writer = ledger.with_signer(signer_for(ledger, w.actor))  # signed as importer:<format>, enrolled on first use
    root = ledger.ledger_root()
    root._trigger(ev.RecordImported, actor=w.actor, format=fmt, source=str(source), files=files,
                  campaign_id=campaign.id, campaign=campaign.name, trials=trials)
    w.take(root)
    writer.save(*w.events)
    return ImportResult(campaign=campaign.name, campaign_id=campaign.id, format=fmt, trials=trials, keeps=keeps,
                        events=len(w.events), files=files)


def _cmu_direction(where: Path, metric: str, keep_deltas: list[float], start: float | None,
                   best: float | None) -> tuple[str, str]:
    """The direction of a CMU record's metric, and what it rests on. The record itself tells: every
    keep moved ``delta_vs_best`` the improving way (else best.json against the baseline does). A
    known metric name must agree with it; an unknown one takes the record's word; with neither, min."""
    signs = {d > 0 for d in keep_deltas if d}
    told = ("max" if signs == {True} else "min") if len(signs) == 1 else None
    basis = "the keeps' delta_vs_best"
    if told is None and start is not None and best is not None and best != start:
        told, basis = ("max" if best > start else "min"), "best.json against the baseline"
    known = DIRECTIONS.get(metric.lower())
    if known and told and known != told:
        raise ImportRefused(
            f"{where}: {metric} is {'lowered' if known == 'min' else 'raised'} by a better recipe, but the record's "
            f"keeps moved it the other way ({basis}); check that the score column is {metric}"
        )
    if known:
        return known, "metric name"
    if told:
        return told, f"record ({basis})"
    return "min", "default (unknown metric, no keep to tell)"


# ---------------------------------------------------------------------------------------------
# CMU blackboard


def import_cmu(ledger: Any, directory: str | Path, *, name: str | None = None,
               noise_sd: float | None = None) -> ImportResult:
    """Import a CMU blackboard folder (results.tsv, tree.tsv, best.json) as one campaign."""
    d = Path(directory)
    if not d.is_dir():
        raise ImportRefused(f"{d} is not a folder; give the CMU blackboard folder holding results.tsv and tree.tsv")
    folder = d.resolve()
    if folder.name == "blackboard":  # release_artifacts/<run>/blackboard: the run is the parent
        folder = folder.parent
    name = name or folder.name
    res_path, tree_path, best_path = d / "results.tsv", d / "tree.tsv", d / "best.json"
    rh, rrows = _read_tsv(res_path)
    th, trows = _read_tsv(tree_path)
    files = {"results.tsv": _sha_file(res_path), "tree.tsv": _sha_file(tree_path)}
    best: dict[str, Any] = {}
    if best_path.exists():
        files["best.json"] = _sha_file(best_path)
        try:
            best = json.loads(best_path.read_text())
        except (ValueError, OSError):
            raise ImportRefused(f"{best_path} is not valid JSON") from None
    for need in ("exp_id", "parent_exp", "specialist", "status"):
        if need not in th:
            raise ImportRefused(f"{tree_path}: header lacks the {need!r} column (found: {', '.join(th)})")
    if "exp_id" not in rh:
        raise ImportRefused(f"{res_path}: header lacks the 'exp_id' column")
    # the metric is the tree column between status and delta_vs_best
    si = th.index("status")
    metric = th[si + 1] if si + 1 < len(th) and th[si + 1] not in ("delta_vs_best", "hypothesis") else ""
    if not metric:
        raise ImportRefused(f"{tree_path}: no metric column after 'status'")
    _refuse_duplicates(ledger, name, "cmu", files)

    tree: dict[int, dict[str, str]] = {}
    for i, r in enumerate(trows, start=2):
        row = dict(zip(th, r, strict=False))
        tree[_trial_number(row.get("exp_id", ""), f"{tree_path}:{i}")] = row
    results: dict[int, dict[str, str]] = {}
    truncated = recovered = 0
    rrows_len: dict[int, int] = {}
    for i, r in enumerate(rrows, start=2):
        row = {k: v for k, v in zip(rh, r, strict=False)}
        if len(r) < len(rh):
            truncated += 1
            if _recover_leaked_tail(rh, r, row):
                recovered += 1
        num = _trial_number(row.get("exp_id", ""), f"{res_path}:{i}")
        results[num] = row
        rrows_len[num] = len(r)
    numbers = sorted(set(tree) | set(results))
    if not numbers:
        raise ImportRefused(f"{d}: no trials in results.tsv or tree.tsv")
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))) or numbers[0] != 0:
        missing = sorted(set(range(numbers[-1] + 1)) - set(numbers))[:5]
        raise ImportRefused(f"{d}: trial ids are not dense from 000 (missing {missing}); cannot number the trials")

    # gates: an accuracy column means an accuracy gate; its threshold is stated on the baseline row
    config: dict[str, Any] = {"source": "cmu", "source_dir": str(d), "metric_column": metric,
                              "truncated_rows": truncated, "recovered_rows": recovered}
    slug, title = CMU_TITLES.get(metric, (f"cmu-{name}", name))
    config["title"] = title

    def cell(n: int, col: str) -> str:  # tree.tsv's value, else results.tsv's
        return (tree.get(n, {}).get(col) or results.get(n, {}).get(col) or "").strip()

    keep_deltas = [v for n in numbers if cell(n, "status") == "keep" and (v := _num(cell(n, "delta_vs_best"))) is not None]
    best_score = _num(str(best[metric])) if best.get(metric) is not None else None
    direction, config["direction_basis"] = _cmu_direction(d, metric, keep_deltas, _num(cell(0, metric)), best_score)
    acc_col = "accuracy" if "accuracy" in rh else None
    gate_min: float | None = None
    if acc_col:
        base = results.get(0, {})
        text = " ".join(base.get(k, "") for k in ("notes", "hypothesis"))
        m = re.search(r"(?:≥|>=)\s*([0-9]*\.[0-9]+)", text)
        gate_min = float(m.group(1)) if m else 0.96
        config["gates"] = {"accuracy_metric": "accuracy", "accuracy_min": gate_min}
    sd = noise_sd if noise_sd is not None else DOCUMENTED_NOISE.get(metric)
    if sd is not None:
        config["noise_sd"] = sd
    if best:
        config["best_json"] = {k: best[k] for k in ("exp_id", metric) if k in best}

    def ts_of(n: int) -> str:
        return results.get(n, {}).get("timestamp", "") or ""

    first_at = _ts(ts_of(numbers[0]), ev.now())
    specialists: list[ev.SpecialistDecl] = []
    seen: set[str] = set()
    for n in numbers:
        row = {**tree.get(n, {}), **{k: v for k, v in results.get(n, {}).items() if v}}
        s = row.get("specialist", "").strip()
        if s and s != "baseline" and s not in seen:
            seen.add(s)
            specialists.append(ev.SpecialistDecl(name=s, surface=(row.get("domain") or s).strip()))

    w = _Writer("cmu")
    camp = Campaign.open(name=name, actor=w.actor, at=first_at, task=slug, task_version="imported", task_sha="",
                         metric=metric, direction=direction, arm=CMU_ARMS.get(folder.name, "lineage"),
                         specialists=specialists, config=config, harness_version="cmu-release")
    if sd is not None:
        camp.measure_noise(w.actor, at=first_at, metric=metric, values=[], sd=sd, source="imported")
    w.take(camp)

    ids: dict[int, uuid.UUID] = {}
    incumbent: tuple[uuid.UUID, float] | None = None
    keeps = 0
    last_at = first_at
    for n in numbers:
        r = results.get(n, {})
        t = tree.get(n, {})
        at = _ts(r.get("timestamp"), last_at)
        last_at = at
        status = (t.get("status") or r.get("status") or "").strip()
        if status not in ev.STATUSES:
            raise ImportRefused(f"{d}: trial {n:03d} has status {status!r}, which is not one of {', '.join(ev.STATUSES)}")
        specialist = (r.get("specialist") or t.get("specialist") or "").strip() or "unknown"
        parent_s = (t.get("parent_exp") or r.get("parent_exp") or "").strip()
        parent = _trial_number(parent_s, f"{d}: parent of {n:03d}") if parent_s else None
        if parent is not None and parent not in ids:
            raise ImportRefused(f"{d}: trial {n:03d} names parent {parent_s} which does not precede it")
        score = _num(t.get(metric)) if t else None
        if score is None:
            score = _num(r.get(metric))
        delta = _num(t.get("delta_vs_best")) if t else None
        if delta is None:
            delta = _num(r.get("delta_vs_best"))
        kind = "baseline" if status == "baseline" or n == 0 else "imported"
        metrics: dict[str, float] = {}
        for col in ("train_s", "eval_s", "total_s", "artifact_bytes", "accuracy", "acc_std", "n_seeds", "val_bpb"):
            v = _num(r.get(col))
            if v is not None:
                metrics[col] = v
        if score is not None:
            metrics[metric] = score
        wall = metrics.get("total_s") or (metrics.get("train_s", 0.0) + metrics.get("eval_s", 0.0)
                                          if metric != "train_s" else 0.0)
        gates: list[ev.GateResult] = []
        if gate_min is not None and "accuracy" in metrics:
            gates.append(ev.GateResult(name="accuracy", passed=metrics["accuracy"] >= gate_min,
                                       value=metrics["accuracy"], limit=gate_min))
        notes = r.get("notes", "") or ""
        excerpt = ""
        quarantine = _QUARANTINE.search(notes)
        if status not in ("keep", "discard", "baseline"):
            tail = notes.rsplit(" | ", 1)[1].strip() if " | " in notes else ""
            if quarantine:
                excerpt = quarantine.group(0).strip("[]")
            elif tail and _ERRORISH.search(tail):
                excerpt = tail[:1000]
            elif _ERRORISH.search(notes):
                excerpt = notes.strip()[:1000]
        hypothesis = (r.get("hypothesis") or t.get("hypothesis") or "").strip()
        if len(hypothesis) > 1 and hypothesis[0] == hypothesis[-1] == '"':
            hypothesis = hypothesis[1:-1].replace('""', '"')
        trial = _emit_trial(
            w, camp, number=n, at=at, specialist=specialist,
            surface=(r.get("domain") or specialist).strip(), hypothesis=hypothesis, kind=kind,
            parent_id=ids.get(parent) if parent is not None else None,
            expected_delta=_num(r.get("expected_delta")), notes=notes, status=status, score=score,
            delta=delta if kind != "baseline" else None, metrics=metrics, wall_s=float(wall or 0.0),
            artifact_bytes=int(metrics.get("artifact_bytes") or 0), gates=gates, excerpt=excerpt,
            reason=f"imported from {d.name}/tree.tsv" + _row_note(n, results, rrows_len.get(n, 0), len(rh)),
        )
        ids[n] = trial.id
        q = quarantine
        if q:  # the harness quarantined this trial after the fact; keep that as a correction event
            trial._trigger(ev.TrialQuarantined, actor=w.actor, at=_ts(q.group(1), at),
                           reason=f"QUARANTINED {q.group(1)}: {q.group(2).strip()} (from {d.name}/results.tsv notes)")
            w.take(trial)
        if kind == "baseline" and score is not None and incumbent is None:
            incumbent = (trial.id, score)
        if status == "keep" and score is not None:
            keeps += 1
            prev = incumbent
            camp.promote(w.actor, at=at, trial_id=trial.id, number=n, score=score,
                         previous_trial_id=prev[0] if prev else None, previous_score=prev[1] if prev else None,
                         delta=delta if delta is not None else (score - prev[1] if prev else None),
                         noise_sd=sd or 0.0, evidence=[trial.id], reason="imported keep (single run)")
            w.take(camp)
            incumbent = (trial.id, score)
    trials = sum(1 for n in numbers if not (n == 0 or tree.get(n, {}).get("status") == "baseline"))
    return _finish(ledger, w, camp, fmt="cmu", source=d, files=files, trials=trials, keeps=keeps)


# ---------------------------------------------------------------------------------------------
# karpathy/autoresearch


AUTORESEARCH_STATUSES = {"keep": "keep", "discard": "discard", "crash": "crash"}


def import_autoresearch(ledger: Any, path: str | Path, *, name: str | None = None) -> ImportResult:
    """Import an autoresearch ``results.tsv`` (commit, metric, memory_gb, status, description)."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.tsv"
    if not p.is_file():
        raise ImportRefused(f"{p} is not a file; give autoresearch's results.tsv")
    name = name or (p.stem if p.stem != "results" else p.resolve().parent.name)
    header, rows = _read_tsv(p)
    if len(header) < 5 or header[0] != "commit" or header[3] != "status":
        raise ImportRefused(
            f"{p}: header {header!r} is not autoresearch's (commit, <metric>, memory_gb, status, description)"
        )
    metric = header[1]
    direction = DIRECTIONS.get(metric, "min")
    files = {p.name: _sha_file(p)}
    _refuse_duplicates(ledger, name, "autoresearch", files)
    if not rows:
        raise ImportRefused(f"{p}: no trials after the header")

    at0 = p.stat().st_mtime
    w = _Writer("autoresearch")
    camp = Campaign.open(name=name, actor=w.actor, at=at0, task=f"autoresearch-{metric}",
                         task_version="imported", task_sha="", metric=metric, direction=direction,
                         specialists=[ev.SpecialistDecl(name="agent", surface="train.py")],
                         config={"source": "autoresearch", "source_file": str(p), "title": name},
                         harness_version="autoresearch")
    w.take(camp)
    incumbent: tuple[uuid.UUID, int, float] | None = None
    keeps = 0
    for i, r in enumerate(rows):
        if len(r) < 4:
            raise ImportRefused(f"{p}:{i + 2}: expected 5 tab-separated columns, found {len(r)}")
        commit, value, mem, status_s = (c.strip() for c in r[:4])
        desc = "\t".join(r[4:]).strip()
        status = AUTORESEARCH_STATUSES.get(status_s.lower())
        if status is None:
            raise ImportRefused(f"{p}:{i + 2}: status {status_s!r} is not keep, discard or crash")
        score = None if status == "crash" else _num(value)  # autoresearch writes 0.000000 for crashes
        kind = "baseline" if i == 0 else "imported"
        if kind == "baseline":
            status = "baseline"
        metrics: dict[str, float] = {}
        if score is not None:
            metrics[metric] = score
        m = _num(mem)
        if m is not None:
            metrics["memory_gb"] = m
        delta = (score - incumbent[2]) if (score is not None and incumbent is not None) else None
        at = at0 + i
        trial = _emit_trial(
            w, camp, number=i, at=at, specialist="agent", surface="train.py", hypothesis=desc, kind=kind,
            parent_id=incumbent[0] if incumbent else None, expected_delta=None, notes=f"commit {commit}",
            status=status, score=score, delta=delta, metrics=metrics, wall_s=0.0, artifact_bytes=0, gates=[],
            excerpt="", reason=f"imported from {p.name}",
        )
        if kind == "baseline":
            if score is not None:
                incumbent = (trial.id, i, score)
            continue
        if status == "keep" and score is not None:
            keeps += 1
            camp.promote(w.actor, at=at, trial_id=trial.id, number=i, score=score,
                         previous_trial_id=incumbent[0] if incumbent else None,
                         previous_score=incumbent[2] if incumbent else None, delta=delta, evidence=[trial.id],
                         reason="imported keep (single run)")
            w.take(camp)
            incumbent = (trial.id, i, score)
    return _finish(ledger, w, camp, fmt="autoresearch", source=p, files=files, trials=len(rows) - 1, keeps=keeps)


__all__ = ["ImportRefused", "ImportResult", "import_cmu", "import_autoresearch"]
