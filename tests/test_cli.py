"""The ``reasonlens`` command: demo (tiny budget; full size marked slow), data, params, convert, evaluate, errors."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from reasonlens.cli.main import app
from reasonlens.hrm import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_demo_builds_trains_and_reports(tmp_path):
    """The main job on a tiny budget (the full-size run is test_demo_reaches_80_percent, marked slow)."""
    from reasonlens.cli.demo import DemoConfig, run_demo

    summary = run_demo(
        DemoConfig(
            out_dir=str(tmp_path / "demo"),
            train_puzzles=256,
            test_puzzles=32,
            epochs=2,
            eval_every_epochs=1,
            progress=False,
        ),
        log=lambda *a: None,
    )
    assert summary["steps"] == 8 and summary["eval/count"] == 32 and summary["size"] == 4
    assert (tmp_path / "demo-data" / "train" / "dataset.json").is_file()
    saved = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert saved["train_puzzles"] == 256 and saved["run_dir"] == str(tmp_path / "demo")
    model = load_checkpoint(tmp_path / "demo")
    assert model.config.seq_len == 16 and model.config.vocab_size == 6
    # the demo's model and optimizer are the recipe file's, declared once
    recipe = yaml.safe_load((REPO / "configs" / "train" / "cpu_sudoku_4x4.yaml").read_text())
    run_config = yaml.safe_load((tmp_path / "demo" / "config.yaml").read_text())
    assert {k: run_config["model"][k] for k in recipe["model"]} == recipe["model"]
    for key in ("global_batch_size", "lr", "lr_warmup_steps", "weight_decay", "puzzle_emb_lr"):
        assert run_config["train"][key] == recipe[key], key
    # it ends with a batched patching sweep on its own checkpoint: 8 puzzles pairwise x 3 levels x 5 step configs
    assert saved["patching_experiments"] == 8 * 7 * 3 * 5
    assert "data:image/png;base64" in (tmp_path / "demo" / "patching" / "report.html").read_text()


@pytest.mark.slow
def test_demo_reaches_80_percent(tmp_path):
    """`reasonlens demo` as shipped: under 10 minutes on 2 cores and >= 80% exact on held-out puzzles."""
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["eval/exact_accuracy"] >= 0.80
    assert summary["total_seconds"] < 600


def test_data_commands_and_their_errors(tmp_path):
    result = runner.invoke(
        app,
        [
            "data",
            "sudoku",
            str(tmp_path / "s"),
            "--size",
            "4",
            "--train-size",
            "20",
            "--test-size",
            "5",
            "--num-aug",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "train: groups 20, puzzles 60, examples 60" in result.output
    result = runner.invoke(
        app,
        ["data", "maze", str(tmp_path / "m"), "--size", "6", "--train-size", "4", "--test-size", "2", "--workers", "1"],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["data", "arc-synthetic", str(tmp_path / "a"), "--num-tasks", "8"])
    assert result.exit_code == 0 and (tmp_path / "a" / "test_puzzles.json").is_file()
    result = runner.invoke(app, ["data", "sudoku", str(tmp_path / "x"), "--size", "7"])
    assert result.exit_code == 2 and "Sudoku size must be 4, 6 or 9" in result.output
    result = runner.invoke(app, ["data", "arc", str(tmp_path / "x"), "--dataset", "arc3"])
    assert result.exit_code == 2 and "dataset must be 'arc1', 'arc2'" in result.output
    result = runner.invoke(app, ["data", "sudoku", str(tmp_path / "x"), "--size", "4"])
    assert result.exit_code == 2 and "source 'generate' needs train_size and test_size" in result.output
    result = runner.invoke(
        app, ["data", "sudoku", str(tmp_path / "s"), "--size", "4", "--train-size", "2", "--test-size", "1"]
    )
    assert result.exit_code == 2 and "already exists" in result.output


def test_params_prints_the_official_count():
    result = runner.invoke(app, ["hrm", "params", str(REPO / "configs" / "hrm_v1_sudoku.yaml")])
    assert result.exit_code == 0 and re.search(r"total\s+27,275,266\n", result.output)
    result = runner.invoke(app, ["hrm", "params", str(REPO / "configs" / "trm_sudoku_mlp.yaml"), "--arch", "trm"])
    assert re.search(r"total\s+5,028,866\n", result.output)


def test_bad_config_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(dict(seq_len=9, vocab_size=5, hidden_size=30, num_heads=4)))
    result = runner.invoke(app, ["hrm", "params", str(bad)])
    assert result.exit_code == 2
    assert "hidden_size (30) must be divisible by num_heads (4)" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["hrm", "params", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "YAML file not found" in result.output


def test_convert_both_ways(tmp_path, sorting_dataset):
    from reasonlens.hrm.training.trainer import TrainConfig, train

    train(
        TrainConfig(
            data_path=str(sorting_dataset),
            run_dir=str(tmp_path / "run"),
            global_batch_size=32,
            epochs=1,
            eval_interval=1,
            max_steps=2,
            progress=False,
            model=dict(hidden_size=32, num_heads=2, H_layers=1, L_layers=1, puzzle_emb_ndim=32),
        )
    )
    result = runner.invoke(app, ["hrm", "convert", str(tmp_path / "run"), str(tmp_path / "off"), "--to", "official"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "off" / "checkpoint").is_file() and (tmp_path / "off" / "all_config.yaml").is_file()
    result = runner.invoke(app, ["hrm", "convert", str(tmp_path / "off"), str(tmp_path / "back"), "--to", "ours"])
    assert result.exit_code == 0 and (tmp_path / "back" / "model.safetensors").is_file()
    result = runner.invoke(app, ["hrm", "convert", str(tmp_path / "nothing"), str(tmp_path / "x"), "--to", "ours"])
    assert result.exit_code == 2 and "checkpoint not found" in result.output
    result = runner.invoke(app, ["hrm", "convert", str(tmp_path / "off"), str(tmp_path / "x"), "--to", "onnx"])
    assert result.exit_code == 2 and "--to must be 'official' or 'ours'" in result.output
    result = runner.invoke(app, ["evaluate", str(tmp_path / "run"), "--batch-size", "16"])
    assert result.exit_code == 0 and "exact_accuracy" in result.output
    assert json.loads((tmp_path / "run" / "evaluation.json").read_text())["metrics"]["count"] == 64


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "reasonlens"  # installed next to the interpreter running the tests
    result = subprocess.run([str(script), "version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("reasonlens 0.1.0, torch ")
