"""The three full-scale tasks (parameter-golf, nanochat-d12, airbench96) against stand-in checkouts.

Each stand-in is a tiny repository in a tmp dir whose script prints the official output formats
(the lines the real train_gpt.py / nanochat / airbench96 print) and writes a fake artifact. It runs
under the task's own ``launch.py run`` with the runner's environment, and the task's evaluator
then runs as a subprocess on the run folders, exactly as the runner would call it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

BUILTIN = Path(__file__).resolve().parents[2] / "tasks" / "builtin"
LOGS = Path(__file__).parent / "fixtures" / "logs"
TASKS = {"parameter-golf": "parameter_golf", "nanochat-d12": "nanochat_d12", "airbench96": "airbench96"}
PAPER_SPECIALISTS = {
    "parameter-golf": ["arch", "opt", "quant", "reg", "sched", "tok", "curr", "eval", "loss", "meta", "ttt"],
    "nanochat-d12": ["arch", "opt", "data", "sched", "sys"],
    "airbench96": ["arch", "opt", "aug", "loss", "reg"],
}


def task_dir(name: str) -> Path:
    return BUILTIN / TASKS[name]


def spec(name: str) -> dict:
    return tomllib.loads((task_dir(name) / "task.toml").read_text())


def launch(name: str, ws: Path, out: Path, data: Path, args: list[str], seed: int = 0,
           extra_env: dict | None = None) -> subprocess.CompletedProcess:
    out.mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ.get("PATH", ""), "ARLEDGER_OUT": str(out), "ARLEDGER_DATA": str(data),
           "ARLEDGER_SEED": str(seed), "ARLEDGER_THREADS": "1", "ARLEDGER_DEVICE": "cpu",
           **(extra_env or {})}
    cmd = [sys.executable, str(task_dir(name) / "evaluator" / "launch.py"), "run", *args]
    return subprocess.run(cmd, cwd=ws, env=env, capture_output=True, text=True, timeout=120)


def evaluate(name: str, runs: list[Path], tmp: Path, *extra: str, env: dict | None = None) -> dict:
    result = tmp / "result.json"
    if result.exists():
        result.unlink()
    cmd = [sys.executable, str(task_dir(name) / "evaluator" / "evaluate.py"),
           "--runs", ",".join(str(r) for r in runs), "--result", str(result), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr
    return json.loads(result.read_text())


def gate(result: dict, name: str) -> dict:
    return next(g for g in result["gates"] if g["name"] == name)


def load_evaluator(name: str):
    path = task_dir(name) / "evaluator" / "evaluate.py"
    mod_spec = importlib.util.spec_from_file_location(f"_eval_{TASKS[name]}", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# parameter-golf

FAKE_TRAIN_GPT = '''\
"""A stand-in for openai/parameter-golf's train_gpt.py: prints the record's output lines."""
import os
from pathlib import Path

assert Path("data/datasets/fineweb10B_sp8192/fineweb_val_000000.bin").is_file(), "data overlay missing"
model_bytes = int(os.environ.get("FAKE_MODEL_BYTES", "15975300"))
train_ms = int(os.environ.get("FAKE_TRAIN_MS", "588047"))
ttt_ms = int(os.environ.get("FAKE_TTT_MS", "366525"))
code = Path(__file__).read_text(encoding="utf-8")
print("Hyperparameters:")
print(f"  seed: {os.environ.get('SEED')}")
print("0/20000 val_loss: 9.0047 val_bpb: 3.4860")
print("4550/20000 train_loss: 2.7961 train_time: 9.8m tok/s: 6085213")
print("4550/20000 val_loss: 2.8049 val_bpb: 1.0859")
if os.environ.get("FAKE_STOP") != "crash":
    print(f"stopping_early: wallclock_cap train_time: {train_ms}ms step: 4550/20000")
    print("pre-quantization post-ema val_loss:2.81260634 val_bpb:1.08884756 eval_time:7480ms")
    Path("final_model.int6.ptz").write_bytes(b"\\0" * model_bytes)
    print(f"Serialized model quantized+brotli: {model_bytes} bytes")
    print(f"Total submission size quantized+brotli: {model_bytes + len(code.encode())} bytes")
    print("quantized val_loss:2.82604457 val_bpb:1.09405001 eval_time:9911ms")
    print("quantized_sliding_window val_loss:2.79719811 val_bpb:1.08290194 eval_time:118336ms")
    print(f"quantized_ttt val_loss:2.79180191 val_bpb:1.08079352 eval_time:{ttt_ms}ms")
'''


@pytest.fixture
def golf(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "train_gpt.py").write_text(FAKE_TRAIN_GPT)
    data = tmp_path / "data"
    (data / "datasets" / "fineweb10B_sp8192").mkdir(parents=True)
    (data / "datasets" / "fineweb10B_sp8192" / "fineweb_val_000000.bin").write_bytes(b"\0" * 16)
    (data / "tokenizers").mkdir()
    return ws, data


def golf_train_args() -> list[str]:
    """The task's own train command, with torchrun swapped for a plain interpreter."""
    words = shlex.split(spec("parameter-golf")["commands"]["train"])
    args = words[words.index("run") + 1: words.index("--")]
    return [a.replace("{ws}", ".") for a in args] + ["--", sys.executable, "train_gpt.py"]


