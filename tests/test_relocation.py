"""Runs that work from any folder: a run trained with relative paths is used from another working folder
(evaluate, the seed-000 single and batch scripts, analyze dimensionality), after moving the run together
with its dataset, and with a clear error naming every place tried when its dataset is gone."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from reasonlens.cli.main import app
from reasonlens.hrm.data.sudoku import SudokuBuildConfig, build_sudoku_dataset
from reasonlens.hrm.training.run_dataset import LOCATION_KEY, candidate_paths, dataset_of_run
from reasonlens.hrm.training.trainer import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A tiny run trained inside ``project/`` with paths typed relative to it: ``data`` and ``runs/tiny``."""
    root = tmp_path_factory.mktemp("relocation") / "project"
    root.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        build_sudoku_dataset(
            SudokuBuildConfig(out_dir="data", source="generate", size=4, train_size=64, test_size=12, seed=0)
        )
        model = dict(hidden_size=32, num_heads=2, H_layers=1, L_layers=1, puzzle_emb_ndim=32, halt_max_steps=2)
        train(
            TrainConfig(
                data_path="data",
                run_dir="runs/tiny",
                global_batch_size=16,
                epochs=1,
                eval_interval=1,
                lr_warmup_steps=1,
                progress=False,
                model=model,
            )
        )
    return root


def _script(name, *args, cwd):
    command = [sys.executable, str(REPO / "scripts" / name), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd)


def test_the_run_records_where_its_dataset_is(project):
    saved = yaml.safe_load((project / "runs" / "tiny" / "config.yaml").read_text())
    assert saved[LOCATION_KEY] == {
        "typed": "data",
        "absolute": str((project / "data").resolve()),
        "from_run": "../../data",
    }


def test_commands_work_from_another_folder(project, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run = project / "runs" / "tiny"
    result = runner.invoke(app, ["evaluate", str(run), "--device", "cpu", "--out", str(elsewhere / "eval.json")])
    assert result.exit_code == 0, result.output
    assert Path(result.output.splitlines()[0].split(":")[0]).resolve() == (project / "data").resolve()
    single = _script(
        "activation_patching.py",
        *("--checkpoint", str(run), "--source_puzzle_idx", "0", "--target_puzzle_idx", "1", "--device", "cpu"),
        *("--output_dir", "single"),
        cwd=elsewhere,
    )
    assert single.returncode == 0, single.stderr
    assert len(list((elsewhere / "single").glob("patching_*.yaml"))) == 1
    batch = _script(
        "batch_activation_patching.py",
        *("--checkpoint", str(run), "--num_puzzles", "3", "--patch_levels", "H", "--patch_steps_configs", "all"),
        *("--device", "cpu", "--output_dir", "batch"),
        cwd=elsewhere,
    )
    assert batch.returncode == 0, batch.stderr
    assert (elsewhere / "batch" / "summary.json").is_file()
    result = runner.invoke(app, ["analyze", "dimensionality", str(run), "--puzzles", "4", "--bootstrap", "2"])
    assert result.exit_code == 0, result.output
    assert (run / "analysis" / "dimensionality.json").is_file()


def test_run_and_dataset_moved_together(project, tmp_path, monkeypatch):
    moved = tmp_path / "moved"
    shutil.copytree(project, moved)  # a copy, so that the absolute path would find the old dataset:
    shutil.rmtree(moved / "data" / "train")  # the copy's dataset must win, and it has only a test split
    monkeypatch.chdir(tmp_path)
    assert dataset_of_run(moved / "runs" / "tiny") == moved / "runs" / "tiny" / "../../data"
    result = runner.invoke(app, ["evaluate", str(moved / "runs" / "tiny"), "--device", "cpu"])
    assert result.exit_code == 0, result.output


def test_runs_made_before_data_location_are_found_from_their_training_folder(project, tmp_path, monkeypatch):
    old = tmp_path / "old"
    shutil.copytree(project, old)
    config = yaml.safe_load((old / "runs" / "tiny" / "config.yaml").read_text())
    del config[LOCATION_KEY]  # as written before runs recorded their dataset's location
    (old / "runs" / "tiny" / "config.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    assert candidate_paths(old / "runs" / "tiny")[0] == (old / "data").resolve()
    assert dataset_of_run(old / "runs" / "tiny") == (old / "data").resolve()


def test_a_missing_dataset_names_every_place_tried(project, tmp_path, monkeypatch):
    lonely = tmp_path / "lonely"
    shutil.copytree(project / "runs" / "tiny", lonely)
    config = yaml.safe_load((lonely / "config.yaml").read_text())
    config[LOCATION_KEY]["absolute"] = str(tmp_path / "gone")
    (lonely / "config.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["evaluate", str(lonely), "--device", "cpu"])
    assert result.exit_code == 2
    message = result.output.strip()
    assert message.startswith("error: the dataset") and "--data DIR" in message
    for place in (str(lonely / "../../data"), str(tmp_path / "gone"), str(lonely / "data")):
        assert place in message
    result = runner.invoke(app, ["evaluate", str(lonely), "--device", "cpu", "--data", str(project / "data")])
    assert result.exit_code == 0, result.output
