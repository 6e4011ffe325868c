"""Harness-side launcher for full-scale tasks that run a user's checkout of a public repository.

The same file sits in every full-scale task's ``evaluator/`` folder (a test keeps the copies
identical): evaluator-owned code stays self-contained, staged without project imports.

    launch.py run [--log train.log] [--overlay-data DIR] [--env NAME=VALUE] [--collect GLOB[=NAME]]
                  [--and-then 'COMMAND ...'] -- COMMAND ...
    launch.py prepare --data DATA --task-dir TASK [--source PATH] [--default REL_OR_ABS]
                      [--source-env NAME] [--heldout NAME ...]

``run`` (the task's train command; cwd = the trial workspace):

* runs COMMAND (then each ``--and-then`` command, while they succeed) with stdout and stderr
  merged, teeing everything to our stdout and to ``$ARLEDGER_OUT/<log>`` — the log the evaluator
  reads;
* ``--overlay-data DIR`` makes DIR (created if missing) hold a symlink to every top-level entry of
  ``$ARLEDGER_DATA`` that DIR does not already have, so the official scripts find their data at
  their default relative paths while writing their own outputs beside them;
* ``--env NAME=VALUE`` sets a variable for the commands (``$VAR`` references are expanded);
* ``--collect GLOB[=NAME]`` copies the newest file matching GLOB (relative to the workspace) to
  ``$ARLEDGER_OUT/NAME`` after the commands end, whatever their status;
* exits with the failing command's status; a command killed by a signal makes the launcher die of
  the same signal, so the runner sees what really happened (a SIGKILL stays a SIGKILL).

``prepare`` (the task's prepare command, harness side): ``DATA/train`` becomes a symlink to the
task's data and ``DATA/heldout`` an empty folder (these tasks score from the official log, not from
held-out files). With ``--heldout NAME`` (repeatable) the named top-level entries of the data are
kept from training: ``DATA/train`` is then a folder of links to every other entry, and
``DATA/heldout/NAME`` a link to each named one (nanochat-d12's CORE ``eval_bundle``: the sandbox
shows the train split to the recipe and the held-out one to the evaluator only). The data is, in order: ``--source``; ``$ARLEDGER_DATA_<TASK>``; ``$<source-env>``;
``--default`` resolved against the checkout (``$ARLEDGER_CHECKOUT_<TASK>`` or ``checkout`` in
``[task]`` of task.toml) unless it is absolute or starts with ``~``.
"""

from __future__ import annotations

import argparse
import glob
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path


def _env_key(task_name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in task_name).upper()


def _fail(msg: str) -> int:
    print(f"launch.py: {msg}", file=sys.stderr)
    return 2


def _overlay(target: Path, data: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for entry in sorted(data.iterdir()):
        dest = target / entry.name
        if dest.exists() or dest.is_symlink():
            continue
        dest.symlink_to(entry.resolve(), target_is_directory=entry.is_dir())


def _tee(cmd: list[str], env: dict[str, str], log) -> int:
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, bufsize=0)
    except OSError as e:
        msg = f"launch.py: cannot start {cmd[0]!r}: {e}\n".encode()
        sys.stdout.buffer.write(msg)
        log.write(msg)
        return 127
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        log.write(chunk)
        log.flush()
    return proc.wait()


def _collect(spec: str, out: Path) -> None:
    pattern, _, name = spec.partition("=")
    matches = [Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file()]
    if not matches:
        print(f"launch.py: nothing matches {pattern!r}; not collected", file=sys.stderr)
        return
    newest = max(matches, key=lambda p: p.stat().st_mtime)
    shutil.copy2(newest, out / (name or newest.name))


def cmd_run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        return _fail("run needs a command after --")
    out = Path(args.out or os.environ.get("ARLEDGER_OUT", "")).expanduser()
    if not str(out) or not out.is_dir():
        return _fail("no output directory: set ARLEDGER_OUT or pass --out")
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            return _fail(f"--env wants NAME=VALUE, got {item!r}")
        env[name] = os.path.expandvars(value)
    data = os.environ.get("ARLEDGER_DATA", "")
    for target in args.overlay_data:
        if not data or not Path(data).is_dir():
            return _fail(f"--overlay-data {target}: ARLEDGER_DATA is not a directory ({data!r}); "
                         "run the task's prepare command")
        _overlay(Path(target), Path(data))
    # the runner stops the whole process group; we wait for the commands to end so the log is whole
    stop = {"sig": 0}

    def _note(signum, _frame):
        stop["sig"] = signum

    signal.signal(signal.SIGTERM, _note)
    signal.signal(signal.SIGINT, _note)
    status = 0
    with open(out / args.log, "ab") as log:
        for cmd in [command, *[shlex.split(c) for c in args.and_then]]:
            status = _tee(cmd, env, log)
            if status != 0 or stop["sig"]:
                break
    for spec in args.collect:
        _collect(spec, out)
    if status < 0:
        if -status not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    if stop["sig"] and status == 0:
        status = 128 + stop["sig"]
    return status if 0 <= status < 256 else 1


