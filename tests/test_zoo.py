"""The shipped 9×9 Sudoku HRM (zoo/hrm-sudoku-9x9): it loads from the folder alone, its card and evaluation are
there, and it still solves the held-out puzzles shipped with it — a broken zoo file fails here."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from reasonlens.cli.main import app
from reasonlens.hrm.evaluation.solve import read_puzzle, solve_puzzle
from reasonlens.hrm.models.hrm_act_v1 import ACTModel
from reasonlens.hrm.training.checkpoint import load_checkpoint

ZOO = Path(__file__).resolve().parents[1] / "zoo" / "hrm-sudoku-9x9"
EXAMPLES = ZOO / "examples.txt"
ACT_STEPS = 16  # the examples were chosen as solved with this many ACT steps (examples.txt's header)


def example_count() -> int:
    return sum(1 for line in EXAMPLES.read_text().splitlines() if line.strip() and not line.startswith("#"))


def test_the_zoo_folder_is_complete():
    for name in ("model.safetensors", "config.yaml", "config.json", "dataset.json", "README.md", "examples.txt"):
        assert (ZOO / name).is_file(), name
    assert (ZOO / "README.md").read_text().startswith("---\nlibrary_name: reasonlens")
    evaluation = json.loads((ZOO / "evaluation_banks.json").read_text())
    assert evaluation["train_overlap"] == 0  # no evaluated bank puzzle is a symmetric copy of a training puzzle
    assert f"{ACT_STEPS} ACT steps" in EXAMPLES.read_text().splitlines()[0]
    assert (ZOO / "model.safetensors").stat().st_size < 8 * 2**20


def test_the_zoo_model_solves_its_shipped_held_out_puzzles():
    model = load_checkpoint(ZOO)
    assert type(ACTModel.from_pretrained(ZOO)) is type(model)
    count = example_count()
    assert count >= 5
    for index in range(count):
        board, where = read_puzzle(str(EXAMPLES), index)
        assert solve_puzzle(model, board, max_steps=ACT_STEPS).valid, where


def test_reasonlens_solve_on_the_zoo_model(tmp_path):
    result = CliRunner().invoke(
        app, ["solve", str(ZOO), str(EXAMPLES), "--max-steps", str(ACT_STEPS), "--json", str(tmp_path / "s.json")]
    )
    assert result.exit_code == 0, result.output
    assert "valid: true" in result.output
    record = json.loads((tmp_path / "s.json").read_text())
    assert record["valid"] and record["act_steps"] == ACT_STEPS
