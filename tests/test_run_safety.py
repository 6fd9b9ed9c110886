"""Run folders and metrics logs under hostile conditions: a run killed before its first checkpoint resumes by
its folder as an explicit fresh start, a torn or post-checkpoint metrics log is repaired on resume (each step
once, in order), ``overwrite`` reuses only a training run's folder and deletes only what training wrote, and
evaluation never pads a batch past the split (a huge ``--batch-size`` is one batch; 0 is one line)."""

import itertools
import json

import pytest
import yaml
from conftest import train_tiny_sudoku
from test_train import config, read_metrics
from typer.testing import CliRunner

from reasonlens.cli.evaluate import run_evaluation
from reasonlens.cli.main import app
from reasonlens.hrm.data.sampler import PuzzleBatches
from reasonlens.hrm.evaluation.rollout import EvaluationError
from reasonlens.hrm.training import trainer as training
from reasonlens.hrm.training.checkpoint import CheckpointError, load_checkpoint
from reasonlens.hrm.training.trainer import TrainError, load_train_config, train
from reasonlens.utils.errors import UserInputError
from reasonlens.utils.io import OWNER_FILE, mark_owned

runner = CliRunner()


class KilledError(Exception):
    """Stands for a kill: the run stops where it is, nothing is cleaned up."""


def fail_when(monkeypatch, method, condition):
    """Make ``Trainer.<method>`` raise :class:`KilledError` when ``condition(trainer)`` holds on entry."""
    original = getattr(training.Trainer, method)

    def patched(self, *args, **kwargs):
        if condition(self):
            raise KilledError
        return original(self, *args, **kwargs)

    monkeypatch.setattr(training.Trainer, method, patched)


def killed_at_step(step, dataset, run, monkeypatch):
    """A run of ``config(dataset, run)`` killed when it is about to train step ``step``."""
    with monkeypatch.context() as patch:
        fail_when(patch, "train_batch", lambda trainer: trainer.step == step)
        with pytest.raises(KilledError):
            train(config(dataset, run))
    return run


def assert_clean_log(run_dir):
    """Every line parses; train records and eval records each have unique, strictly increasing steps."""
    records = read_metrics(run_dir)
    for kind in ("train/lm_loss", "eval/exact_accuracy"):
        steps = [r["step"] for r in records if kind in r]
        assert steps and all(a < b for a, b in itertools.pairwise(steps)), (kind, steps)
    return records


def one_line_error(result):
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


# --------------------------------------------------------------------------------------------
# resume


def test_a_run_killed_before_its_first_checkpoint_resumes_by_folder_as_a_fresh_start(
    sorting_dataset, tmp_path, monkeypatch
):
    reference = tmp_path / "reference"
    train(config(sorting_dataset, reference))

    run = tmp_path / "killed"
    with monkeypatch.context() as patch:
        fail_when(patch, "train_batch", lambda trainer: trainer.step == 7)  # the first checkpoint is at 16
        with pytest.raises(KilledError):
            train(config(sorting_dataset, run))
    assert [r["step"] for r in read_metrics(run)] == list(range(1, 8))
    # the resolved run config is there from the start, with a checkpoint's sections; no weights yet
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert list(saved) == ["arch", "model", "train", "dataset", "data_location"]
    assert saved == yaml.safe_load((reference / "config.yaml").read_text()) | {
        "train": saved["train"],
        "data_location": saved["data_location"],
    }
    assert saved["model"]["seq_len"] == 6 and saved["train"]["data_path"] == str(sorting_dataset)
    assert (run / OWNER_FILE).is_file() and not (run / "model.safetensors").exists()
    with pytest.raises(CheckpointError, match="neither a reasonlens run directory"):
        load_checkpoint(run)
    assert load_train_config(run).resume is True

    result = runner.invoke(app, ["train", str(run)])
    assert result.exit_code == 0, result.output
    assert "has no checkpoint (optimizer.pt) yet: starting it afresh from step 1" in result.output
    assert_clean_log(run)
    assert read_metrics(run) == read_metrics(reference)  # the fresh start is the uninterrupted run