def run_golf(golf, tmp_path, name="run0", **env) -> Path:
    ws, data = golf
    out = tmp_path / name
    proc = launch("parameter-golf", ws, out, data, golf_train_args(), seed=7, extra_env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_golf_scores_the_final_ttt_line_and_measures_the_packed_submission(golf, tmp_path):
    out = run_golf(golf, tmp_path)
    log = (out / "train.log").read_text()
    assert "  seed: 7" in log  # ARLEDGER_SEED reached the script as SEED
    assert (out / "final_model.ptz").stat().st_size == 15_975_300
    code = (golf[0] / "train_gpt.py").read_bytes()
    assert (out / "train_gpt.py").read_bytes() == code
    result = evaluate("parameter-golf", [out], tmp_path, "--code-bytes", str(len(code)), "--train-wall-s", "1400.5")
    assert result["label"] is None and result["reason"] == ""
    assert result["score"] == pytest.approx(1.08079352)
    m = result["metrics"]
    assert m["val_bpb"] == pytest.approx(1.08079352)
    packed = len(load_evaluator("parameter-golf").packed_code(code))
    assert packed < len(code)
    assert m["artifact_bytes"] == 15_975_300 + packed
    assert m["logged_submission_bytes"] == 15_975_300 + len(code)
    assert m["train_time_s"] == pytest.approx(588.047)
    assert m["eval_time_s"] == pytest.approx((7480 + 9911 + 118336 + 366525) / 1000)
    assert m["train_wall_s"] == pytest.approx(1400.5)
    assert gate(result, "artifact_bytes") == {
        "name": "artifact_bytes", "passed": True, "value": 15_975_300 + packed, "limit": 16_000_000,
        "detail": f"model 15,975,300 + code {packed:,} (lzma-packed train_gpt.py); "
                  f"the script logged {15_975_300 + len(code):,}"}
    assert gate(result, "train_time_s")["passed"] and gate(result, "eval_time_s")["passed"]


def test_golf_over_16_million_bytes_is_size_blocked(golf, tmp_path):
    out = run_golf(golf, tmp_path, FAKE_MODEL_BYTES="16000000")
    result = evaluate("parameter-golf", [out], tmp_path)
    assert result["label"] == "size_blocked"
    assert result["score"] == pytest.approx(1.08079352)  # recorded, but the label says it does not count
    g = gate(result, "artifact_bytes")
    assert g["passed"] is False and g["value"] > 16_000_000 and g["limit"] == 16_000_000
    assert "over the 16,000,000-byte cap" in result["reason"]


def test_golf_timings_past_the_caps_are_budget_overruns(golf, tmp_path):
    out = run_golf(golf, tmp_path, FAKE_TRAIN_MS="612400")
    result = evaluate("parameter-golf", [out], tmp_path)
    assert result["label"] == "train_budget_overrun"
    assert "training took 612.4 s" in result["reason"]
    out = run_golf(golf, tmp_path, name="run1", FAKE_TTT_MS="480000")
    result = evaluate("parameter-golf", [out], tmp_path)
    assert result["label"] == "eval_budget_overrun"
    assert gate(result, "eval_time_s")["value"] == pytest.approx((7480 + 9911 + 118336 + 480000) / 1000)
    # the step that crosses the wallclock cap is allowed its overshoot
    out = run_golf(golf, tmp_path, name="run2", FAKE_TRAIN_MS="600036")
    assert evaluate("parameter-golf", [out], tmp_path)["label"] is None


def test_golf_without_a_final_line_is_a_crash_with_a_clear_reason(golf, tmp_path):
    out = run_golf(golf, tmp_path, FAKE_STOP="crash")
    result = evaluate("parameter-golf", [out], tmp_path)
    assert result["score"] is None and result["label"] == "crash"
    assert "no final evaluation line" in result["reason"]
    assert "final_int8_zlib_roundtrip_exact" in result["reason"] and "quantized_ttt" in result["reason"]
    empty = tmp_path / "empty"
    empty.mkdir()
    result = evaluate("parameter-golf", [empty], tmp_path)
    assert result["label"] == "crash" and "no log in" in result["reason"]


def test_golf_reads_recorded_logs_in_both_official_formats(tmp_path):
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "train.log").write_text((LOGS / "clean_run.log").read_text())
    result = evaluate("parameter-golf", [clean], tmp_path)
    assert result["label"] is None
    assert result["score"] == pytest.approx(1.08079352)
    assert result["metrics"]["artifact_bytes"] == 15_991_930  # as logged: no model file in the folder
    baseline = tmp_path / "baseline"
    baseline.mkdir()
    (baseline / "train.log").write_text("\n".join([
        "step:13780/20000 val_loss:2.0606 val_bpb:1.2172 train_time:600036ms step_avg:43.54ms",
        "stopping_early: wallclock_cap train_time:600036ms step:13780/20000",
        "Total submission size: 67272666 bytes",
        "Total submission size int8+zlib: 15863489 bytes",
        "final_int8_zlib_roundtrip val_loss:2.0727 val_bpb:1.2244 eval_time:1402ms",
        "final_int8_zlib_roundtrip_exact val_loss:2.07269931 val_bpb:1.22436570",
    ]))
    result = evaluate("parameter-golf", [baseline], tmp_path)
    assert result["label"] is None
    assert result["score"] == pytest.approx(1.22436570)  # the _exact line's digits
    assert result["metrics"]["artifact_bytes"] == 15_863_489  # the int8+zlib line, not the raw checkpoint
    # pinning a label
    result = evaluate("parameter-golf", [clean], tmp_path, "--score-label", "^quantized_sliding_window$")
    assert result["score"] == pytest.approx(1.08290194)


