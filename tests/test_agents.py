"""The agents family: training and agent directories, states and corruptions, extraction, patching (the
seed-001 guide's commands and snippets end to end), neuron finding on a planted circuit, hostile agent
files (loading unpickles nothing unless --trust-pickle), bad input."""

import io
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("stable_baselines3")
pytest.importorskip("minigrid")

from agents_helpers import (
    TINY_OVERRIDES,
    Touch,
    make_agent_dir,
    plant_circuit,
    plant_pickle_payload,
    rewrite_zip_member,
)
from stable_baselines3 import DQN

from reasonlens.agents import neurons
from reasonlens.agents.agent import Agent
from reasonlens.agents.config import config_for
from reasonlens.agents.envs import State, apply_state, cells_of, make_env, observe
from reasonlens.agents.errors import AgentError
from reasonlens.agents.experiment import PatchingExperiment, QNetAdapter, parse_patch_spec
from reasonlens.agents.extraction import extract_activations, load_activations
from reasonlens.agents.inputs import corrupt, load_inputs, make_input_pairs, write_input_pairs
from reasonlens.agents.train import evaluate_agent, greedy_success, train_agent
from reasonlens.cli.main import app
from reasonlens.interp import Experiment, Intervention, run_sweep
from reasonlens.interp.sweep import run_looped

REPO = Path(__file__).resolve().parents[1]
SEED_ID = "MiniGrid-LavaCrossingS11N5-v0-81110-6,4,0-0763"
LAVA = "MiniGrid-LavaCrossingS9N1-v0"


@pytest.fixture(scope="module")
def lava_agent(tmp_path_factory):
    """An untrained LavaCrossing agent with 24 agent_turned pairs (actions differ) and their activations."""
    agent = make_agent_dir(tmp_path_factory.mktemp("agents") / "lava", LAVA, seed=1)
    clean, corrupted = make_input_pairs(agent, "agent_turned", 24, seed=0, states="random")
    write_input_pairs(agent, clean, corrupted)
    extract_activations(agent, "clean_inputs.json")
    extract_activations(agent, "corrupted_inputs.json")
    return agent


def q_forward(agent, obs, patch=None):
    """Hand-written forward of the Q-network with optional {layer: (units, values)} replacement."""
    x = obs
    for name, module in agent.q_net.q_net.named_children():
        x = module(x)
        if patch and f"q_net.{name}" in patch:
            units, values = patch[f"q_net.{name}"]
            x = x.clone()
            x[..., units] = values
    return x


# --- training and agent directories -------------------------------------------------------------------