def test_a_torn_last_line_is_dropped_on_resume(sorting_dataset, tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    train(config(sorting_dataset, reference, checkpoint_every_steps=5))

    run = tmp_path / "torn"
    with monkeypatch.context() as patch:
        fail_when(patch, "train_batch", lambda trainer: trainer.step == 23)  # the last checkpoint is at 20
        with pytest.raises(KilledError):
            train(config(sorting_dataset, run, checkpoint_every_steps=5))
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 24, "train/lm_lo')  # killed mid-write (or the disk filled up)

    resumed = train(load_train_config(run))
    assert (run / "metrics.jsonl").read_text().endswith("}\n")
    assert_clean_log(run)  # every line parses: the torn one is gone
    assert read_metrics(run) == read_metrics(reference)
    assert resumed["eval/exact_accuracy"] == json.loads((reference / "summary.json").read_text())["eval/exact_accuracy"]


def test_an_evaluation_logged_after_the_last_checkpoint_is_not_logged_twice(sorting_dataset, tmp_path, monkeypatch):
    """checkpoint_every_steps=8 checkpoints at step 16 before the evaluation at step 16; a kill after that
    evaluation was logged, before its own checkpoint, must not leave eval@16 in the log twice."""
    reference = tmp_path / "reference"
    train(config(sorting_dataset, reference, checkpoint_every_steps=8))

    run = tmp_path / "killed"
    with monkeypatch.context() as patch:
        fail_when(patch, "save", lambda trainer: trainer.step == 16 and trainer.iterations_done == 1)
        with pytest.raises(KilledError):
            train(config(sorting_dataset, run, checkpoint_every_steps=8))
    assert [r["step"] for r in read_metrics(run) if "eval/exact_accuracy" in r] == [16]

    train(load_train_config(run))
    assert_clean_log(run)
    assert read_metrics(run) == read_metrics(reference)


def test_a_corrupt_line_inside_the_log_stops_the_resume_with_one_line(sorting_dataset, tmp_path, monkeypatch):
    run = killed_at_step(18, sorting_dataset, tmp_path / "run", monkeypatch)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[2] = "garbage"
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(TrainError, match=r"metrics.jsonl line 3 is not a metrics record"):
        train(load_train_config(run))


def test_a_truncated_optimizer_state_stops_the_resume_with_one_line(sorting_dataset, tmp_path, monkeypatch):
    run = killed_at_step(18, sorting_dataset, tmp_path / "run", monkeypatch)
    state = run / "optimizer.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])  # a kill mid-write of a foreign copy
    message = one_line_error(runner.invoke(app, ["train", str(run)]))
    assert "optimizer.pt cannot be read" in message and "overwrite=true" in message


# --------------------------------------------------------------------------------------------
# run folders


def test_overwrite_refuses_a_folder_that_is_not_a_training_run(sorting_dataset, tmp_path):
    thesis = tmp_path / "thesis"
    (thesis / "ch1.tex").parent.mkdir()
    (thesis / "ch1.tex").write_text("\\chapter{Keep me}")
    (thesis / "metrics.jsonl").write_text("my own notes\n")  # a name training uses, in a foreign folder
    for flags in ({"overwrite": True}, {"resume": True}, {"overwrite": True, "resume": True}):
        with pytest.raises(TrainError, match="holds files that training did not write") as error:
            train(config(sorting_dataset, thesis, **flags))
        assert "\n" not in str(error.value)
    assert sorted(p.name for p in thesis.iterdir()) == ["ch1.tex", "metrics.jsonl"]
    assert (thesis / "metrics.jsonl").read_text() == "my own notes\n"

    # through the command line: one line, exit 2, nothing deleted
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(config(sorting_dataset, thesis).model_dump()))
    line = one_line_error(runner.invoke(app, ["train", str(recipe), "overwrite=true"]))
    assert "refusing to overwrite" in line
    assert (thesis / "ch1.tex").read_text() == "\\chapter{Keep me}"

    # a folder another reasonlens command made (a dataset) is not a training run either
    with pytest.raises(TrainError, match="holds files that training did not write"):
        train(config(sorting_dataset, sorting_dataset, overwrite=True))
    assert (sorting_dataset / "train" / "dataset.json").is_file()

    # a run_dir that is a file
    paper = tmp_path / "paper.pdf"
    paper.write_bytes(b"%PDF")
    with pytest.raises(TrainError, match="is a file, not a folder"):
        train(config(sorting_dataset, paper, overwrite=True))
    assert paper.read_bytes() == b"%PDF"