def test_golf_nan_evaluation_is_diverged(tmp_path):
    run = tmp_path / "nan"
    run.mkdir()
    (run / "train.log").write_text((LOGS / "nan_loss.log").read_text())
    result = evaluate("parameter-golf", [run], tmp_path)
    assert result["label"] == "diverged" and result["score"] is None


def test_golf_several_seeds_average(golf, tmp_path):
    outs = [run_golf(golf, tmp_path, name=f"seed{i}") for i in range(2)]
    result = evaluate("parameter-golf", outs, tmp_path)
    assert result["score"] == pytest.approx(1.08079352)
    assert result["metrics"]["val_bpb_sd"] == pytest.approx(0.0)


# ---------------------------------------------------------------------------------------------
# nanochat-d12

FAKE_BASE_TRAIN = '''\
import os, sys
from pathlib import Path
base = Path(os.environ["NANOCHAT_BASE_DIR"])
assert (base / "tokenizer" / "tokenizer.pkl").is_file(), "tokenizer missing from the overlay"
assert "--depth=12" in sys.argv
print("Vocab size: 32,768")
print("Step 00000 | Validation bpb: 3.342118")
print("step 04535/04536 (99.98%) | loss: 2.901223 | lrm: 0.05 | dt: 1150.12ms | tok/sec: 455,853 | total time: 86.93m")
print("Step 04536 | Validation bpb: 0.876543")
print("Peak memory usage: 61234.56MiB")
print("Total training time: 86.95m")
print("Minimum validation bpb: 0.876543")
ckpt = base / "base_checkpoints" / "d12"
ckpt.mkdir(parents=True, exist_ok=True)
(ckpt / "model_004536.pt").write_bytes(b"weights")
'''

