"""The ``reasonlens`` command: smoke run end to end on a tiny budget, params, convert, and its errors."""

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from reasonlens.cli.main import app
from reasonlens.hrm import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_smoke_run_writes_a_reloadable_run(tmp_path):
    out = tmp_path / "smoke"
    result = runner.invoke(app, ["smoke", "--steps", "40", "--out", str(out), "--batch-size", "16"])
    assert result.exit_code == 0, result.output
    assert "reloaded checkpoints identical: {'ours': True, 'official': True}" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 40 and summary["parameters"] == 263_682
    assert 0 <= summary["eval_token_accuracy"] <= 1
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [40]
    assert {"train/lm_loss", "eval/accuracy", "eval/exact_accuracy"} <= set(records[0])
    assert load_checkpoint(out).config.seq_len == 8
    assert load_checkpoint(out / "official").config.num_puzzle_identifiers == 2


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


def test_convert_both_ways(tmp_path):
    runner.invoke(app, ["smoke", "--steps", "2", "--out", str(tmp_path / "run"), "--batch-size", "4"])
    result = runner.invoke(app, ["hrm", "convert", str(tmp_path / "run"), str(tmp_path / "off"), "--to", "official"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "off" / "checkpoint").is_file() and (tmp_path / "off" / "all_config.yaml").is_file()
    result = runner.invoke(app, ["hrm", "convert", str(tmp_path / "off"), str(tmp_path / "back"), "--to", "ours"])
    assert result.exit_code == 0 and (tmp_path / "back" / "model.safetensors").is_file()
    result = runner.invoke(app, ["hrm", "convert", str(tmp_path / "nothing"), str(tmp_path / "x"), "--to", "ours"])
    assert result.exit_code == 2 and "checkpoint not found" in result.output
    result = runner.invoke(app, ["hrm", "convert", str(tmp_path / "off"), str(tmp_path / "x"), "--to", "onnx"])
    assert result.exit_code == 2 and "--to must be 'official' or 'ours'" in result.output


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "reasonlens"  # installed next to the interpreter running the tests
    result = subprocess.run([str(script), "version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("reasonlens 0.1.0, torch ")
