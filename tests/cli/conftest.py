"""A real campaign on a real SQLite ledger, made once for the CLI tests: the stand-in task (score =
VALUE, lower is better), a baseline, heuristic proposals with a confirmation run, through the real
runner. Commands then read it through click's CliRunner as a user would."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from agents.campaign import CampaignConfig, CampaignLoop
from arledger.cli import cli
from ledger.audit import init_ledger
from tasks.spec import load_task
from tests.agents.test_campaign import toy_task
from tests.tasks.runner_helpers import open_dir


@dataclass(frozen=True)
class World:
    root: Path
    url: str
    task: Path
    campaign: str

    def run(self, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        """``arledger ARGS`` against this world's ledger (``--ledger`` given through the environment)."""
        return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False,
                                  env={"ARLEDGER_LEDGER": self.url, **(env or {})})

    def trials(self) -> list[dict]:
        """Every trial of the lineage tree (``lineage --json``), in trial order."""
        out, stack = [], list(json.loads(self.run("lineage", "--json").output)["tree"])
        while stack:
            n = stack.pop()
            out.append(n)
            stack.extend(n.get("children", []))
        return sorted(out, key=lambda n: n["number"])


def invoke(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False, env=env)


def campaign_world(tmp_path_factory: pytest.TempPathFactory, folder: str, name: str, max_trials: int) -> World:
    """A real campaign of ``max_trials`` proposals of the heuristic specialists on the stand-in task,
    in a SQLite ledger of its own."""
    root = tmp_path_factory.mktemp(folder)
    task = toy_task(open_dir(root / "toy"))
    url = f"sqlite:{root}/store/ledger.db"
    led, _, _ = init_ledger(url)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ARLEDGER_CACHE", str(open_dir(root / "cache")))
        try:
            cfg = CampaignConfig(task=str(task), name=name, max_trials=max_trials, seed=1)
            CampaignLoop(led, load_task(task), cfg).run(poll_s=0.05)
        finally:
            led.close()
    return World(root, url, task, name)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield campaign_world(tmp_path_factory, "cli-world", "c1", 3)


@pytest.fixture
def fresh(world: World, tmp_path: Path) -> World:
    """A private copy of the world's ledger, for commands that write."""
    shutil.copytree(world.root / "store", tmp_path / "store")
    return World(tmp_path, f"sqlite:{tmp_path}/store/ledger.db", world.task, world.campaign)


@pytest.fixture(scope="session")
def world20(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A campaign of 20 proposals (and its confirmation runs) on the stand-in task, with a long name."""
    yield campaign_world(tmp_path_factory, "cli-world20", "toy-20250101-120000", 20)