FAKE_BASE_EVAL = '''\
import os, sys
from pathlib import Path
base = Path(os.environ["NANOCHAT_BASE_DIR"])
assert (base / "base_checkpoints" / "d12" / "model_004536.pt").is_file()
core = os.environ.get("FAKE_CORE", "0.221900")
print("Evaluating model: base_model (step 4536)")
print("Evaluating: hellaswag_zeroshot (0-shot, type: multiple_choice)... accuracy: 0.3120 | centered: 0.0827 | time: 12.30s")
if core != "none":
    (base / "base_eval").mkdir(exist_ok=True)
    (base / "base_eval" / "base_model_004536.csv").write_text(
        f"Task                               , Accuracy  , Centered  \\nCORE                               ,           , {core}\\n")
    print(f"CORE metric: {float(core):.4f}")
'''


@pytest.fixture
def nanochat(tmp_path):
    """(workspace, prepared data): the user's base dir prepared by the task's own prepare command,
    which holds the eval bundle out of the train split."""
    ws = tmp_path / "ws"
    (ws / "scripts").mkdir(parents=True)
    (ws / "scripts" / "base_train.py").write_text(FAKE_BASE_TRAIN)
    (ws / "scripts" / "base_eval.py").write_text(FAKE_BASE_EVAL)
    base = tmp_path / "nanochat_base"
    (base / "tokenizer").mkdir(parents=True)
    (base / "tokenizer" / "tokenizer.pkl").write_bytes(b"tok")
    (base / "eval_bundle").mkdir()
    (base / "eval_bundle" / "core.yaml").write_text("tasks: []\n")
    data = tmp_path / "prepared"
    words = shlex.split(spec("nanochat-d12")["commands"]["prepare"])
    prep = [w.format(python=sys.executable, task=task_dir("nanochat-d12"), data=data) for w in words]
    proc = subprocess.run(prep, env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
                                     "NANOCHAT_BASE_DIR": str(base)}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return ws, data


def test_nanochat_prepare_holds_the_eval_bundle_out_of_the_train_split(nanochat):
    _, data = nanochat
    assert sorted(p.name for p in (data / "train").iterdir()) == ["tokenizer"]
    assert sorted(p.name for p in (data / "heldout").iterdir()) == ["eval_bundle"]
    assert (data / "heldout" / "eval_bundle" / "core.yaml").is_file()


def nanochat_train_args(ws: Path) -> list[str]:
    """The task's own train command, torchrun swapped for `python -m`."""
    words = shlex.split(spec("nanochat-d12")["commands"]["train"])
    args = words[words.index("run") + 1: words.index("--")]
    assert not any("base_eval" in a for a in args)  # CORE is the evaluate phase's, never the recipe's
    return [a.replace("{ws}", str(ws)) for a in args] + ["--", sys.executable, "-m", "scripts.base_train",
                                                         "--depth=12", "--model-tag=d12"]


