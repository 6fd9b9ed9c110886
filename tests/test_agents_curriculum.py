"""Curricula (weights carried between stages, resume after an interrupted stage, bad input), matching the
units of two agents (a permuted copy of a network must match back exactly) and comparing their circuits (a
planted circuit is found again in the copy, under its new unit numbers, and only there)."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("stable_baselines3")
pytest.importorskip("minigrid")

from agents_helpers import TINY_OVERRIDES, make_agent_dir, plant_circuit

from reasonlens.agents.agent import Agent
from reasonlens.agents.compare import compare_circuits, jaccard, match_agents, match_units
from reasonlens.agents.curriculum import CurriculumConfig, read_curriculum, train_curriculum
from reasonlens.agents.errors import AgentError
from reasonlens.agents.model import read_policy_state, save_model
from reasonlens.cli.main import app
from reasonlens.utils.io import FolderError, write_yaml

TINY = {**TINY_OVERRIDES, "net_arch": [32, 32]}
# stage 1 never reaches learning_starts: its kept weights must be exactly what it started from
FROZEN = {"steps": 200, "learning_starts": 10_000, "eval_every": 100}


def two_stages(**stage1) -> CurriculumConfig:
    return CurriculumConfig(
        seed=3,
        base=TINY,
        stages=[
            {"env_id": "MiniGrid-Empty-5x5-v0", "steps": 1_000},
            {"env_id": "MiniGrid-Empty-6x6-v0", **FROZEN, **stage1},
        ],
    )


def policy(folder):
    return read_policy_state(folder)[0]


def test_weights_carry_over_and_the_folder_is_an_agent(tmp_path):
    agent = train_curriculum(two_stages(), tmp_path / "c", log=lambda _: None)
    stages = tmp_path / "c" / "stages"
    first, second = stages / "0-MiniGrid-Empty-5x5-v0", stages / "1-MiniGrid-Empty-6x6-v0"
    for key, value in policy(first).items():
        assert torch.equal(policy(second)[key], value), key
    assert Agent.load(second).config.init_from == str(first.resolve())
    assert agent.config.env_id == "MiniGrid-Empty-6x6-v0"
    assert torch.equal(policy(tmp_path / "c")["q_net.q_net.0.weight"], policy(second)["q_net.q_net.0.weight"])
    curve = json.loads((tmp_path / "c" / "training_curve.json").read_text())
    assert [p["stage"] for p in curve] == [first.name] * 1 + [second.name] * 2  # 1,000 steps then 100, 200
    assert [p["total_steps"] for p in curve] == [1_000, 1_100, 1_200]
    evaluation = json.loads((tmp_path / "c" / "evaluation.json").read_text())
    assert evaluation == json.loads((second / "evaluation.json").read_text())
    fresh = train_curriculum(
        CurriculumConfig(seed=3, base=TINY, stages=[{"env_id": "MiniGrid-Empty-6x6-v0", **FROZEN}]),
        tmp_path / "fresh",
        log=lambda _: None,
    )
    assert not torch.equal(fresh.q_net.q_net[0].weight, agent.q_net.q_net[0].weight)  # without a curriculum


def test_an_interrupted_curriculum_resumes_where_it_stopped(tmp_path, monkeypatch):
    from reasonlens.agents import train

    real, calls = train.train_agent, []

    def interrupted(config, out, log):
        calls.append(config.env_id)
        if config.env_id == "MiniGrid-Empty-6x6-v0" and calls.count(config.env_id) == 1:
            (out / "agent.zip").parent.mkdir(parents=True)
            (out / "agent.zip").write_text("half")  # what a killed stage leaves behind
            raise KeyboardInterrupt
        return real(config, out, log)

    monkeypatch.setattr(train, "train_agent", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_curriculum(two_stages(), tmp_path / "c", log=lambda _: None)
    first = tmp_path / "c" / "stages" / "0-MiniGrid-Empty-5x5-v0"
    kept = policy(first)
    assert not (tmp_path / "c" / "evaluation.json").exists()
    logs = []
    train_curriculum(two_stages(), tmp_path / "c", log=logs.append)
    assert calls == ["MiniGrid-Empty-5x5-v0", "MiniGrid-Empty-6x6-v0", "MiniGrid-Empty-6x6-v0"]
    assert any("done" in line for line in logs) and logs[0].startswith("resuming")
    assert all(torch.equal(policy(first)[k], v) for k, v in kept.items())  # the finished stage was not redone
    assert (tmp_path / "c" / "evaluation.json").is_file()
    assert not list((tmp_path / "c" / "stages").glob(".*partial"))


def test_init_seed_fixes_the_initial_weights_apart_from_the_training_seed(tmp_path):
    def frozen(name, **seeds):  # one stage that never trains: its kept weights are its initial ones
        stages = [{"env_id": "MiniGrid-Empty-6x6-v0", **FROZEN}]
        train_curriculum(CurriculumConfig(base=TINY, stages=stages, **seeds), tmp_path / name, log=lambda _: None)
        return policy(tmp_path / name)

    first, copy, other = frozen("a", seed=3), frozen("b", seed=5, init_seed=3), frozen("c", seed=5)
    assert all(torch.equal(copy[key], value) for key, value in first.items())
    assert not torch.equal(other["q_net.q_net.0.weight"], first["q_net.q_net.0.weight"])
    stage = Agent.load(tmp_path / "b" / "stages" / "0-MiniGrid-Empty-6x6-v0").config
    assert (stage.seed, stage.init_seed) == (5, 3)


def test_curriculum_bad_input_writes_nothing(tmp_path):
    with pytest.raises(AgentError, match="init_from is set by the curriculum"):
        train_curriculum(two_stages(init_from="elsewhere"), tmp_path / "a", log=lambda _: None)
    with pytest.raises(AgentError, match="unknown environment 'MiniGrid-Nope-v0'"):
        train_curriculum(two_stages(env_id="MiniGrid-Nope-v0"), tmp_path / "a", log=lambda _: None)
    assert not (tmp_path / "a").exists()
    with pytest.raises(AgentError, match=r"weights carry over only between equal shapes"):
        train_curriculum(two_stages(net_arch=[16]), tmp_path / "b", log=lambda _: None)
    assert not list((tmp_path / "b" / "stages").glob("*1-*"))  # the mismatched stage wrote nothing
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(FolderError, match="not a curriculum folder"):
        train_curriculum(two_stages(), tmp_path / "foreign", log=lambda _: None)
    assert (tmp_path / "foreign" / "notes.txt").read_text() == "mine"
    with pytest.raises(AgentError, match="holds another curriculum"):
        train_curriculum(two_stages(steps=300), tmp_path / "b", log=lambda _: None)


def test_curriculum_and_evaluate_commands(tmp_path):
    config = tmp_path / "curriculum.yaml"
    write_yaml(config, two_stages().model_dump())
    runner = CliRunner()
    result = runner.invoke(app, ["agents", "curriculum", str(config), "--out", str(tmp_path / "c"), "--seed", "4"])
    assert result.exit_code == 0, result.output
    assert read_curriculum(config, seed=4).seed == 4
    result = runner.invoke(app, ["agents", "evaluate", str(tmp_path / "c"), "--seeds", "5000-5003"])
    assert result.exit_code == 0, result.output
    assert "over 4 episodes (seeds from 5000)" in result.output
    for bad in (["--seeds", "9-3"], ["--seeds", "abc"], ["--seeds", "1-2", "--seed", "1"]):
        result = runner.invoke(app, ["agents", "evaluate", str(tmp_path / "c"), *bad])
        assert result.exit_code == 2 and "Traceback" not in result.output, bad
    config.write_text("stages: []\n")
    result = runner.invoke(app, ["agents", "curriculum", str(config), "--out", str(tmp_path / "d")])
    assert result.exit_code == 2 and "stages" in result.output and not (tmp_path / "d").exists()


def permuted_copy(agent: Agent, folder, generator) -> tuple[Agent, dict]:
    """The same function with the units of every hidden layer listed in another order."""
    copy = make_agent_dir(folder, agent.config.env_id, net_arch=agent.config.net_arch)
    layers = [module for _, module in agent.linear_layers()]
    copies = [module for _, module in copy.linear_layers()]
    orders, previous = {}, None
    with torch.no_grad():
        for (name, _), layer, target in zip(agent.linear_layers(), layers, copies):
            weight, bias = layer.weight.clone(), layer.bias.clone()
            if previous is not None:
                weight = weight[:, previous]  # read the previous layer's units where they now are
            if target is not copies[-1]:
                order = torch.randperm(weight.shape[0], generator=generator)
                weight, bias, orders[name], previous = weight[order], bias[order], order, order
            target.weight.copy_(weight)
            target.bias.copy_(bias)
    save_model(copy.model, folder)
    return Agent.load(folder), orders


def test_a_permuted_copy_matches_back_exactly(tmp_path):
    agent = make_agent_dir(tmp_path / "a", "MiniGrid-LavaCrossingS9N1-v0", seed=1)
    generator = torch.Generator().manual_seed(0)
    copy, orders = permuted_copy(agent, tmp_path / "b", generator)
    observations = torch.randint(0, 11, (256, agent.obs_dim), generator=generator).float()
    assert torch.allclose(agent.q_values(observations), copy.q_values(observations), atol=1e-5)  # same function
    matchings = match_agents(agent, copy, observations, agent.hidden_layers())
    for layer, order in orders.items():
        inverse = torch.argsort(order).tolist()  # unit i of the agent is unit inverse[i] of the copy
        assert matchings[layer].to_b == inverse
        assert min(matchings[layer].correlation) > 0.999999
        assert matchings[layer].map_units([3, 7]) == sorted([inverse[3], inverse[7]])
    other = make_agent_dir(tmp_path / "c", "MiniGrid-LavaCrossingS9N1-v0", seed=2)  # another initialisation
    unrelated = match_agents(agent, other, observations, ["q_net.0"])["q_net.0"]
    assert np.mean(unrelated.correlation) < 0.9
    assert jaccard([1, 2, 3], [2, 3, 4]) == 0.5 and jaccard([], []) == 1.0


def test_matching_a_dead_unit_and_bad_shapes():
    a = np.random.default_rng(0).normal(size=(50, 4))
    b = a[:, [2, 0, 3, 1]].copy()
    b[:, 0] = 1.0  # B's unit 0 (A's unit 2) never varies: it correlates with nothing
    matching = match_units(a, b)
    assert matching.to_b[0] == 1 and matching.to_b[1] == 3 and matching.to_b[3] == 2
    assert matching.correlation[2] == 0.0
    with pytest.raises(AgentError, match="equal widths"):
        match_units(a, b[:, :3])
    with pytest.raises(AgentError, match="same two or more inputs"):
        match_units(a, b[:10])


@pytest.fixture
def planted_pair(tmp_path):
    """A planted circuit (feature 10 -> q_net.0 unit 5 -> q_net.2 unit 9 -> Q(left)) and a permuted copy."""
    make_agent_dir(tmp_path / "a", "MiniGrid-LavaCrossingS9N1-v0")
    agent = plant_circuit(tmp_path / "a", feature=10, unit0=5, unit2=9)
    copy, orders = permuted_copy(agent, tmp_path / "b", torch.Generator().manual_seed(1))
    clean = torch.zeros(12, 147)
    clean[:, 10] = torch.linspace(1.0, 3.0, 12)  # left
    corrupted = clean.clone()
    corrupted[:, 10] = 0.0  # right
    return agent, copy, orders, clean, corrupted


def test_a_circuit_found_in_one_agent_is_found_again_in_its_permuted_copy(planted_pair):
    agent, copy, orders, clean, corrupted = planted_pair
    where = {layer: int(torch.argsort(order)[unit]) for (layer, order), unit in zip(orders.items(), (5, 9))}
    assert where["q_net.0"] != 5 and where["q_net.2"] != 9  # the permutation moved both units
    report = compare_circuits(
        agent, copy, clean, corrupted, {"q_net.2": [9]}, units_b={"q_net.2": [where["q_net.2"]]}, random_sets=10
    )
    assert report["units_a_in_b"] == {"q_net.2": [where["q_net.2"]]} and report["jaccard"] == {"q_net.2": 1.0}
    rates = report["restore_rate"]
    assert rates["a_own"] == rates["b_matched"] == rates["b_own"] == 1.0
    assert rates["b_same_indices"] == 0.0 and rates["b_random_mean"] < 0.2  # unit 9 of the copy is another unit
    assert report["pairs"] == {"a": 12, "b": 12}


def test_compare_command(planted_pair, tmp_path):
    agent, copy, orders, clean, corrupted = planted_pair
    ids = [f"pair-{i}" for i in range(len(clean))]
    for name, obs in (("clean_inputs.json", clean), ("corrupted_inputs.json", corrupted)):
        (agent.path / "activation_inputs").mkdir(exist_ok=True)
        rows = {i: {"input": o.tolist()} for i, o in zip(ids, obs)}
        (agent.path / "activation_inputs" / name).write_text(json.dumps(rows))
    runner = CliRunner()
    result = runner.invoke(app, ["agents", "compare", str(agent.path), str(copy.path), "--units-a", "q_net.0:5"])
    assert result.exit_code == 0, result.output
    assert "b_matched 100.0%" in result.output and "b_same_indices 0.0%" in result.output
    report = json.loads((agent.path / "patching_results" / "compare_b.json").read_text())
    assert report["units_a_in_b"] == {"q_net.0": [int(torch.argsort(orders["q_net.0"])[5])]}
    result = runner.invoke(app, ["agents", "compare", str(agent.path), str(copy.path), "--units-a", "q_net.0:500"])
    assert result.exit_code == 2 and "out of range" in result.output and "Traceback" not in result.output
