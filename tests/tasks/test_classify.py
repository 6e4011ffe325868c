"""What a user sees when a run ends: its label, the reason and a one-line excerpt.

The fixtures under ``fixtures/logs/`` are written to look like the real thing: torchrun output with
``[rankN]:`` prefixes and interleaved ranks, ``ChildFailedError`` wrappers (with and without the
child's traceback embedded), a CUDA OOM in nanochat, a NaN loss in Parameter Golf's baseline
format, a clean 2026-04 record run and a run stopped at the budget.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tasks.classify import EXCERPT_MAX, classify_run, crash_excerpt, parse_metric_lines

LOGS = Path(__file__).parent / "fixtures" / "logs"
PG = ["train_gpt.py"]
NC = ["scripts/base_train.py", "nanochat/gpt.py", "nanochat/optim.py", "nanochat/dataloader.py"]


def log(name: str) -> str:
    return (LOGS / name).read_text()


# ---------------------------------------------------------------------------------------------
# excerpts


def test_torchrun_child_failure_names_the_child_exception_and_the_recipe_frame():
    text = log("torchrun_child_failed.log")
    excerpt = crash_excerpt(text, PG)
    assert excerpt.startswith("RuntimeError: shape mismatch: value tensor of shape [8, 2048, 4, 64]")
    assert excerpt.endswith("(train_gpt.py:1401 in step_fn)")
    # not the wrapper's banner, which is all the original harness could show
    assert "ChildFailedError" not in excerpt and "=====" not in excerpt
    assert len(excerpt) <= EXCERPT_MAX


def test_traceback_embedded_in_child_failed_error_is_found():
    excerpt = crash_excerpt(log("torchrun_embedded_traceback.log"), PG)
    assert excerpt.startswith("torch._C._LinAlgError: linalg.cholesky: The factorization could not be completed")
    assert excerpt.endswith("(train_gpt.py:945 in gptq_quantize_weight)")
    assert len(excerpt) <= EXCERPT_MAX


def test_recipe_frames_match_relative_paths_and_long_messages_are_cut():
    excerpt = crash_excerpt(log("cuda_oom.log"), NC)
    assert excerpt.startswith("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 16.00 GiB.")
    assert excerpt.endswith("… (nanochat/gpt.py:409 in forward)")
    assert len(excerpt) == EXCERPT_MAX


def test_wrapper_without_any_child_traceback_reports_the_child_exit():
    text = "\n".join([
        "step:10/20000 train_loss:4.1 train_time:500ms",
        "Traceback (most recent call last):",
        '  File "/usr/local/bin/torchrun", line 8, in <module>',
        "    sys.exit(main())",
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: ",
        "============================================================",
        "train_gpt.py FAILED",
        "Root Cause (first observed failure):",
        "[0]:",
        "  rank      : 0 (local_rank: 0)",
        "  exitcode  : -11 (pid: 4410)",
        "  traceback : Signal 11 (SIGSEGV) received by PID 4410",
        "============================================================",
    ])
    assert crash_excerpt(text, PG) == "ChildFailedError: child killed by signal 11 (SIGSEGV)"


def test_chained_exceptions_keep_the_one_raised_through_the_recipe():
    text = "\n".join([
        "Traceback (most recent call last):",
        '  File "/ws/train.py", line 40, in <module>',
        "    main()",
        '  File "/ws/train.py", line 33, in main',
        "    w = load(cfg)",
        "KeyError: 'n_layer'",
        "",
        "During handling of the above exception, another exception occurred:",
        "",
        "Traceback (most recent call last):",
        '  File "/usr/lib/python3.11/logging/__init__.py", line 1110, in emit',
        "    stream.write(msg)",
        "BrokenPipeError: [Errno 32] Broken pipe",
    ])
    assert crash_excerpt(text, ["train.py"]) == "KeyError: 'n_layer' (train.py:33 in main)"


def test_without_a_traceback_the_excerpt_is_the_last_lines():
    text = "loading shards\n\nstep 1 loss 3.2\nstep 2 loss 3.1\n=====\n\n"
    assert crash_excerpt(text, PG) == "loading shards | step 1 loss 3.2 | step 2 loss 3.1"
    long = "x" * 1000
    assert crash_excerpt(long, PG) == "…" + "x" * (EXCERPT_MAX - 1)
    assert crash_excerpt("", PG) == ""


def test_segfault_shows_the_faulthandler_frame_in_the_recipe():
    text = "\n".join([
        "step 3",
        "Fatal Python error: Segmentation fault",
        "",
        "Thread 0x00007f3a (most recent call first):",
        '  File "/opt/torch/_ops.py", line 9 in __call__',
        '  File "/ws/train_gpt.py", line 812 in gptq_quantize_weight',
        '  File "/ws/train_gpt.py", line 1590 in main',
    ])
    assert crash_excerpt(text, PG) == "Fatal Python error: Segmentation fault (train_gpt.py:812 in gptq_quantize_weight)"


# ---------------------------------------------------------------------------------------------
# labels


def test_child_failure_is_a_crash_with_the_child_excerpt():
    label, reason, excerpt = classify_run(1, None, False, log("torchrun_child_failed.log"), PG)
    assert label == "crash"
    assert reason == "exited with status 1"
    assert excerpt.endswith("(train_gpt.py:1401 in step_fn)")


def test_cuda_oom_is_oom():
    label, reason, excerpt = classify_run(1, None, False, log("cuda_oom.log"), NC)
    assert (label, reason) == ("oom", "GPU out of memory")
    assert "torch.OutOfMemoryError" in excerpt


@pytest.mark.parametrize("text", [
    "Traceback (most recent call last):\n  File \"/ws/train.py\", line 3, in <module>\n    x = [0] * (1 << 62)\nMemoryError\n",
    "RuntimeError: [enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
    "you tried to allocate 1099511627776 bytes. Error code 12 (Cannot allocate memory)\n",
])
def test_host_memory_exhaustion_is_oom(text):
    label, reason, _ = classify_run(1, None, False, text, ["train.py"])
    assert (label, reason) == ("oom", "host out of memory")


@pytest.mark.parametrize("exit_status,sig", [(-9, None), (None, 9), (137, None)])
def test_sigkill_without_a_timeout_is_the_oom_killer(exit_status, sig):
    label, reason, excerpt = classify_run(exit_status, sig, False, "step 1\nstep 2\n", PG)
    assert label == "oom"
    assert "kernel OOM killer" in reason and "dmesg" in reason
    assert excerpt == "step 1 | step 2"


def test_oom_killer_seen_through_torchrun_names_the_evidence():
    text = "step:90/20000 train_loss:3.9\nKilled\n  exitcode  : -9 (pid: 811)\n" \
           "  traceback : Signal 9 (SIGKILL) received by PID 811\n"
    label, reason, _ = classify_run(1, None, False, text, PG)
    assert label == "oom"
    assert "'Killed'" in reason


def test_nan_loss_is_diverged_with_the_step_it_started():
    label, reason, excerpt = classify_run(0, None, False, log("nan_loss.log"), PG)
    assert label == "diverged"
    assert reason == "train_loss became nan at step 4 and never recovered (final val_loss is nan)"
    assert excerpt == "step:4/20000 train_loss:nan train_time:174ms step_avg:43.62ms"


def test_metric_lines_with_a_non_finite_loss_are_diverged():
    text = "metric loss=2.31 step=1\nmetric loss=inf step=2\nmetric loss=2.12 step=3\n"
    assert classify_run(0, None, False, text, PG)[:2] == ("diverged", "loss became inf at step 2")


def test_a_divergence_message_or_a_nan_exception_is_diverged():
    assert classify_run(0, None, False, "step 40 lr 0.4\nloss diverged, stopping\n", PG)[0] == "diverged"
    text = ("Traceback (most recent call last):\n  File \"/ws/train.py\", line 30, in <module>\n"
            "    raise FloatingPointError(f\"loss is nan at step {step}\")\n"
            "FloatingPointError: loss is nan at step 31\n")
    label, _, excerpt = classify_run(1, None, False, text, ["train.py"])
    assert label == "diverged"
    assert excerpt == "FloatingPointError: loss is nan at step 31 (train.py:30 in <module>)"


def test_clean_run_has_no_label():
    assert classify_run(0, None, False, log("clean_run.log"), PG) == (None, "", "")


def test_timeout_is_the_budget_overrun_of_its_phase():
    text = log("timeout.log")
    label, reason, excerpt = classify_run(None, 15, True, text, NC)
    assert label == "train_budget_overrun"
    assert reason == "ran past the train budget and was stopped"
    # the excerpt shows how far it got, not torchrun's shutdown chatter
    assert excerpt.startswith("step 02751/04536 (60.65%)")
    assert classify_run(-15, None, True, text, NC, budget_kind="eval")[0] == "eval_budget_overrun"
    with pytest.raises(ValueError):
        classify_run(0, None, True, text, NC, budget_kind="preflight")


def test_other_failures_are_crashes():
    assert classify_run(None, 11, False, "step 3\n", PG)[:2] == ("crash", "killed by signal 11 (SIGSEGV)")
    assert classify_run(2, None, False, "usage: train.py [-h]\n", PG)[:2] == ("crash", "exited with status 2")
    label, reason, excerpt = classify_run(0, None, False, "done\n", PG, artifact_present=False)
    assert (label, reason, excerpt) == ("crash", "exited cleanly but did not write the artifact", "done")


def test_a_caught_oom_in_a_successful_run_is_not_a_failure():
    text = "batch 64: CUDA out of memory, retrying with 32\nstep 10 loss 2.0\ndone\n"
    assert classify_run(0, None, False, text, PG) == (None, "", "")


# ---------------------------------------------------------------------------------------------
# metric lines


def test_parse_metric_lines():
    text = "\n".join([
        "metric loss=2.5 acc=0.5 step=10",
        "not a metric line loss=1",
        "[rank0]: metric loss=nan step=11",
        "metric lr=0.1",
        "metric bad=x ok=1e-3 step=12",
        "  metric grad_norm=inf step=13",
    ])
    got = parse_metric_lines(text)
    assert [(s, n) for s, n, _ in got] == [(10, "loss"), (10, "acc"), (11, "loss"), (11, "lr"), (12, "ok"),
                                          (13, "grad_norm")]
    assert got[0][2] == 2.5 and math.isnan(got[2][2]) and got[4][2] == 0.001 and got[5][2] == math.inf
    assert parse_metric_lines("") == []