def test_train_writes_a_complete_agent_directory(tmp_path):
    config = config_for("MiniGrid-Empty-5x5-v0", steps=2_000, **TINY_OVERRIDES)
    logs = []
    agent = train_agent(config, tmp_path / "a", log=logs.append)
    for name in ("agent.zip", "policy.safetensors", "config.yaml", "training_curve.json", "evaluation.json"):
        assert (tmp_path / "a" / name).is_file(), name
    curve = json.loads((tmp_path / "a" / "training_curve.json").read_text())
    assert [p["steps"] for p in curve] == [1_000, 2_000]
    for point in curve:  # 4 greedy episodes from the evaluation seeds: a rate in quarters
        assert point["episodes"] == 4 and point["first_seed"] == config.eval_seed
        assert point["success_rate"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    final = json.loads((tmp_path / "a" / "evaluation.json").read_text())
    assert final["episodes"] == 4 and final["first_seed"] == config.test_seed
    # keep_best: agent.zip is the first snapshot with the best evaluated success rate (replaying it on the
    # evaluation seeds gives that point of the curve), and evaluation.json is its run on the test seeds
    best = max(curve, key=lambda point: point["success_rate"])
    assert final["saved_snapshot_steps"] == best["steps"] and final["steps"] == 2_000
    replay = greedy_success(agent.q_net, config)
    assert {k: replay[k] for k in ("success_rate", "mean_return", "mean_length")} == {
        k: best[k] for k in ("success_rate", "mean_return", "mean_length")
    }
    test = evaluate_agent(agent)
    assert test == {k: final[k] for k in test}
    assert agent.layers() == {"q_net.0": 128, "q_net.1": 128, "q_net.2": 128, "q_net.3": 128, "q_net.4": 3}
    assert Agent.load(tmp_path / "a").config == config
    with pytest.raises(FileExistsError, match="already holds an agent"):
        train_agent(config, tmp_path / "a", log=logs.append)


def test_empty_room_agent_learns(tmp_path, monkeypatch):
    """The Empty-5x5 recipe solves the room (measured: 100% within 15k steps), leaving nothing in /tmp."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "system_tmp"))
    (tmp_path / "system_tmp").mkdir()
    agent = train_agent(
        config_for("MiniGrid-Empty-5x5-v0", steps=10_000, eval_every=5_000, eval_episodes=10),
        tmp_path / "e",
        log=lambda _: None,
    )
    assert json.loads((agent.path / "evaluation.json").read_text())["success_rate"] >= 0.9
    assert list((tmp_path / "system_tmp").glob("SB3-*")) == []  # no SB3-<date> logger folder


def test_q_net_names_match_the_seed_and_both_spellings_work(lava_agent):
    obs = load_inputs(lava_agent.resolve_input("clean_inputs.json"), lava_agent.obs_dim)[1][:3]
    spelled = parse_patch_spec(lava_agent, "q_net.q_net.0:1,2;q_net.2:all")
    assert [i.site for i in spelled] == ["q_net.0", "q_net.2"]
    sb3_q = lava_agent.model.policy.q_net(obs)  # SB3's own forward
    assert torch.allclose(q_forward(lava_agent, obs), sb3_q)
    actions, _ = lava_agent.model.predict(obs.numpy(), deterministic=True)
    assert actions.tolist() == sb3_q.argmax(-1).tolist()


# --- states, observations, corruptions ----------------------------------------------------------------


def test_observe_rebuilds_the_environment_observation():
    env = make_env(LAVA)
    for seed in (0, 7, 123):
        obs, _ = env.reset(seed=seed)
        grid = env.unwrapped
        state = State(LAVA, seed, int(grid.agent_pos[0]), int(grid.agent_pos[1]), int(grid.agent_dir))
        assert np.array_equal(observe(state), obs.astype(np.float32))
        obs, *_ = env.step(1)  # turn right: the state changes only in direction
        turned = State(LAVA, seed, state.x, state.y, (state.direction + 1) % 4)
        assert np.array_equal(observe(turned), obs.astype(np.float32))


def test_corruptions_make_one_causal_change():
    env = make_env(LAVA)
    rng = np.random.default_rng(0)
    state = State(LAVA, 3, 1, 1, 0)  # seed 3: the cell ahead (2, 1) is free floor
    grid = apply_state(env, state)
    lava_before = len(cells_of(grid, "lava"))
    changed, record = corrupt(grid, state, "lava_into_path", rng)
    assert record["lava_to"] == [2, 1]
    grid = apply_state(env, changed)
    assert grid.grid.get(2, 1).type == "lava" and len(cells_of(grid, "lava")) == lava_before
    view = observe(changed).reshape(7, 7, 3)
    assert view[3, 5, 0] == 9  # the cell straight ahead of the agent (view column 3, row 5) is lava
    grid = apply_state(env, state)
    moved, record = corrupt(grid, state, "goal_moved", rng)
    grid = apply_state(env, moved)
    assert cells_of(grid, "goal") == [tuple(record["goal_to"])] != [tuple(record["goal_from"])]
    grid = apply_state(env, state)
    turned, _ = corrupt(grid, state, "agent_turned", rng)
    assert (turned.x, turned.y, turned.direction) == (1, 1, 1)


def test_input_pairs_share_ids_and_differ_in_action(lava_agent):
    _, clean_obs, clean = load_inputs(lava_agent.resolve_input("clean_inputs.json"), 147)
    _, corrupted_obs, corrupted = load_inputs(lava_agent.resolve_input("corrupted_inputs.json"), 147)
    assert list(clean) == list(corrupted) and len(clean) == 24
    assert all(re.fullmatch(rf"{LAVA}-\d+-\d+,\d+,[0-3]-\d{{4}}", i) for i in clean)
    actions_clean = lava_agent.q_values(clean_obs).argmax(-1)
    actions_corrupted = lava_agent.q_values(corrupted_obs).argmax(-1)
    assert (actions_clean != actions_corrupted).all()
    for input_id, entry in corrupted.items():  # every input can be rebuilt from its recorded state
        state = State(
            entry["env_id"], entry["seed"], *entry["agent_pos"], entry["agent_dir"], tuple(map(tuple, entry["edits"]))
        )
        assert observe(state).tolist() == entry["input"], input_id


# --- extraction ---------------------------------------------------------------------------------------


def test_extraction_formats_and_values(lava_agent):
    folder = lava_agent.path / "activation_logging"
    readable = json.loads((folder / "clean_activations_readable.json").read_text())
    ids, obs, _ = load_inputs(lava_agent.resolve_input("clean_inputs.json"), 147)
    assert list(readable) == ids
    with np.load(folder / "clean_activations.npz") as archive:
        assert set(archive.files) == {f"{i}_{layer}" for i in ids for layer in lava_agent.layers()}
        first = archive[f"{ids[0]}_q_net.0"]
    assert first.shape == (1, 128)
    assert np.allclose(readable[ids[0]]["q_net.0"], first)
    q = lava_agent.model.policy.q_net(obs).detach()
    assert np.allclose([readable[i]["q_net.4"][0] for i in ids], q.numpy(), atol=1e-6)
    pre, post = np.array(readable[ids[0]]["q_net.0"]), np.array(readable[ids[0]]["q_net.1"])
    assert np.allclose(post, np.maximum(pre, 0))


# --- patching -----------------------------------------------------------------------------------------


def test_patching_equals_a_hand_patched_forward(lava_agent):
    experiment = PatchingExperiment(lava_agent.path)
    results = experiment.run_patching_experiment(
        "corrupted_inputs.json", "clean_activations.npz", {"q_net.0": [5, 10, 15], "q_net.2": "all"}
    )
    clean = load_activations(lava_agent.resolve_activations("clean_activations.npz"), lava_agent)
    ids, obs, _ = load_inputs(lava_agent.resolve_input("corrupted_inputs.json"), 147)
    for row, input_id in enumerate(ids):
        patch = {
            "q_net.0": ([5, 10, 15], clean[input_id]["q_net.0"][[5, 10, 15]]),
            "q_net.2": (slice(None), clean[input_id]["q_net.2"]),
        }
        expected = q_forward(lava_agent, obs[row : row + 1], patch).detach()
        record = results[input_id]
        assert np.allclose(record["patched_output"], expected.numpy(), atol=1e-5)
        assert np.allclose(record["baseline_output"], q_forward(lava_agent, obs[row : row + 1]).detach(), atol=1e-5)
        assert record["action_changed"] == (record["baseline_action"] != record["patched_action"])
        # q_net.2 is patched whole from clean, so the decision is the clean one
        assert record["patched_action"] == record["source_action"] and record["matches_source"]


def test_identity_patch_changes_nothing(lava_agent):
    results = PatchingExperiment(lava_agent.path).run_patching_experiment(
        "corrupted_inputs.json", "corrupted_activations.npz", "q_net.0:all;q_net.2:all"
    )
    assert not any(r["action_changed"] for r in results.values())
    assert all(np.allclose(r["baseline_output"], r["patched_output"], atol=1e-6) for r in results.values())


def test_batched_equals_looped_for_single_neuron_patches(lava_agent):
    _, clean_obs, _ = load_inputs(lava_agent.resolve_input("clean_inputs.json"), 147)
    _, corrupted_obs, _ = load_inputs(lava_agent.resolve_input("corrupted_inputs.json"), 147)
    adapter = QNetAdapter(lava_agent, torch.cat([corrupted_obs[:4], clean_obs[:4]]))
    experiments = [
        Experiment(target=r, source=4 + r, interventions=(Intervention(site=layer, units=(u,)),))
        for layer in ("q_net.0", "q_net.2")
        for u in range(0, 128, 9)
        for r in range(4)
    ]
    batched = run_sweep(adapter, experiments, chunk_size=37)[1]
    looped = run_looped(adapter, experiments)[1]
    assert [b["action"] for b in batched] == [loop["action"] for loop in looped]
    assert np.allclose([b["q_values"] for b in batched], [loop["q_values"] for loop in looped], atol=1e-6)


def test_zero_ablation_of_a_whole_layer_gives_the_bias_path(lava_agent):
    results = PatchingExperiment(lava_agent.path).run_patching_experiment(
        "corrupted_inputs.json", None, "q_net.2:all", op="zero"
    )
    last = lava_agent.linear_layers()[-1][1]
    constant = last(torch.zeros(128)).detach()  # q_net.3 = relu(0) = 0, so Q = bias of the last layer
    assert all(np.allclose(r["patched_output"][0], constant, atol=1e-6) for r in results.values())


def run_script(name, args, cwd):
    return subprocess.run(
        [sys.executable, str(REPO / "Neuron_Selection" / name), *args], cwd=cwd, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def seed_layout(tmp_path_factory):
    """The guide's layout: scripts run from Neuron_Selection/, the agent in
    ../Agent_Storage/SpawnTests/biased/biased-v1,
    input files in its activation_inputs/. One input carries the id the guide's third example names."""
    root = tmp_path_factory.mktemp("seed001")
    (root / "Neuron_Selection").mkdir()
    agent = make_agent_dir(root / "Agent_Storage/SpawnTests/biased/biased-v1", LAVA, seed=2)
    clean, corrupted = make_input_pairs(
        agent, "lava_into_path", 6, seed=5, states="random", require_action_change=False
    )
    # ids are labels the files share; relabel the first pair with the guide's example id
    first = next(iter(clean))
    clean = {SEED_ID if k == first else k: v for k, v in clean.items()}
    corrupted = {SEED_ID if k == first else k: v for k, v in corrupted.items()}
    write_input_pairs(agent, clean, corrupted)
    return root


SEED_AGENT = "../Agent_Storage/SpawnTests/biased/biased-v1"


def test_seed_commands_end_to_end(seed_layout):
    cwd = seed_layout / "Neuron_Selection"
    for inputs in ("clean_inputs.json", "corrupted_inputs.json"):
        done = run_script("activation_extraction.py", ["--agent_path", SEED_AGENT, "--inputs", inputs], cwd)
        assert done.returncode == 0, done.stderr
    examples = [
        (["--patch_spec", "q_net.0:5,6,7;q_net.2:10,11", "--output_prefix", "experiment1"], 6),
        (["--patch_spec", "q_net.2:all", "--output_prefix", "experiment2"], 6),
        (["--patch_spec", "q_net.0:5,6,7", "--input_ids", SEED_ID, "--output_prefix", "experiment3"], 1),
    ]
    common = [
        "--agent_path",
        SEED_AGENT,
        "--target_input",
        "corrupted_inputs.json",
        "--source_activations",
        "clean_activations.npz",
    ]
    results_dir = seed_layout / "Agent_Storage/SpawnTests/biased/biased-v1/patching_results"
    for args, n in examples:
        done = run_script("activation_patching.py", common + args, cwd)
        assert done.returncode == 0, done.stderr
        prefix = args[-1]
        results = json.loads((results_dir / f"{prefix}_results.json").read_text())
        assert len(results) == n
        for record in results.values():
            assert {"baseline_output", "baseline_action", "patched_output", "patched_action", "action_changed"} <= set(
                record
            )
        summary = json.loads((results_dir / f"{prefix}_summary.json").read_text())
        assert summary["inputs"] == n
    assert list(json.loads((results_dir / "experiment3_results.json").read_text())) == [SEED_ID]
    # patching q_net.2 whole carries the clean decision over on every input
    assert all(r["matches_source"] for r in json.loads((results_dir / "experiment2_results.json").read_text()).values())


def test_seed_python_snippets_run(seed_layout, monkeypatch, capsys):
    cwd = seed_layout / "Neuron_Selection"
    for inputs in ("clean_inputs.json", "corrupted_inputs.json"):
        assert (
            run_script("activation_extraction.py", ["--agent_path", SEED_AGENT, "--inputs", inputs], cwd).returncode
            == 0
        )
    logging = seed_layout / "Agent_Storage/SpawnTests/biased/biased-v1/activation_logging"
    monkeypatch.chdir(logging)
    # find_different_neurons.py, as the guide writes it (paths and input id filled in)
    with open("clean_activations_readable.json") as f:
        clean = json.load(f)
    with open("corrupted_activations_readable.json") as f:
        corrupted = json.load(f)
    input_id = SEED_ID
    layer = "q_net.2"
    clean_values = np.array(clean[input_id][layer])
    corrupted_values = np.array(corrupted[input_id][layer])
    differences = np.abs(clean_values - corrupted_values)
    top_different_neurons = np.argsort(differences[0])[-10:]
    # the library ranks the same ten units from the .npz files
    agent = Agent.load(seed_layout / SEED_AGENT[3:])
    clean_acts = load_activations("clean_activations.npz", agent)
    corrupted_acts = load_activations("corrupted_activations.npz", agent)
    ranked = neurons.activation_differences(clean_acts, corrupted_acts, "q_net.2", top_k=10)["per_input"][SEED_ID]
    assert sorted(top_different_neurons.tolist()) == sorted(ranked)
    assert differences[0][ranked[0]] == differences[0].max()
    # the ReLU analysis, on the ReLU's output (q_net.3 follows q_net.2)
    clean_values, corrupted_values = np.array(clean[input_id]["q_net.3"]), np.array(corrupted[input_id]["q_net.3"])
    clean_active = clean_values[0] > 0
    corrupted_dead = corrupted_values[0] == 0
    neurons_of_interest = np.where(clean_active & corrupted_dead)[0]
    found = neurons.active_to_dead(clean_acts, corrupted_acts, "q_net.2")
    assert found["clean_active_corrupted_dead"][SEED_ID] == neurons_of_interest.tolist()
    # the Advanced Analysis snippet
    from Neuron_Selection.PatchingTooling import PatchingExperiment as SeedExperiment

    experiment = SeedExperiment(agent_path=str(seed_layout / SEED_AGENT[3:]))
    results = experiment.run_patching_experiment(
        target_input_file="corrupted_inputs.json",
        source_activation_file="clean_activations.npz",
        patch_spec={
            "q_net.0": [5, 10, 15],  # Specific neurons
            "q_net.2": "all",  # Entire layer
        },
    )
    assert len(results) == 6 and SEED_ID in results


def test_cli_runs_the_workflow(tmp_path):
    runner = CliRunner()
    out = tmp_path / "agent"
    result = runner.invoke(
        app,
        [
            "agents",
            "train",
            "MiniGrid-Empty-5x5-v0",
            "--steps",
            "600",
            "--eval-every",
            "300",
            "--eval-episodes",
            "2",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["agents", "evaluate", str(out), "--episodes", "3"])
    assert result.exit_code == 0 and "over 3 episodes" in result.output
    result = runner.invoke(
        app, ["agents", "inputs", str(out), "--corruption", "goal_moved", "--n", "5", "--keep-same-action"]
    )
    assert result.exit_code == 0, result.output
    for name in ("clean_inputs.json", "corrupted_inputs.json"):
        result = runner.invoke(app, ["agents", "extract", "--agent_path", str(out), "--inputs", name])
        assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        [
            "agents",
            "patch",
            "--agent_path",
            str(out),
            "--target_input",
            "corrupted_inputs.json",
            "--source_activations",
            "clean_activations.npz",
            "--patch_spec",
            "q_net.0:all",
            "--output_prefix",
            "cli",
        ],
    )
    assert result.exit_code == 0, result.output
    patched = json.loads((out / "patching_results" / "cli_results.json").read_text())
    assert len(patched) == 5  # q_net.0 patched whole from clean: every decision is the clean one
    assert all(r["patched_action"] == r["source_action"] for r in patched.values())
    for method in ("diff", "dead", "ablate"):
        result = runner.invoke(app, ["agents", "neurons", method, "--agent_path", str(out)])
        assert result.exit_code == 0, result.output
        report = json.loads((out / "patching_results" / f"neurons_{method}.json").read_text())
        assert set(report) == {"q_net.0", "q_net.2"}  # the hidden Linear layers of net_arch [128, 128]
        assert all(found["layer"] == layer and found["inputs"] == 5 for layer, found in report.items())
    assert [len(found["action_change_rate"]) for found in report.values()] == [128, 128]


# --- neuron finding -----------------------------------------------------------------------------------


def test_difference_and_dead_unit_rankings_by_hand():
    clean = {"a": {"L": torch.tensor([1.0, -2.0, 3.0, 0.5])}, "b": {"L": torch.tensor([0.0, 1.0, 2.0, -1.0])}}
    corrupted = {"a": {"L": torch.tensor([1.0, 2.0, -3.0, 0.5])}, "b": {"L": torch.tensor([1.0, 1.0, -2.0, 1.0])}}
    diff = neurons.activation_differences(clean, corrupted, "L", top_k=2)
    assert diff["mean_abs_difference"] == [0.5, 2.0, 5.0, 1.0]
    assert diff["top_units"] == [2, 1] and diff["per_input"]["a"] == [2, 1]
    dead = neurons.active_to_dead(clean, corrupted, "L")
    assert dead["clean_active_corrupted_dead"] == {"a": [2], "b": [2]}
    assert dead["clean_dead_corrupted_active"] == {"a": [1], "b": [0, 3]}
    assert dead["most_often_killed"] == [2]


@pytest.fixture
def planted(tmp_path):
    make_agent_dir(tmp_path / "planted", LAVA)
    agent = plant_circuit(tmp_path / "planted", feature=10, unit0=5, unit2=9)
    clean = torch.zeros(12, 147)
    clean[:, 10] = torch.linspace(1.0, 3.0, 12)  # Q(left) = feature > 0.5 → action 0
    corrupted = clean.clone()
    corrupted[:, 10] = 0.0  # Q(left) = 0 → action 1 (right)
    corrupted[:, 20] = 1.0  # an irrelevant change
    return agent, clean, corrupted


def test_narrowing_search_finds_the_planted_unit(planted):
    agent, clean, corrupted = planted
    assert agent.q_values(clean).argmax(-1).tolist() == [0] * 12
    assert agent.q_values(corrupted).argmax(-1).tolist() == [1] * 12
    for layer, unit in (("q_net.0", 5), ("q_net.2", 9)):
        result = neurons.narrowing_search(agent, clean, corrupted, [layer], threshold=1.0)
        assert result.found and result.units == {layer: [unit]} and result.restore_rate == 1.0
        assert result.trace[0].size == 128 and result.trace[0].stage == "whole layer"
    both = neurons.narrowing_search(agent, clean, corrupted, ["q_net.0", "q_net.2"], threshold=1.0)
    assert sum(len(u) for u in both.units.values()) == 1
    # the output layer cannot restore anything it does not see: patching q_net.0 minus unit 5 fails
    result = neurons.narrowing_search(agent, clean[:, :], corrupted, ["q_net.4"], threshold=1.0)
    assert result.found and result.units == {"q_net.4": [0]}


def test_a_found_set_beats_random_sets_of_its_size(planted):
    agent, clean, corrupted = planted
    check = neurons.check_unit_set(agent, clean, corrupted, {"q_net.2": [9]}, control_sets=30)
    assert check["restore_rate"] == 1.0 and check["pairs"] == 12
    # a random single unit of 128 is unit 9 with chance 1/128: the control restores (almost) nothing
    rates = neurons.random_control(agent, clean, corrupted, {"q_net.2": [9]}, sets=30)
    assert len(rates) == 30 and check["random_mean"] == pytest.approx(sum(rates) / 30) and check["random_mean"] < 0.1
    assert neurons.random_control(agent, clean, corrupted, {"q_net.2": list(range(128))}, sets=3) == [1.0] * 3


def test_search_command_checks_the_set_on_held_out_pairs(planted, tmp_path):
    agent, clean, corrupted = planted

    def write(name, observations):
        records = {f"pair-{i:04d}": {"input": row.tolist()} for i, row in enumerate(observations)}
        (agent.path / "activation_inputs").mkdir(exist_ok=True)
        (agent.path / "activation_inputs" / name).write_text(json.dumps(records))

    write("clean_inputs.json", clean[:8])
    write("corrupted_inputs.json", corrupted[:8])
    write("heldout_clean_inputs.json", clean[8:])
    write("heldout_corrupted_inputs.json", corrupted[8:])
    args = ["agents", "neurons", "search", "--agent_path", str(agent.path), "--layers", "q_net.2", "--threshold", "1"]
    heldout = ["--heldout_clean_inputs", "heldout_clean_inputs.json"]
    result = CliRunner().invoke(app, [*args, *heldout, "--heldout_corrupted_inputs", "heldout_corrupted_inputs.json"])
    assert result.exit_code == 0, result.output
    report = json.loads((agent.path / "patching_results" / "neurons_search.json").read_text())
    assert report["units"] == {"q_net.2": [9]}
    assert report["heldout"]["pairs"] == 4 and report["heldout"]["restore_rate"] == 1.0
    assert report["searched"]["random_sets"] == 20 and report["heldout"]["random_mean"] < 0.2
    result = CliRunner().invoke(app, [*args, *heldout])  # half a held-out pair of files
    assert result.exit_code == 2 and "give both" in result.output


def test_ablation_scan_names_the_planted_unit(planted):
    agent, clean, _ = planted
    scan = neurons.ablation_scan(agent, clean, "q_net.0")
    assert scan["ranking"][0] == 5 and scan["action_change_rate"][5] == 1.0
    assert sum(scan["action_change_rate"]) == 1.0  # no other unit matters
    # zeroing unit 5 takes Q(left) from the feature (mean 2.0) to 0; every other unit is already 0
    assert scan["q_drop"][5] == pytest.approx(2.0) and sum(map(abs, scan["q_drop"])) == pytest.approx(2.0)
    mean_scan = neurons.ablation_scan(agent, clean, "q_net.2", op="mean")
    # the mean of unit 9 over these inputs (2.0) still picks left, and every other unit's mean is its value 0
    assert mean_scan["action_change_rate"] == [0.0] * 128
    assert mean_scan["q_drop"][9] == pytest.approx(0.0, abs=1e-6)


def test_narrowing_search_reports_a_layer_without_effect(planted):
    agent, clean, corrupted = planted
    agent.linear_layers()[0][1].weight.data[5, 10] = 0.0  # cut the circuit: nothing restores the action now
    agent.linear_layers()[-1][1].bias.data[0] = 1.0  # Q(left) = 1 > 0.5 on both, so the actions agree
    with pytest.raises(AgentError, match="same action on every clean and corrupted"):
        neurons.narrowing_search(agent, clean, corrupted, ["q_net.0"])


# --- hostile files: loading an agent unpickles nothing unless --trust-pickle -------------------------


def write_probe_inputs(agent_dir, n=4, name="probe_inputs.json"):
    generator = torch.Generator().manual_seed(n)
    observations = torch.randint(0, 11, (n, 147), generator=generator).float()
    path = agent_dir / "activation_inputs" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({f"probe-{i}": {"input": row.tolist()} for i, row in enumerate(observations)}))
    return observations