def test_overwrite_of_our_own_run_deletes_only_what_training_wrote(sorting_dataset, tmp_path):
    run = tmp_path / "run"
    train(config(sorting_dataset, run, keep_checkpoints=True, epochs=2, eval_interval=1))
    assert (run / OWNER_FILE).is_file() and (run / "checkpoints").is_dir()
    (run / "notes.txt").write_text("mine")
    (run / "plots").mkdir()
    (run / "plots" / "curve.png").write_bytes(b"png")

    summary = train(config(sorting_dataset, run, overwrite=True, max_train_steps=3, epochs=2, eval_interval=1))
    assert summary["steps"] == 3
    assert (run / "notes.txt").read_text() == "mine" and (run / "plots" / "curve.png").read_bytes() == b"png"
    assert not (run / "checkpoints").exists()  # the earlier run's extra checkpoints went with it
    assert [r["step"] for r in assert_clean_log(run) if "train/lm_loss" in r] == [1, 2, 3]
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["max_train_steps"] == 3

    # a run made before the owner marker existed (config.yaml with a train section) may be overwritten too
    (run / OWNER_FILE).unlink()
    train(config(sorting_dataset, run, overwrite=True, max_train_steps=2, epochs=2, eval_interval=1))
    assert (run / OWNER_FILE).is_file() and (run / "notes.txt").is_file()
    assert [r["step"] for r in read_metrics(run) if "train/lm_loss" in r] == [1, 2]


def test_a_run_that_stopped_on_a_config_error_leaves_nothing_in_the_way(sorting_dataset, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(TrainError, match="make no full batch"):
        train(config(sorting_dataset, run, global_batch_size=4096, epochs=1, eval_interval=1))
    assert not run.exists()
    # a folder holding only the owner marker is not busy
    run.mkdir()
    mark_owned(run, "training run")
    train(config(sorting_dataset, run, max_train_steps=2, epochs=1, eval_interval=1))
    assert (run / "model.safetensors").is_file()


# --------------------------------------------------------------------------------------------
# evaluation batches


def test_a_huge_batch_size_is_one_unpadded_batch_with_the_same_metrics(tmp_path, monkeypatch):
    root = train_tiny_sudoku(tmp_path)
    run, data = root / "run", root / "data"
    split_rows = PuzzleBatches(data, "test", 8).arrays.num_examples
    assert split_rows == 12

    shapes = []
    original = PuzzleBatches.test_batches

    def spy(self, *args, **kwargs):
        for batch, real in original(self, *args, **kwargs):
            shapes.append((batch["inputs"].shape[0], real))
            yield batch, real

    monkeypatch.setattr(PuzzleBatches, "test_batches", spy)
    huge = run_evaluation(run, batch_size=100_000, out=tmp_path / "huge.json", device="cpu")
    assert shapes == [(12, 12)]  # one batch of the split's rows, no padding
    shapes.clear()
    small = run_evaluation(run, batch_size=8, out=tmp_path / "small.json", device="cpu")
    assert shapes == [(8, 8), (4, 4)]  # the short last batch is not padded either
    assert huge["metrics"]["count"] == small["metrics"]["count"] == 12
    for key, value in small["metrics"].items():
        assert huge["metrics"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


@pytest.mark.parametrize("size", ["0", "-3"])
def test_a_batch_size_below_one_is_one_line(tmp_path, size):
    with pytest.raises(EvaluationError, match="batch size must be a whole number >= 1"):
        run_evaluation(tmp_path / "no-run", batch_size=int(size))
    assert issubclass(EvaluationError, UserInputError)
    line = one_line_error(runner.invoke(app, ["evaluate", str(tmp_path / "no-run"), "--batch-size", size]))
    assert f"batch size must be a whole number >= 1 (rows per batch), got {size}" in line
    line = one_line_error(runner.invoke(app, ["evaluate", str(tmp_path / "no-run"), "--max-steps", "0"]))
    assert "max steps must be a whole number >= 1" in line
