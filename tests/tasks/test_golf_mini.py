"""golf-mini: data preparation, the train/held-out split, recipe -> artifact -> evaluator, gates."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tasks.data import cache_dir, sha256_file
from tasks.knobs import set_knob
from tasks.spec import load_task
from tests.tasks import evalmods, minidriver
from tests.tasks import golf_driver as drv

REPO = Path(__file__).resolve().parents[2]
SPEC = load_task("golf-mini")
SRC = SPEC.data[0]
EVAL_DIR = SPEC.root / "evaluator"


def _evaluator_module(name: str):
    return evalmods.load(SPEC.root / "evaluator", name)


A = _evaluator_module("artifact")
TOK = _evaluator_module("tokenizer")
EV = _evaluator_module("evaluate")


def evaluate_in_process(runs: list[Path], data: Path, code_bytes: int) -> dict:
    """evaluate.py's scoring, without a process start (the CLI path is tested once, below)."""
    return EV.evaluate(runs, data / "heldout", code_bytes, EV.MAX_BYTES, [1.0] * len(runs), "cpu")


def run_prepare(data: Path, cache: Path, offline: bool = False) -> subprocess.CompletedProcess:
    return minidriver.run_prepare(SPEC, data, cache, offline, timeout=600)


@pytest.fixture(scope="module")
def seeded_cache(tmp_path_factory) -> Path:
    """A private cache holding the source tarball, copied from the user's cache when it has it."""
    cache = tmp_path_factory.mktemp("cache")
    real = cache_dir() / "downloads" / SRC.filename
    if real.is_file() and sha256_file(real) == SRC.sha256:
        (cache / "downloads").mkdir()
        shutil.copyfile(real, cache / "downloads" / SRC.filename)
    return cache