@pytest.fixture
def hostile(tmp_path):
    """A real tiny agent whose agent.zip carries a pickle payload (in the data entry lr_schedule) that creates
    ``marker`` when unpickled. No policy.safetensors: the weights must come out of the zip itself."""
    folder = tmp_path / "hostile"
    make_agent_dir(folder, "MiniGrid-Empty-5x5-v0", seed=4)
    (folder / "policy.safetensors").unlink()
    marker = tmp_path / "payload-ran"
    plant_pickle_payload(folder / "agent.zip", marker)
    write_probe_inputs(folder)
    return folder, marker


def test_a_crafted_agent_zip_runs_no_code(hostile, tmp_path):
    folder, marker = hostile
    agent = Agent.load(folder)
    assert agent.layers()["q_net.4"] == 3 and not marker.exists()
    result = CliRunner().invoke(app, ["agents", "evaluate", str(folder), "--episodes", "2"])
    assert result.exit_code == 0 and "over 2 episodes" in result.output, result.output
    done = run_script(
        "activation_extraction.py", ["--agent_path", str(folder), "--inputs", "probe_inputs.json"], tmp_path
    )
    assert done.returncode == 0, done.stderr
    results = PatchingExperiment(folder).run_patching_experiment("probe_inputs.json", None, "q_net.0:all", op="zero")
    assert len(results) == 4
    assert not marker.exists()


