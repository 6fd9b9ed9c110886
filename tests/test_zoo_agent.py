"""The shipped LavaCrossingS11N5 agent (zoo/lava-s11n5): it loads from its weights and config alone (no zip
to unpickle), its card and curve are there, and it still succeeds on its held-out test seeds exactly as its
evaluation.json says (within two episodes, for other CPUs' rounding) — a broken zoo file fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("stable_baselines3")
pytest.importorskip("minigrid")

from reasonlens.agents.agent import Agent
from reasonlens.agents.train import evaluate_agent
from reasonlens.cli.main import app

ZOO = Path(__file__).resolve().parents[1] / "zoo" / "lava-s11n5"


def test_the_zoo_agent_folder_is_complete():
    for name in ("policy.safetensors", "config.yaml", "README.md", "evaluation.json", "training_curve.json"):
        assert (ZOO / name).is_file(), name
    assert not (ZOO / "agent.zip").exists()  # nothing in the folder needs unpickling
    assert (ZOO / "README.md").read_text().startswith("---\nlibrary_name: reasonlens")
    assert (ZOO / "policy.safetensors").stat().st_size < 2**20
    curve = json.loads((ZOO / "training_curve.json").read_text())
    assert curve[-1]["stage"].endswith("MiniGrid-LavaCrossingS11N5-v0")


def test_the_zoo_agent_succeeds_on_its_held_out_seeds_as_recorded():
    agent = Agent.load(ZOO)
    assert agent.config.env_id == "MiniGrid-LavaCrossingS11N5-v0"
    recorded = json.loads((ZOO / "evaluation.json").read_text())
    assert recorded["episodes"] == 200 and recorded["success_rate"] >= 0.8
    measured = evaluate_agent(agent)  # the config's test seeds, never used to pick the snapshot
    # float32 rounding differs between CPU kinds; a near-tie of Q-values may flip one or two episodes, no more
    assert abs(measured["success_rate"] - recorded["success_rate"]) <= 0.01
    assert measured["first_seed"] == recorded["first_seed"] == agent.config.test_seed


def test_reasonlens_agents_evaluate_on_the_zoo_agent():
    result = CliRunner().invoke(app, ["agents", "evaluate", str(ZOO), "--seeds", "7000-7019"])
    assert result.exit_code == 0, result.output
    assert "over 20 episodes (seeds from 7000)" in result.output