@pytest.fixture(scope="module")
def data(seeded_cache, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    proc = run_prepare(d, seeded_cache)
    if proc.returncode != 0 and "could not download" in proc.stderr:
        pytest.skip(f"source data not cached and not downloadable: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    return d


def test_prepare_writes_the_split_and_is_idempotent(data, seeded_cache):
    manifest = json.loads((data / "manifest.json").read_text())
    files = {rel: (data / rel).stat().st_mtime_ns for rel in manifest["files"]}
    proc = run_prepare(data, seeded_cache, offline=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((data / "manifest.json").read_text()) == manifest
    assert {rel: (data / rel).stat().st_mtime_ns for rel in manifest["files"]} == files  # nothing rewritten
    for rel, sha in manifest["files"].items():
        assert sha256_file(data / rel) == sha
    assert manifest["source"]["sha256"] == SRC.sha256
    assert 150_000 <= manifest["bytes"]["heldout/heldout.txt"] <= 250_000


def test_prepare_repairs_a_tampered_data_file(data, seeded_cache, tmp_path):
    d = tmp_path / "data"
    shutil.copytree(data, d)
    (d / "heldout" / "heldout.txt").write_bytes(b"tampered")
    assert run_prepare(d, seeded_cache, offline=True).returncode == 0
    assert (d / "heldout" / "heldout.txt").read_bytes() == (data / "heldout" / "heldout.txt").read_bytes()


def test_a_corrupt_cache_file_is_detected_and_refetched(data, seeded_cache, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(seeded_cache, cache)
    cached = cache / "downloads" / SRC.filename
    cached.write_bytes(b"not the tarball")
    proc = run_prepare(tmp_path / "d1", cache, offline=True)  # detected: refused, never used
    assert proc.returncode == 1
    assert "ARLEDGER_OFFLINE" in proc.stderr and SRC.sha256 in proc.stderr
    assert not cached.exists()  # the corrupt entry was discarded
    proc = run_prepare(tmp_path / "d2", cache)
    if proc.returncode != 0 and "could not download" in proc.stderr:
        pytest.skip("no network to refetch the source")
    assert proc.returncode == 0, proc.stderr
    assert sha256_file(cached) == SRC.sha256
    assert (tmp_path / "d2" / "train" / "train.txt").read_bytes() == (data / "train" / "train.txt").read_bytes()


def test_train_and_heldout_share_no_work(data):
    manifest = json.loads((data / "manifest.json").read_text())
    train = {w["work"] for w in manifest["split"]["train"]}
    held = {w["work"] for w in manifest["split"]["heldout"]}
    assert train and held and not train & held
    assert len(held) / (len(train) + len(held)) == pytest.approx(0.15, abs=0.03)
    assert not {w["sha256"] for w in manifest["split"]["train"]} & {w["sha256"] for w in manifest["split"]["heldout"]}
    assert not any(n.endswith("_f") for n in train | held)  # one (modern-spelling) edition per work
    train_text = (data / "train" / "train.txt").read_bytes()
    held_text = (data / "heldout" / "heldout.txt").read_bytes()
    rng = random.Random(0)
    for _ in range(20):  # no 400-byte stretch of held-out text occurs in the train text
        i = rng.randrange(len(held_text) - 400)
        assert held_text[i: i + 400] not in train_text
    assert sorted(p.name for p in (data / "train").iterdir()) == ["train.txt"]


# -------------------------------------------------------------------------------- artifact + tokenizer


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7, 8])
def test_quantize_round_trip_error_is_bounded(bits):
    rng = np.random.default_rng(bits)
    w = rng.standard_normal(1000).astype(np.float32)
    blob = A.quantize(w, bits, 64)
    assert len(blob) == A.quantized_size(w.size, bits, 64)
    back = A.dequantize(blob, w.size, bits, 64)
    step = np.abs(w).max() / (2 ** (bits - 1) - 1)
    assert np.abs(back - w).max() <= step * 0.51 + 1e-3


@pytest.mark.parametrize("compressor", ["none", "zlib", "lzma", "zstd"])
def test_artifact_pack_unpack(compressor):
    tensors = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(5, dtype=np.float32)}
    blob = A.pack({"k": 1}, tensors, [(1, 2), (256, 3)], {"a": (8, 4), "b": (16, 0)}, compressor)
    cfg, merges, got = A.unpack(blob)
    assert cfg == {"k": 1} and merges == [[1, 2], [256, 3]]
    assert np.allclose(got["a"], tensors["a"], atol=0.05) and np.array_equal(got["b"], tensors["b"])
    with pytest.raises(A.ArtifactError):
        A.unpack(blob[:-3])


def test_tokenizer_merges_and_byte_accounting():
    data = b"aaaaab abab aaa"
    merges = [(97, 97), (97, 98), (256, 256)]
    ids = TOK.encode(data, merges)
    assert int(TOK.token_bytes(merges)[ids].sum()) == len(data)
    assert list(TOK.encode(b"aaaa", [(97, 97)])) == [256, 256]
    assert list(TOK.encode(b"aaa", [(97, 97)])) == [256, 97]
    with pytest.raises(TOK.TokenizerError):
        TOK.check_merges([[1, 300]])


# ------------------------------------------------------------------------------ recipe -> evaluator

TINY = {"MAX_STEPS": 3, "N_LAYER": 1, "N_EMBD": 32, "BATCH_SIZE": 8, "TOK_MERGES": 16,
        "TOK_SAMPLE_BYTES": 100_000, "QUANT_BITS": 6}


def tiny_recipe(extra: dict | None = None, prepend: str = "") -> str:
    text = (SPEC.recipe_path / "train.py").read_text()
    for name, value in {**TINY, **(extra or {})}.items():
        text = set_knob(text, name, value)
    if prepend:  # after the module docstring's imports, before any training
        text = text.replace("\nimport os\n", "\nimport os\n" + prepend, 1)
    return text


@pytest.fixture(scope="module")
def tiny_run(data, tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    code_bytes = drv.stage_workspace(root / "ws", edits={"train.py": tiny_recipe()})
    proc, wall = drv.train(root / "ws", data, root / "out", seed=1, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return root, code_bytes, wall, proc


def test_tiny_baseline_trains_and_scores(tiny_run, data):
    root, code_bytes, wall, proc = tiny_run
    assert "metric train_loss=" in proc.stdout
    eproc, res, _ = drv.evaluate([root / "out"], data, root / "result.json", code_bytes, [wall])
    assert eproc.returncode == 0, eproc.stderr
    assert res["label"] is None and res["reason"] == ""
    assert math.isfinite(res["score"]) and 1.0 < res["score"] < 9.0
    assert res["metrics"]["val_bpb"] == res["score"] and res["metrics"]["merges"] == 16
    gate = res["gates"][0]
    assert gate["name"] == "artifact_bytes" and gate["passed"]
    assert gate["value"] == code_bytes + (root / "out" / "artifact.bin").stat().st_size


def test_two_runs_average(tiny_run, data):
    root, code_bytes, _, _ = tiny_run
    res = evaluate_in_process([root / "out", root / "out"], data, code_bytes)
    assert res["metrics"]["val_bpb_runs"] == [res["score"], res["score"]]


def test_artifact_over_the_cap_is_size_blocked(tiny_run, data):
    root, _, _, _ = tiny_run
    res = evaluate_in_process([root / "out"], data, 999_000)
    assert res["label"] == "size_blocked" and res["score"] is None
    assert res["gates"][0]["passed"] is False and res["gates"][0]["limit"] == 1_000_000
    assert "over the 1,000,000-byte cap" in res["reason"]


@pytest.mark.parametrize("make,fragment", [
    (lambda good: os.urandom(5000), "not a golf-mini artifact"),
    (lambda good: good[:-50], "truncated"),
    (lambda good: good[:10] + bytes(len(good) - 10), "does not decompress"),
    (lambda good: A.MAGIC + bytes([1, 1]) + __import__("zlib").compress(b"\x05\x00\x00\x00{}xyz"), "header"),
    (lambda good: A.pack({"n_layer": 1}, {}, [], {}, "zlib"), "config"),
    (lambda good: _wrong_shapes(good), "tensor"),
    (lambda good: None, "wrote no artifact.bin"),
])
def test_garbage_artifacts_get_no_score_and_a_clear_reason(tiny_run, data, tmp_path, make, fragment):
    root, code_bytes, _, _ = tiny_run
    good = (root / "out" / "artifact.bin").read_bytes()
    run = tmp_path / "run"
    run.mkdir()
    blob = make(good)
    if blob is not None:
        (run / "artifact.bin").write_bytes(blob)
    res = evaluate_in_process([run], data, code_bytes)
    assert res["score"] is None and res["label"] is None
    assert fragment in res["reason"], res["reason"]


def _wrong_shapes(good: bytes) -> bytes:
    cfg, merges, tensors = A.unpack(good)
    cfg = {**cfg, "n_embd": 64, "n_head": 2}
    return A.pack(cfg, tensors, merges, {k: (16, 0) for k in tensors}, "zlib")


def test_recipe_environment_names_only_the_train_split(data, tmp_path):
    dump = ("import json as _j\n"
            "_o = os.environ['ARLEDGER_OUT']; os.makedirs(_o, exist_ok=True)\n"
            "_j.dump(dict(os.environ), open(os.path.join(_o, 'env.json'), 'w'))\n"
            "raise SystemExit(0)\n")
    drv.stage_workspace(tmp_path / "ws", edits={"train.py": tiny_recipe(prepend="import os\n" + dump)})
    proc, _ = drv.train(tmp_path / "ws", data, tmp_path / "out", seed=3, timeout=120)
    assert proc.returncode == 0, proc.stderr
    env = json.loads((tmp_path / "out" / "env.json").read_text())
    assert env["ARLEDGER_DATA"] == str(data / "train")
    assert {"ARLEDGER_OUT", "ARLEDGER_SEED", "ARLEDGER_THREADS", "ARLEDGER_DEVICE"} <= set(env)
    for key, value in env.items():
        assert "heldout" not in value, key
        assert str(data) not in value or value.startswith(str(data / "train")), key


def test_nan_loss_exits_with_the_diverged_message(data, tmp_path):
    text = tiny_recipe().replace("    _, loss = model(x, y)\n", "    _, loss = model(x, y)\n    loss = loss * float('nan')\n")
    drv.stage_workspace(tmp_path / "ws", edits={"train.py": text})
    proc, _ = drv.train(tmp_path / "ws", data, tmp_path / "out", seed=1, timeout=120)
    assert proc.returncode != 0
    assert "diverged: loss is nan" in proc.stderr
    assert not (tmp_path / "out" / "artifact.bin").exists()


def test_staged_evaluator_files_are_read_only_in_the_workspace(tmp_path):
    drv.stage_workspace(tmp_path / "ws")
    for rel in SPEC.stage_into_workspace:
        assert not os.access(tmp_path / "ws" / rel, os.W_OK) or os.geteuid() == 0
        assert (tmp_path / "ws" / rel).stat().st_mode & 0o222 == 0
