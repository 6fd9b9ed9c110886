"""Evaluating a 9×9 model on the shipped banks: per bank and per bucket, Wilson intervals, the training-overlap
check, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_hrm_config
from typer.testing import CliRunner

from reasonlens.cli.main import app
from reasonlens.hrm.data.format import load_split
from reasonlens.hrm.data.sudoku import build_sudoku_dataset, decode_board, load_bank
from reasonlens.hrm.evaluation import sudoku_banks
from reasonlens.hrm.evaluation.sudoku_banks import evaluate_on_banks
from reasonlens.hrm.models.hrm_act_v1 import HRMACTv1
from reasonlens.hrm.training.checkpoint import save_checkpoint
from reasonlens.utils.stats import wilson_interval


@pytest.fixture(scope="module")
def model():
    return HRMACTv1(tiny_hrm_config(seq_len=81, vocab_size=11, halt_max_steps=2))


def test_wilson_interval_known_values():
    low, high = wilson_interval(0, 10)
    assert low == 0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_interval(10, 10)
    assert low == pytest.approx(0.7225, abs=1e-4) and high == 1
    low, high = wilson_interval(50, 100)
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)


def test_counts_buckets_and_overlap_with_the_training_set(model, tmp_path):
    train = build_sudoku_dataset(
        dict(out_dir=tmp_path / "train", source="se_easy", train_size=300, test_size=5, num_aug=1, seed=0)
    )
    _, arrays = load_split(train, "train")
    trained = {decode_board(t, 9).tobytes() for t in arrays.inputs}
    result = evaluate_on_banks(model, ["se_easy", "se_hard"], per_bank=12, train_dataset=train, seed=3)
    assert [row["puzzles"] for row in result["banks"].values()] == [12, 12]
    assert result["banks"]["se_easy"]["buckets"] == {"easy": 12, "moderate": 0, "hard": 0}
    assert result["buckets"]["easy"]["puzzles"] + result["buckets"]["moderate"]["puzzles"] >= 12
    # the overlap is the number of drawn se_easy puzzles that are in the training set (or its augmented copies)
    rng = np.random.default_rng(3)
    easy = load_bank("se_easy")[0][np.sort(rng.choice(500, 12, replace=False))]
    expected = sum(p.astype(np.int64).tobytes() in trained for p in easy)
    assert 0 < result["train_overlap"] == expected


def test_bucket_accuracy_aggregates_the_solved_puzzles(model, monkeypatch):
    monkeypatch.setattr(
        sudoku_banks, "solved_mask", lambda model, puzzles, *a: np.arange(len(puzzles)) % 2 == 0
    )  # every other puzzle solved
    result = evaluate_on_banks(model, ["se_easy", "tdoku_forum_hardest_1106"], per_bank=10)
    assert result["banks"]["se_easy"]["exact_accuracy"] == 0.5
    assert result["buckets"]["easy"] == {
        "puzzles": 10,
        "exact_accuracy": 0.5,
        "interval_95": list(wilson_interval(5, 10)),
    }
    assert result["buckets"]["hard"]["puzzles"] == 10 and result["train_overlap"] is None


def test_cli_banks_and_bad_names(model, tmp_path):
    save_checkpoint(model, tmp_path / "run")
    ok = CliRunner().invoke(app, ["evaluate", str(tmp_path / "run"), "--banks", "se_easy", "--per-bank", "4"])
    assert ok.exit_code == 0, ok.output
    assert "se_easy" in ok.output and (tmp_path / "run" / "evaluation_banks.json").is_file()
    bad = CliRunner().invoke(app, ["evaluate", str(tmp_path / "run"), "--banks", "se_easy,nope"])
    assert bad.exit_code == 2 and "nope" in bad.output and "allowed" in bad.output