def test_a_foreign_zip_needs_trust_pickle_and_then_unpickles(hostile, tmp_path):
    folder, marker = hostile
    (folder / "config.yaml").unlink()  # a foreign SB3 zip: the DQN cannot be rebuilt without unpickling
    with pytest.raises(AgentError, match="no config.yaml .*--trust-pickle"):
        Agent.load(folder)
    result = CliRunner().invoke(app, ["agents", "evaluate", str(folder)])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "--trust-pickle" in lines[0], result.output
    done = run_script("find_neurons.py", ["ablate", "--agent_path", str(folder)], tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--trust-pickle" in done.stderr, done.stderr
    assert not marker.exists()
    # opting in loads the zip with SB3's own loader, which unpickles it: the test's payload is real
    args = ["agents", "extract", "--agent_path", str(folder), "--inputs", "probe_inputs.json", "--trust-pickle"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert marker.exists()
    marker.unlink()
    agent = Agent.load(folder, trust_pickle=True)
    assert marker.exists() and not agent.has_config and agent.config.net_arch == [128, 128]
    # without config.yaml the environment is unknown: evaluating says so in one line
    result = CliRunner().invoke(app, ["agents", "evaluate", str(folder), "--trust-pickle"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "evaluating needs the agent's environment" in lines[0]


def test_a_pickle_in_the_policy_weights_is_refused(hostile, tmp_path):
    folder, marker = hostile
    handle = io.BytesIO()
    torch.save({"q_net.q_net.0.weight": Touch(marker)}, handle)  # weights_only must refuse the object
    rewrite_zip_member(folder / "agent.zip", "policy.pth", handle.getvalue())
    with pytest.raises(AgentError, match="policy.pth is not a plain torch state dict"):
        Agent.load(folder)
    done = run_script(
        "activation_extraction.py", ["--agent_path", str(folder), "--inputs", "probe_inputs.json"], tmp_path
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--trust-pickle" in done.stderr, done.stderr
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:`n_steps=5` is ignored:UserWarning")  # SB3 DQN.load of an n-step agent
def test_the_weights_only_loader_equals_sb3_load(tmp_path):
    """The rebuilt DQN gives exactly the Q-values and actions of SB3's DQN.load, from policy.safetensors and
    from the zip's policy.pth alike; a zip saved again later (plain model.save) wins over a stale
    policy.safetensors; weights that do not fit config.yaml are refused."""
    folder = tmp_path / "a"
    make_agent_dir(folder, LAVA, net_arch=(32, 16), seed=5)
    observations = write_probe_inputs(folder, n=64)
    sb3 = DQN.load(folder / "agent.zip")  # the old loader
    expected_q = sb3.policy.q_net(observations).detach()
    expected_actions = sb3.predict(observations.numpy(), deterministic=True)[0]
    assert len(set(expected_actions.tolist())) > 1  # a test that can tell the actions apart

    def check(agent):
        assert torch.equal(agent.q_values(observations), expected_q)
        assert torch.equal(agent.model.policy.q_net(observations).detach(), expected_q)
        assert np.array_equal(agent.model.predict(observations.numpy(), deterministic=True)[0], expected_actions)
        state = agent.model.policy.state_dict()
        assert all(torch.equal(value, state[key]) for key, value in sb3.policy.state_dict().items())
        assert agent.model.observation_space == sb3.observation_space
        assert agent.model.action_space == sb3.action_space

    check(Agent.load(folder))  # from policy.safetensors
    check(Agent.load(folder, trust_pickle=True))  # SB3's loader through the opt-in
    (folder / "policy.safetensors").rename(tmp_path / "kept.safetensors")
    check(Agent.load(folder))  # from the zip's policy.pth
    (tmp_path / "kept.safetensors").rename(folder / "policy.safetensors")
    with torch.no_grad():
        sb3.policy.q_net.q_net[4].bias.add_(1.0)
    sb3.save(folder / "agent.zip")  # saved again without policy.safetensors: the zip is the current one
    assert torch.equal(Agent.load(folder).q_values(observations), sb3.policy.q_net(observations).detach())
    config = (folder / "config.yaml").read_text().replace("- 32\n- 16", "- 32\n- 32")
    (folder / "config.yaml").write_text(config)
    with pytest.raises(
        AgentError, match=r"hidden layers have widths \[32, 16\], but config.yaml says net_arch \[32, 32\]"
    ):
        Agent.load(folder)


# --- bad input ----------------------------------------------------------------------------------------


def patch_cli(agent_dir, *extra, cwd=None):
    args = [
        "--agent_path",
        str(agent_dir),
        "--target_input",
        "corrupted_inputs.json",
        "--source_activations",
        "clean_activations.npz",
        "--output_prefix",
        "bad",
        *extra,
    ]
    return run_script("activation_patching.py", args, cwd or agent_dir)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--patch_spec", "q_net.7:1"],
            r"unknown layer 'q_net.7'; valid layers: q_net.0, q_net.1, q_net.2, q_net.3, q_net.4",
        ),
        (["--patch_spec", "q_net.0:200"], r"neuron 200 is out of range for q_net.0, which has 128 units \(0..127\)"),
        (
            ["--patch_spec", "q_net.0:1", "--input_ids", "no-such-id"],
            r"input id\(s\) not in .*corrupted_inputs.json: no-such-id",
        ),
        (["--patch_spec", "q_net.0:1,x"], r"bad patch spec"),
    ],
)
def test_bad_patching_input_is_one_clear_error_and_writes_nothing(lava_agent, extra, message):
    done = patch_cli(lava_agent.path, *extra)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), done.stderr
    assert not list((lava_agent.path / "patching_results").glob("bad_*"))


def test_activations_from_another_agent_are_refused(lava_agent, tmp_path):
    other = make_agent_dir(tmp_path / "narrow", LAVA, net_arch=(64, 64))
    write_input_pairs(other, *make_input_pairs(other, "agent_turned", 3, states="random", require_action_change=False))
    npz, _ = extract_activations(other, "clean_inputs.json")
    with pytest.raises(AgentError, match=r"q_net.0 has shape \(1, 64\) but this agent's q_net.0 has width 128"):
        load_activations(npz, lava_agent)
    done = patch_cli(lava_agent.path, "--patch_spec", "q_net.0:1", "--source_activations", str(npz))
    assert done.returncode == 2 and "width 128" in done.stderr
    assert not list((lava_agent.path / "patching_results").glob("bad_*"))


def test_a_directory_that_is_not_an_agent(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(AgentError, match=r"is not an agent directory: it lacks agent.zip, config.yaml"):
        Agent.load(tmp_path / "empty")
    with pytest.raises(AgentError, match="agent directory not found"):
        Agent.load(tmp_path / "missing")
    done = run_script(
        "activation_extraction.py", ["--agent_path", str(tmp_path / "empty"), "--inputs", "x.json"], tmp_path
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "not an agent directory" in done.stderr


def test_input_files_are_checked(lava_agent, tmp_path):
    bad = tmp_path / "short.json"
    bad.write_text(json.dumps({"x": {"input": [0.0] * 10}}))
    with pytest.raises(AgentError, match="input 'x' has 10 values but the agent observes 147"):
        extract_activations(lava_agent, bad)
    bad.write_text("[1, 2]")
    with pytest.raises(AgentError, match="must be a non-empty JSON object"):
        load_inputs(bad)
    with pytest.raises(AgentError, match="input file not found"):
        lava_agent.resolve_input("nope.json")
    with pytest.raises(
        AgentError, match="unknown corruption 'flood'; allowed: lava_into_path, goal_moved, agent_turned"
    ):
        make_input_pairs(lava_agent, "flood", 1)
