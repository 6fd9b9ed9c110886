"""Careless input ends in one line, exit code 2, no traceback and no new files — one table of commands
(the cases of issue [H]), all through the one mapping in ``reasonlens.cli.errors``."""

import shutil

import numpy as np
import pytest
from conftest import train_tiny_sudoku
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
    for name, weights in (("truncated", None), ("empty", b""), ("garbage", b"garbage")):
        shutil.copytree(root / "run", root / name)
        path = root / name / "model.safetensors"
        path.write_bytes(path.read_bytes()[:100] if weights is None else weights)
    for name, change in (("floats", lambda a: a.astype(np.float32)), ("negative", lambda a: a.astype(np.int32) - 10)):
        shutil.copytree(root / "data", root / name)
        path = root / name / "test" / "all__inputs.npy"
        np.save(path, change(np.load(path)))
    return root


CASES = [
    (["evaluate", "run", "--device", "cuda"], "CUDA is not available"),
    (["evaluate", "run", "--device", "tpu"], "unknown device 'tpu'; allowed: auto, cpu, cuda"),
    (["demo", "--device", "cuda", "--out", "demo"], "CUDA is not available"),
    (["demo", "--size", "5", "--out", "demo"], "size: Sudoku size must be 4, 6 or 9"),
    (["train", "bad.yaml"], "bad.yaml is not valid YAML (line 2"),
    (["hrm", "params", "bad.yaml"], "bad.yaml is not valid YAML"),
    (["evaluate", "run", "--max-steps", "0"], "must be a whole number >= 1"),
    (
        ["patch", "--checkpoint", "run", "--source_puzzle_idx", "0", "--target_puzzle_idx", "1", "--max_steps", "-2"],
        "--max_steps must be >= 1",
    ),
    (
        ["patch", "--checkpoint", "run", "--source_puzzle_idx", "0", "--target_puzzle_idx", "1", "--max_steps", "0"],
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
        [
            "patch",
            "--checkpoint",
            "run",
            "--source_puzzle_idx",
            "0",
            "--target_puzzle_idx",
            "1",
            "--output_dir",
            "a_file/out",
        ],
        "a_file",
    ),
]


@pytest.mark.parametrize(("args", "expected"), CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_careless_input_is_one_line(place, monkeypatch, args, expected):
    monkeypatch.chdir(place)
    before = sorted(p.relative_to(place) for p in place.rglob("*"))
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert expected in lines[0]
    assert "Traceback" not in result.output and not isinstance(result.exception, Exception)  # only SystemExit
    assert sorted(p.relative_to(place) for p in place.rglob("*")) == before  # nothing written


def test_a_bug_is_not_dressed_as_input_error():
    assert one_line(RuntimeError("a bug")) is None
    assert one_line(OSError(5, "Input/output error")) is None  # a failing disk is not the user's typo
    assert one_line(FileNotFoundError(2, "No such file or directory", "x.yaml")) == "x.yaml: No such file or directory"
