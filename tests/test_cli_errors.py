"""Careless input ends in one line, exit code 2, no traceback and no new files — one table of commands
(the cases of issue [H]), all through the one mapping in ``reasonlens.cli.errors``."""

import shutil

import numpy as np
import pytest
import torch
import yaml
from conftest import train_tiny_sudoku
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from reasonlens.cli.errors import one_line
from reasonlens.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """A folder with a tiny run (``run``, its dataset ``data``), and broken copies of both."""
    root = train_tiny_sudoku(tmp_path_factory.mktemp("careless"))
    (root / "bad.yaml").write_text("arch: [unclosed\n")
    (root / "a_file").write_text("not a folder")
    (root / "puzzles.txt").write_text("# 4×4 puzzles\n1...............\n\n.2..............\n")
    for name, weights in (("truncated", None), ("empty", b""), ("garbage", b"garbage")):
        shutil.copytree(root / "run", root / name)
        path = root / name / "model.safetensors"
        path.write_bytes(path.read_bytes()[:100] if weights is None else weights)
    for name, change in (("floats", lambda a: a.astype(np.float32)), ("negative", lambda a: a.astype(np.int32) - 10)):
        shutil.copytree(root / "data", root / name)
        path = root / name / "test" / "all__inputs.npy"
        np.save(path, change(np.load(path)))
    shutil.copytree(root / "run", root / "badconfig")
    (root / "badconfig" / "config.yaml").write_text("train: {data_path: [\n")
    (root / "nonempty").mkdir()
    (root / "nonempty" / "notes.txt").write_text("keep")
    nan = root / "nan"
    shutil.copytree(root / "run", nan)
    weights = load_file(nan / "model.safetensors")
    save_file({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in weights.items()},
              nan / "model.safetensors")  # fmt: skip
    (root / "study.yaml").write_text(
        yaml.safe_dump({"name": "s", "base": "recipe.yaml", "variants": {"../../escape": ["lr=1e-3"]}})
    )
    return root


