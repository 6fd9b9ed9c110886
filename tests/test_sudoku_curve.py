"""The learning curve of a 9×9 Sudoku run from its kept checkpoints: which checkpoints, accuracy by givens,
the time axis, the CLI's files and its bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import tiny_hrm_config
from typer.testing import CliRunner

from reasonlens.cli.main import app
from reasonlens.hrm.data.sudoku import build_sudoku_dataset
from reasonlens.hrm.evaluation.sudoku_banks import solved_mask
from reasonlens.hrm.evaluation.sudoku_curve import (
    accuracy_by_givens,
    held_out_boards,
    kept_checkpoints,
    learning_curve,
)
from reasonlens.hrm.models.hrm_act_v1 import HRMACTv1
from reasonlens.hrm.training.checkpoint import load_checkpoint, save_checkpoint
from reasonlens.utils.stats import wilson_interval


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A fake 9×9 run: two different tiny models kept at steps 3 and 10 (and a stray folder), plus a summary."""
    root = tmp_path_factory.mktemp("curve")
    data = build_sudoku_dataset(
        dict(
            out_dir=root / "data",
            source="generate",
            size=9,
            train_size=2,
            test_size=8,
            target_clues=40,
            target_clues_max=75,
            seed=0,
        )
    )
    for seed, step in ((0, 3), (1, 10)):
        torch.manual_seed(seed)
        save_checkpoint(
            HRMACTv1(tiny_hrm_config(seq_len=81, vocab_size=11, halt_max_steps=2)),
            root / "run" / "checkpoints" / f"step_{step}",
        )
    (root / "run" / "checkpoints" / "step_x").mkdir()
    (root / "run" / "summary.json").write_text(json.dumps({"steps": 10, "train_seconds": 25.0}))
    return root / "run", data


def test_accuracy_by_givens_counts_each_range():
    solved = np.array([True, False, True, True, False])
    givens = np.array([20, 25, 50, 55, 70])
    rows = accuracy_by_givens(solved, givens, bins=((17, 30), (31, 45), (46, 60), (61, 80)))
    assert list(rows) == ["17-30", "46-60", "61-80"]  # no puzzle with 31-45 givens: left out
    assert rows["17-30"] == {"puzzles": 2, "exact_accuracy": 0.5, "interval_95": list(wilson_interval(1, 2))}
    assert rows["46-60"]["exact_accuracy"] == 1.0 and rows["61-80"]["exact_accuracy"] == 0.0


def test_curve_evaluates_every_kept_checkpoint_on_the_test_split(run):
    run_dir, data = run
    assert [step for step, _ in kept_checkpoints(run_dir)] == [3, 10]
    curve = learning_curve(run_dir, data, every=5)  # every 5th from the first, and always the last
    assert [p["step"] for p in curve["points"]] == [3, 10]
    assert [p["train_seconds"] for p in curve["points"]] == [7.5, 25.0]  # step × 2.5 s mean
    puzzles, solutions = held_out_boards(data)
    for point, (_, folder) in zip(curve["points"], kept_checkpoints(run_dir)):
        solved = solved_mask(load_checkpoint(folder, seq_len=81), puzzles, solutions, None, 64, "cpu")
        assert point["test_exact_accuracy"] == solved.mean()
        assert sum(row["puzzles"] for row in point["test_by_givens"].values()) == len(puzzles) == 8


def test_cli_writes_json_and_picture_and_rejects_bad_input(run, tmp_path):
    run_dir, data = run
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["hrm", "curve", str(run_dir), "--data", str(data), "--banks", "se_easy", "--per-bank", "3", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    curve = json.loads((out / "learning_curve.json").read_text())
    assert [p["step"] for p in curve["points"]] == [3, 10]
    assert curve["points"][0]["buckets"]["easy"]["puzzles"] == 3
    assert (out / "learning_curve.png").stat().st_size > 1000
    bad = CliRunner().invoke(app, ["hrm", "curve", str(run_dir), "--data", str(data), "--banks", "nope"])
    assert bad.exit_code == 2 and "allowed" in bad.output
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = CliRunner().invoke(app, ["hrm", "curve", str(empty), "--data", str(data)])
    assert bad.exit_code == 2 and "no kept checkpoints" in bad.output and "keep_checkpoints=true" in bad.output