def run_nanochat(nanochat, tmp_path, name="run0", **env) -> Path:
    ws, data = nanochat
    out = tmp_path / name
    proc = launch("nanochat-d12", ws, out, data / "train", nanochat_train_args(ws), extra_env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def core_args(nanochat) -> list[str]:
    """The task's evaluate arguments for the CORE evaluation, torchrun swapped for `python -m`."""
    ws, data = nanochat
    words = shlex.split(spec("nanochat-d12")["commands"]["evaluate"])
    assert "--core-command" in words and "{ws}" in words
    return ["--workspace", str(ws), "--data", str(data),
            "--core-command", f"{shlex.quote(sys.executable)} -m scripts.base_eval --eval core --model-tag d12"]


def test_nanochat_scores_core_from_base_eval(nanochat, tmp_path):
    out = run_nanochat(nanochat, tmp_path)
    assert (out / "train.log").is_file()  # the task's artifact
    assert not (nanochat[1] / "train" / "base_checkpoints").exists()  # nothing written into the user's base dir
    result = evaluate("nanochat-d12", [out], tmp_path, "--train-wall-s", "5300", *core_args(nanochat))
    assert result["label"] is None
    assert result["score"] == pytest.approx(0.2219)
    assert result["metrics"]["val_bpb"] == pytest.approx(0.876543)
    assert result["metrics"]["train_time_s"] == pytest.approx(86.95 * 60)
    assert gate(result, "train_wall_s") == {"name": "train_wall_s", "passed": True, "value": 5300.0, "limit": 5400.0}


def test_a_core_line_the_training_process_prints_is_not_the_score(nanochat, tmp_path):
    out = run_nanochat(nanochat, tmp_path)
    with open(out / "train.log", "a") as f:
        f.write("CORE metric: 0.9999\n")  # what a recipe could print
    result = evaluate("nanochat-d12", [out], tmp_path, *core_args(nanochat))
    assert result["score"] == pytest.approx(0.2219)


def test_nanochat_over_90_minutes_is_a_train_budget_overrun(nanochat, tmp_path):
    out = run_nanochat(nanochat, tmp_path)
    result = evaluate("nanochat-d12", [out], tmp_path, "--train-wall-s", "5460", *core_args(nanochat))
    assert result["label"] == "train_budget_overrun"
    assert "91.0 min of wall time, over the 90-minute budget" in result["reason"]


def test_nanochat_without_core_is_a_crash_with_a_clear_reason(nanochat, tmp_path):
    out = run_nanochat(nanochat, tmp_path)
    result = evaluate("nanochat-d12", [out], tmp_path, *core_args(nanochat), env={"FAKE_CORE": "none"})
    assert result["score"] is None and result["label"] == "crash"
    assert "no CORE metric" in result["reason"] and "CORE metric: <x>" in result["reason"]


def test_nanochat_without_a_checkpoint_is_a_crash(nanochat, tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "train.log").write_text("Step 00000 | Validation bpb: 3.342118\n")
    result = evaluate("nanochat-d12", [run], tmp_path, *core_args(nanochat))
    assert result["label"] == "crash" and "no checkpoint" in result["reason"]


def test_nanochat_recorded_logs_accept_base_train_core_lines_and_the_csv(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "train.log").write_text("Step 02000 | CORE metric: 0.1502\nStep 04536 | CORE metric: 0.1618\n"
                                   "Step 04536 | Validation bpb: 0.880000\n")
    assert evaluate("nanochat-d12", [run], tmp_path)["score"] == pytest.approx(0.1618)
    (run / "train.log").write_text("no score here\n")
    (run / "core_eval.csv").write_text("Task , Accuracy , Centered\nCORE                               ,           , 0.204400  \n")
    assert evaluate("nanochat-d12", [run], tmp_path)["score"] == pytest.approx(0.2044)


# ---------------------------------------------------------------------------------------------
# airbench96

FAKE_AIRBENCH = '''\
import os, uuid
from pathlib import Path
assert Path("cifar10/train.pt").is_file() and Path("cifar10/test.pt").is_file()
assert os.environ["RUNS"] == "1"
seed = int(os.environ["MAGENT_SEED"])
acc = float(os.environ.get("FAKE_ACC", "0.9603")) + (0.0004 if seed % 2 else -0.0004)
cols = ["run   ", "epoch", "train_loss", "train_acc", "val_acc", "tta_val_acc", "total_time_seconds"]
def row(values):
    print("".join("|  %s  " % v.rjust(len(c)) for v, c in zip(values, cols)) + "|")
print("Proxy parameters: 12345")
print("-" * 103)
print("".join("|  %s  " % c for c in cols) + "|")
print("-" * 103)
row([str(seed), "0", "0.0281", "0.7500", "0.6812", "", "2.9213"])
row(["", "eval", "0.0021", "0.9990", "%.4f" % (acc - 0.0015), "%.4f" % acc, "26.3409"])
print("-" * 103)
print("Mean: %.4f    Std: 0.0000" % acc)
d = Path("logs") / str(uuid.uuid4())
d.mkdir(parents=True)
(d / "log.pt").write_bytes(b"accs")
'''


@pytest.fixture
def airbench(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "airbench96_faster.py").write_text(FAKE_AIRBENCH)
    data = tmp_path / "cifar10"
    data.mkdir()
    (data / "train.pt").write_bytes(b"train")
    (data / "test.pt").write_bytes(b"test")
    return ws, data


def airbench_args() -> list[str]:
    words = shlex.split(spec("airbench96")["commands"]["train"])
    args = words[words.index("run") + 1: words.index("--")]
    return [a.replace("{ws}", ".") for a in args] + ["--", sys.executable, "airbench96_faster.py"]


def run_airbench(airbench, tmp_path, seeds=3, **env) -> list[Path]:
    ws, data = airbench
    outs = []
    for seed in range(seeds):
        out = tmp_path / f"seed{seed}"
        proc = launch("airbench96", ws, out, data, airbench_args(), seed=seed, extra_env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert (out / "log.pt").is_file()
        outs.append(out)
    return outs


def test_airbench_score_is_the_runners_wall_time_gated_on_accuracy(airbench, tmp_path):
    outs = run_airbench(airbench, tmp_path)
    result = evaluate("airbench96", outs, tmp_path, "--train-wall-s", "26.1,26.5,26.3")
    assert result["label"] is None
    assert result["score"] == pytest.approx(26.3)
    m = result["metrics"]
    assert m["accuracy"] == pytest.approx((0.9599 + 0.9607 + 0.9599) / 3)
    assert m["n_runs"] == 3 and m["recipe_time_s"] == pytest.approx(26.3409)
    g = gate(result, "accuracy")
    assert g["passed"] is True and g["limit"] == 0.96


def test_airbench_below_96_percent_is_disqualified(airbench, tmp_path):
    outs = run_airbench(airbench, tmp_path, FAKE_ACC="0.9595")
    result = evaluate("airbench96", outs, tmp_path, "--train-wall-s", "25.0,25.0,25.0")
    assert result["label"] == "disqualified"
    assert result["score"] == pytest.approx(25.0)
    assert "mean accuracy 0.9594 over 3 runs is below the 0.96 gate" in result["reason"]
    assert gate(result, "accuracy")["passed"] is False


def test_airbench_needs_the_runners_timings_and_accuracy_lines(airbench, tmp_path):
    outs = run_airbench(airbench, tmp_path, seeds=1)
    result = evaluate("airbench96", outs, tmp_path)
    assert result["score"] is None and result["label"] == "crash"
    assert "--train-wall-s" in result["reason"]
    (outs[0] / "train.log").write_text("Proxy parameters: 12345\nTraining small proxy...\n")
    result = evaluate("airbench96", outs, tmp_path, "--train-wall-s", "26.0")
    assert result["label"] == "crash" and "no accuracy" in result["reason"] and "eval" in result["reason"]


def test_airbench_accepts_the_cmu_fork_summary_line(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "train.log").write_text("RUNS=2 mean_acc=0.9611 std=0.0010 warmup_s=40.12 train_s=25.14 smoke=False\n")
    result = evaluate("airbench96", [run], tmp_path, "--train-wall-s", "66.0")
    assert result["metrics"]["n_runs"] == 2 and result["metrics"]["accuracy"] == pytest.approx(0.9611)


# ---------------------------------------------------------------------------------------------
# launcher and specs


def test_launcher_copies_are_identical():
    copies = {name: (task_dir(name) / "evaluator" / "launch.py").read_bytes() for name in TASKS}
    assert len(set(copies.values())) == 1


def test_launcher_passes_a_signal_death_through(tmp_path):
    out = tmp_path / "out"
    script = "import os, signal; print('dying', flush=True); os.kill(os.getpid(), signal.SIGKILL)"
    proc = launch("parameter-golf", tmp_path, out, tmp_path, ["--", sys.executable, "-c", script])
    assert proc.returncode == -signal.SIGKILL
    assert (out / "train.log").read_text() == "dying\n"
    proc = launch("parameter-golf", tmp_path, out, tmp_path, ["--", sys.executable, "-c", "raise SystemExit(3)"])
    assert proc.returncode == 3


def test_prepare_links_the_data_or_says_what_to_set(tmp_path):
    shards = tmp_path / "pg-data"
    (shards / "datasets").mkdir(parents=True)
    words = shlex.split(spec("parameter-golf")["commands"]["prepare"])
    prep = [w.format(python=sys.executable, task=task_dir("parameter-golf"), data=tmp_path / "prepared")
            for w in words]
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    proc = subprocess.run(prep, env=env, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "set ARLEDGER_DATA_PARAMETER_GOLF=/path/to/data" in proc.stderr
    proc = subprocess.run(prep, env={**env, "ARLEDGER_DATA_PARAMETER_GOLF": str(shards)}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "prepared" / "train").resolve() == shards.resolve()
    assert (tmp_path / "prepared" / "heldout").is_dir()
    # idempotent, and the records' own DATA_DIR works too
    proc = subprocess.run(prep, env={**env, "DATA_DIR": str(shards)}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_prepare_resolves_a_default_against_the_checkout(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "cifar10").mkdir(parents=True)
    launcher = str(task_dir("airbench96") / "evaluator" / "launch.py")
    prep = [sys.executable, launcher, "prepare", "--data", str(tmp_path / "prepared"),
            "--task-dir", str(task_dir("airbench96")), "--default", "cifar10"]
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    proc = subprocess.run(prep, env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "ARLEDGER_CHECKOUT_AIRBENCH96" in proc.stderr
    proc = subprocess.run(prep, env={**env, "ARLEDGER_CHECKOUT_AIRBENCH96": str(checkout)}, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "prepared" / "train").resolve() == (checkout / "cifar10").resolve()


@pytest.mark.parametrize("name", sorted(TASKS))
def test_spec_is_consistent_with_its_evaluator_and_the_paper(name):
    s = spec(name)
    t = s["task"]
    assert t["name"] == name and t["recipe_dir"] == "{checkout}"
    assert [sp["name"] for sp in s["specialists"]] == PAPER_SPECIALISTS[name]
    for sp in s["specialists"]:
        surface = s["surfaces"][sp["surface"]]
        assert set(surface["files"]) <= set(t["recipe_files"])
    for f in t["evaluator_files"]:
        assert (task_dir(name) / f).is_file(), f
    assert (task_dir(name) / "README.md").read_text().count(f"ARLEDGER_CHECKOUT_{TASKS[name].upper()}") >= 1
    placeholders = dict(python="python", task="/t", data="/d", ws="/w", out="/o", eval_dir="/e", runs="/r",
                        result="/r.json")
    for key, command in s["commands"].items():
        assert shlex.split(command.format(**placeholders)), key  # only the SPEC's placeholders
    evaluate_cmd = s["commands"]["evaluate"]
    gates = s.get("gates", {})
    if "artifact_max_bytes" in gates:
        assert f"--max-bytes {gates['artifact_max_bytes']}" in evaluate_cmd
    if "accuracy_min" in gates:
        assert f"--accuracy-min {gates['accuracy_min']}" in evaluate_cmd


def _spec_module():
    return pytest.importorskip("tasks.spec", reason="tasks/spec.py (the task loader) is not written yet")


def _fake_checkout(name: str, root: Path) -> Path:
    for rel in spec(name)["task"]["recipe_files"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("# stand-in\n")
    return root


@pytest.mark.parametrize("name", sorted(TASKS))
def test_spec_validates_with_the_project_loader(name, tmp_path):
    """Everything but the {checkout} placeholder, checked by tasks.spec: the task dir is copied and
    its recipe_dir pointed at a stand-in checkout inside the copy."""
    spec_mod = _spec_module()
    copy = tmp_path / TASKS[name]
    shutil.copytree(task_dir(name), copy, ignore=shutil.ignore_patterns("__pycache__"))
    _fake_checkout(name, copy / "checkout")
    text = (copy / "task.toml").read_text()
    assert 'recipe_dir = "{checkout}"' in text
    (copy / "task.toml").write_text(text.replace('recipe_dir = "{checkout}"', 'recipe_dir = "checkout"'))
    loaded = spec_mod.load_task(copy)
    assert loaded.name == name
    assert [sp.name for sp in loaded.specialists] == PAPER_SPECIALISTS[name]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_spec_loads_from_a_checkout_given_by_the_environment(name, tmp_path, monkeypatch):
    spec_mod = _spec_module()
    checkout = _fake_checkout(name, tmp_path / "checkout")
    monkeypatch.setenv(f"ARLEDGER_CHECKOUT_{TASKS[name].upper()}", str(checkout))
    try:
        loaded = spec_mod.load_task(task_dir(name))
    except spec_mod.TaskSpecError as e:
        if "{checkout}" in str(e):
            pytest.skip("tasks/spec.py does not resolve recipe_dir = \"{checkout}\" (ARLEDGER_CHECKOUT_<TASK> or "
                        "a [task] checkout key) yet")
        raise
    assert loaded.name == name
    assert Path(loaded.recipe_path).resolve() == checkout.resolve()