def assert_one_line(result, expected):
    """Exit code 2, one ``error:`` line holding ``expected``, no traceback (only SystemExit was raised)."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert expected in lines[0]
    assert "Traceback" not in result.output and not isinstance(result.exception, Exception)


PATCH = ["patch", "--checkpoint", "run", "--source_puzzle_idx", "0", "--target_puzzle_idx", "1"]
CASES = [
    (["evaluate", "run", "--device", "cuda"], "CUDA is not available"),
    (["evaluate", "run", "--device", "tpu"], "unknown device 'tpu'; allowed: auto, cpu, cuda"),
    (["demo", "--device", "cuda", "--out", "demo"], "CUDA is not available"),
    (["demo", "--size", "5", "--out", "demo"], "size: Sudoku size must be 4, 6 or 9"),
    (["train", "bad.yaml"], "bad.yaml is not valid YAML (line 2"),
    (["hrm", "params", "bad.yaml"], "bad.yaml is not valid YAML"),
    (["evaluate", "run", "--max-steps", "0"], "must be a whole number >= 1"),
    (
        [*PATCH, "--max_steps", "-2"],
        "--max_steps must be >= 1",
    ),
    (
        [*PATCH, "--max_steps", "0"],
        "--max_steps must be >= 1",
    ),
    (["analyze", "scaling", "run", "--factor", "-1"], "--factor must be >= 1"),
    (["evaluate", "truncated"], "truncated/model.safetensors is not a readable safetensors file"),
    (["evaluate", "garbage"], "garbage/model.safetensors is not a readable safetensors file"),
    (["analyze", "dimensionality", "empty"], "empty/model.safetensors is not a readable safetensors file"),
    (
        ["data", "sudoku", "a_file", "--size", "4", "--train-size", "8", "--test-size", "4", "--overwrite"],
        "a_file is a file, not a folder",
    ),
    (["patch-batch", "--checkpoint", "run", "--patch_levels", ""], "--patch_levels names no level"),
    (["patch-batch", "--checkpoint", "run", "--patch_steps_configs", ",,,"], "--patch_steps_configs names no step"),
    (["patch-batch", "--checkpoint", "run", "--chunk_size", "0"], "--chunk_size must be >= 1"),
    (["patch-batch", "--checkpoint", "run", "--chunk_size", "-5"], "--chunk_size must be >= 1"),
    (["evaluate", "run", "--data", "floats"], "inputs (float32) must hold integers"),
    (["evaluate", "run", "--data", "negative"], "token ids must be >= 0"),
    (
        [*PATCH, "--output_dir", "a_file/out"],
        "a_file",
    ),
    (["evaluate", "missing_run"], "checkpoint not found: missing_run"),
    (["train", "run", "device=cuda"], "CUDA is not available"),
    (
        [*PATCH, "--device", "cuda"],
        "CUDA is not available",
    ),
    (["evaluate", "badconfig"], "badconfig/config.yaml is not valid YAML"),
    (
        [*PATCH, "--patch_positions", "16"],
        "cell 16 is beyond the puzzle's 16 cells (0..15)",
    ),
    (["hrm", "convert", "run", "nonempty", "--to", "ours"], "nonempty is not an empty folder"),
    (["evaluate", "nan"], "the model's outputs are not finite"),
    (["study", "study.yaml", "--out", "studies"], "variant name '../../escape' cannot be a file name"),
    (["agents", "train", "CartPole-v1", "--out", "agent"], "not a MiniGrid environment 'CartPole-v1'"),
    (["agents", "train", "MiniGrid-Empty-5x5-v0", "--out", "agent", "--device", "cuda"], "CUDA is not available"),
    (["solve", "run", "12.."], "the puzzle has 4 characters; a puzzle has 81 characters (16 or 36 for a 4×4 or 6×6"),
    (
        ["solve", "run", "1x" + "." * 14],
        "invalid character 'x' at position 2 of the puzzle; allowed: '.' or '0' for a blank and digits",
    ),
    (["solve", "run", "5" + "." * 15], "digit 5 at position 1 of the puzzle is not allowed in a 4×4 Sudoku"),
    (["solve", "run", "1.1" + "." * 13], "the givens break the rules: digit 1 appears twice in row 1"),
    (["solve", "run", "missing.txt"], "missing.txt: no such puzzle file, and not a puzzle string either"),
    (["solve", "run", "puzzles.txt", "--index", "2"], "--index 2 is out of range: puzzles.txt holds 2 puzzles (0..1)"),
    (["solve", "missing_run", "1" + "." * 15], "checkpoint not found: missing_run"),
    (
        ["solve", "run", "." * 81],
        "run is not a 9×9 Sudoku model: that has vocab_size 11 and seq_len 81, this one has vocab_size 6",
    ),
    (["solve", "run", "puzzles.txt", "--max-steps", "0"], "max steps must be a whole number >= 1"),
    (["solve", "run", "puzzles.txt", "--device", "cuda"], "CUDA is not available"),
    (["solve", "run", "puzzles.txt", "--json", "a_file/out.json"], "a_file is a file, not a folder"),
    (["solve", "nan", "puzzles.txt"], "the model's outputs at ACT step 1 are not finite"),
]


@pytest.mark.parametrize(("args", "expected"), CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_careless_input_is_one_line(place, monkeypatch, args, expected):
    monkeypatch.chdir(place)
    before = sorted(p.relative_to(place) for p in place.rglob("*"))
    assert_one_line(runner.invoke(app, args), expected)
    assert sorted(p.relative_to(place) for p in place.rglob("*")) == before  # nothing written


def test_a_bug_is_not_dressed_as_input_error():
    assert one_line(RuntimeError("a bug")) is None
    assert one_line(OSError(5, "Input/output error")) is None  # a failing disk is not the user's typo
    assert one_line(FileNotFoundError(2, "No such file or directory", "x.yaml")) == "x.yaml: No such file or directory"


def test_settings_that_used_to_be_reinterpreted_are_refused():
    pytest.importorskip("transformers")
    from reasonlens.lm.config.training_config import SFTConfig
    from reasonlens.utils.config import ConfigError

    with pytest.raises(ConfigError, match="max_steps must be >= 1, or -1 to train by epochs; got 0"):
        SFTConfig.from_dict({"max_steps": 0})
    assert SFTConfig.from_dict({"max_steps": -1}).max_steps == -1


@pytest.fixture(scope="module")
def agent_dir(tmp_path_factory):
    pytest.importorskip("stable_baselines3")
    from agents_helpers import make_agent_dir

    return make_agent_dir(tmp_path_factory.mktemp("agent") / "agent").path


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["agents", "inputs", "{agent}", "--n", "-1"], "--n must be >= 1"),
        (
            ["agents", "inputs", "{agent}", "--n", "4", "--prefix", "../../out_", "--corruption", "agent_turned"],
            "--prefix '../../out_clean_inputs",
        ),
    ],
)
def test_careless_agent_input_is_one_line(agent_dir, args, expected):
    before = sorted(agent_dir.rglob("*"))
    assert_one_line(runner.invoke(app, [a.format(agent=agent_dir) for a in args]), expected)
    assert sorted(agent_dir.rglob("*")) == before


def test_unreadable_activation_archives_are_one_line(agent_dir, tmp_path):
    from reasonlens.agents.agent import Agent
    from reasonlens.agents.errors import AgentError
    from reasonlens.agents.extraction import load_activations

    agent = Agent.load(agent_dir)
    good = tmp_path / "good.npz"
    np.savez(good, **{"a_q_net.0": np.zeros((1, 128), np.float32)})
    assert load_activations(good, agent)["a"]["q_net.0"].shape == (128,)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    objects = tmp_path / "objects.npz"
    np.savez(objects, **{"a_q_net.0": np.array([{"not": "numbers"}], dtype=object)})
    for path in (truncated, objects):
        with pytest.raises(AgentError, match=r"is not a readable \.npz of activations"):
            load_activations(path, agent)
    with pytest.raises(AgentError, match="names no layer of this agent"):  # our own message is kept
        np.savez(tmp_path / "other.npz", **{"a_fc9": np.zeros((1, 4), np.float32)})
        load_activations(tmp_path / "other.npz", agent)


def test_lava_into_path_never_adds_lava_to_a_map_without_any(agent_dir):
    from reasonlens.agents.agent import Agent
    from reasonlens.agents.errors import AgentError
    from reasonlens.agents.inputs import make_input_pairs

    with pytest.raises(AgentError, match="found only 0 of 4 lava_into_path pairs"):  # Empty-5x5 has no lava
        make_input_pairs(Agent.load(agent_dir), "lava_into_path", 4, states="random", max_seeds=20)