def _checkout(task_dir: Path, key: str) -> str:
    env = os.environ.get(f"ARLEDGER_CHECKOUT_{key}", "")
    if env:
        return env
    try:
        spec = tomllib.loads((task_dir / "task.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return ""
    return str(spec.get("task", {}).get("checkout", "") or "")


def cmd_prepare(args: argparse.Namespace) -> int:
    task_dir = Path(args.task_dir)
    try:
        name = tomllib.loads((task_dir / "task.toml").read_text())["task"]["name"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as e:
        return _fail(f"cannot read the task name from {task_dir / 'task.toml'}: {e}")
    key = _env_key(name)
    source = args.source or os.environ.get(f"ARLEDGER_DATA_{key}", "")
    if not source and args.source_env:
        source = os.environ.get(args.source_env, "")
    if not source and args.default:
        if args.default.startswith(("/", "~")):
            source = args.default
        else:
            checkout = _checkout(task_dir, key)
            if not checkout:
                return _fail(f"task {name}: no checkout given; set ARLEDGER_CHECKOUT_{key}=/path/to/checkout "
                             f"or `checkout = \"/path\"` under [task] in {task_dir / 'task.toml'}")
            source = str(Path(checkout) / args.default)
    src = Path(source).expanduser() if source else None
    if src is None or not src.is_dir():
        return _fail(f"task {name}: no data folder at {source or '(none given)'}; prepare the data in your "
                     f"checkout as {task_dir / 'README.md'} describes, or set ARLEDGER_DATA_{key}=/path/to/data")
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    if args.heldout:
        return _prepare_split(name, src.resolve(), data, args.heldout)
    train = data / "train"
    if train.is_symlink() or train.exists():
        if train.is_symlink() and Path(os.readlink(train)) == src.resolve():
            pass
        elif train.is_symlink():
            train.unlink()
        else:
            return _fail(f"{train} exists and is not a link made by prepare; remove it first")
    if not train.exists():
        train.symlink_to(src.resolve(), target_is_directory=True)
    (data / "heldout").mkdir(exist_ok=True)
    print(f"{name}: data {src.resolve()} -> {train}")
    return 0


def _prepare_split(name: str, src: Path, data: Path, held: list[str]) -> int:
    missing = [h for h in held if not (src / h).exists()]
    if missing:
        return _fail(f"task {name}: {', '.join(missing)} missing from the data folder {src}; prepare it as the "
                     "task's README.md describes")
    train, heldout = data / "train", data / "heldout"
    if train.is_symlink():  # an earlier prepare linked the whole folder: split it now
        train.unlink()
    for d in (train, heldout):
        d.mkdir(exist_ok=True)
        for link in d.iterdir():
            if not link.is_symlink():
                return _fail(f"{link} is not a link made by prepare; remove it first")
            link.unlink()
    for entry in sorted(src.iterdir()):
        (heldout if entry.name in held else train).joinpath(entry.name).symlink_to(
            entry.resolve(), target_is_directory=entry.is_dir())
    print(f"{name}: data {src} -> {train} (held out for the evaluator: {', '.join(held)})")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="verb", required=True)
    run = sub.add_parser("run", help="run the official command(s), teeing the log into $ARLEDGER_OUT")
    run.add_argument("--log", default="train.log")
    run.add_argument("--out", default="")
    run.add_argument("--overlay-data", action="append", default=[])
    run.add_argument("--env", action="append", default=[])
    run.add_argument("--collect", action="append", default=[])
    run.add_argument("--and-then", action="append", default=[])
    run.add_argument("command", nargs=argparse.REMAINDER)
    prep = sub.add_parser("prepare", help="link the task's data into the prepared data dir")
    prep.add_argument("--data", required=True)
    prep.add_argument("--task-dir", required=True)
    prep.add_argument("--source", default="")
    prep.add_argument("--source-env", default="")
    prep.add_argument("--default", default="")
    prep.add_argument("--heldout", action="append", default=[])
    args = ap.parse_args(argv)
    return cmd_run(args) if args.verb == "run" else cmd_prepare(args)


if __name__ == "__main__":
    sys.exit(main())
