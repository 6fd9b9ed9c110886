"""Every Python block in README.md and docs/*.md runs as written, and so do the README's
``reasonlens hrm convert`` example and the documented config files."""

import re
import shlex
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from reasonlens.cli.main import app
from reasonlens.hrm import HRMACTv1, export_official_checkpoint

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def blocks(path, language):
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.S)


PYTHON_BLOCKS = [(path.name, i, code) for path in DOCS for i, code in enumerate(blocks(path, "python"))]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder shaped like a downloaded official Sudoku checkpoint, as the README's example expects."""
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    model = HRMACTv1(dict(seq_len=81, vocab_size=11, puzzle_emb_ndim=512))
    export_official_checkpoint(model, tmp_path / "HRM-checkpoint-sudoku-extreme")
    return tmp_path


def documented_agent(workdir):
    """docs/agents.md's blocks read Agent_Storage/lava9 with its input pairs and activations: build a small
    untrained one there (the numbers in the doc come from the trained agent; the code paths are the same)."""
    from agents_helpers import make_agent_dir

    from reasonlens.agents.extraction import extract_activations
    from reasonlens.agents.inputs import make_input_pairs, write_input_pairs

    agent = make_agent_dir(workdir / "Agent_Storage" / "lava9", "MiniGrid-LavaCrossingS9N1-v0", seed=3)
    write_input_pairs(agent, *make_input_pairs(agent, "agent_turned", 20, states="random"))
    for name in ("clean_inputs.json", "corrupted_inputs.json"):
        extract_activations(agent, name)


def documented_demo_run(workdir):
    """Blocks that open runs/demo (seed 000's ActivationPatcher) get a tiny trained run there (the numbers
    in the doc come from the real demo; the code paths are the same)."""
    import shutil

    from conftest import train_tiny_sudoku

    shutil.move(train_tiny_sudoku(workdir / "tiny") / "run", workdir / "runs" / "demo")


@pytest.mark.parametrize(("doc", "index", "code"), PYTHON_BLOCKS, ids=[f"{d}-{i}" for d, i, _ in PYTHON_BLOCKS])
def test_python_block_runs(doc, index, code, workdir):
    if doc == "agents.md":
        pytest.importorskip("stable_baselines3")
        documented_agent(workdir)
    if doc == "lm.md":
        pytest.importorskip("trl")
        pytest.importorskip("transformer_lens")
    if '"runs/demo"' in code:
        documented_demo_run(workdir)
    if '"zoo/' in code:  # the shipped models, as they are in the repository
        (workdir / "zoo").symlink_to(REPO / "zoo")
    exec(compile(code, f"{doc}[{index}]", "exec"), {"__name__": "__doc_example__"})


def test_readme_convert_command(workdir):
    lines = [line for code in blocks(REPO / "README.md", "bash") for line in code.splitlines()]
    convert = [line for line in lines if line.startswith("reasonlens hrm convert")]
    assert convert
    for line in convert:
        result = CliRunner().invoke(app, shlex.split(line)[1:])
        assert result.exit_code == 0, result.output
    assert (workdir / "runs" / "sudoku-official" / "model.safetensors").is_file()


def test_readme_commands_name_real_files():
    text = (REPO / "README.md").read_text()
    for name in re.findall(r"(configs/[\w.]+\.yaml|docs/[\w.]+\.md|benchmarks/[\w.]+\.py|constraints\.txt)", text):
        assert (REPO / name).is_file(), name


def test_readme_build_train_evaluate_commands(tmp_path, monkeypatch):
    """The README's data → train → evaluate lines, with the dataset shrunk and training capped at 2 steps."""
    monkeypatch.chdir(tmp_path)
    lines = [line.split("#")[0].strip() for code in blocks(REPO / "README.md", "bash") for line in code.splitlines()]
    commands = [
        line for line in lines if line.startswith(("reasonlens data", "reasonlens train", "reasonlens evaluate"))
    ]
    assert [c.split()[1] for c in commands] == ["data", "train", "evaluate"]
    shrink = {"--train-size": "64", "--test-size": "8"}
    for line in commands:
        args = shlex.split(line)[1:]
        args = [shrink.get(prev, arg) for prev, arg in zip(["", *args], args)]
        if args[0] == "train":
            args[1] = str(REPO / args[1])
            args += ["max_train_steps=2", "global_batch_size=16", "progress=false"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, f"{line}: {result.output}"
    assert "exact_accuracy" in result.output and (tmp_path / "runs" / "sudoku-4x4" / "evaluation.json").is_file()
