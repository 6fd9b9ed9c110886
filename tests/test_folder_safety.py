"""Commands replace only folders that reasonlens made: a folder with foreign files is refused with one line
and keeps every file, with or without ``--overwrite`` (the one helper: ``utils.io.atomic_directory``)."""

import pytest
from typer.testing import CliRunner

from reasonlens.cli.main import app
from reasonlens.utils.io import OWNER_FILE, FolderError, atomic_directory, check_replaceable

runner = CliRunner()
SUDOKU = ["--size", "4", "--train-size", "8", "--test-size", "4"]


def foreign_folder(path):
    (path / "thesis").mkdir(parents=True)
    (path / "thesis" / "ch1.tex").write_text("\\chapter{One}")
    return path


def test_data_overwrite_never_deletes_a_foreign_folder(tmp_path):
    out = foreign_folder(tmp_path / "mine")
    result = runner.invoke(app, ["data", "sudoku", str(out), *SUDOKU, "--overwrite"])
    assert result.exit_code == 2 and result.output.startswith("error: ") and "refusing to replace" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert (out / "thesis" / "ch1.tex").read_text() == "\\chapter{One}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temporary folder left behind


def test_data_overwrite_of_the_current_folder_is_refused(tmp_path, monkeypatch):
    foreign_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["data", "sudoku", ".", *SUDOKU, "--overwrite"])
    assert result.exit_code == 2 and "current folder" in result.output
    assert (tmp_path / "thesis" / "ch1.tex").is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["thesis"]


def test_our_own_folder_is_replaced_and_an_empty_one_is_used(tmp_path):
    out = tmp_path / "data"
    out.mkdir()  # empty: nothing to lose
    assert runner.invoke(app, ["data", "sudoku", str(out), *SUDOKU, "--overwrite"]).exit_code == 0
    assert (out / OWNER_FILE).is_file() and (out / "train" / "dataset.json").is_file()
    first = (out / "train" / "all__inputs.npy").read_bytes()
    result = runner.invoke(app, ["data", "sudoku", str(out), *SUDOKU, "--seed", "1", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert (out / "train" / "all__inputs.npy").read_bytes() != first  # replaced by the new build
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_a_file_is_not_a_folder(tmp_path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(FolderError, match="is a file, not a folder"):
        check_replaceable(tmp_path / "out")


def test_a_failed_write_leaves_the_old_folder_whole(tmp_path):
    with atomic_directory(tmp_path / "made", "test folder") as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "made", "test folder") as tmp:
        (tmp / "a.txt").write_text("second")
        raise RuntimeError("killed mid-write")
    assert (tmp_path / "made" / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["made"]


def test_lm_datasets_never_replace_a_foreign_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    from reasonlens.lm.tasks.dataset import save_datasets

    out = foreign_folder(tmp_path / "lm")
    table = datasets.DatasetDict({"train": datasets.Dataset.from_list([{"prompt": "a", "completion": "b"}])})
    with pytest.raises(FolderError, match="refusing to replace"):
        save_datasets(table, out)
    assert (out / "thesis" / "ch1.tex").is_file()
    save_datasets(table, tmp_path / "fresh")
    save_datasets(table, tmp_path / "fresh")  # its own folder: replaced
    assert (tmp_path / "fresh" / OWNER_FILE).is_file()


def test_a_dataset_built_before_folders_were_marked_is_still_ours(tmp_path):
    out = tmp_path / "old"
    assert runner.invoke(app, ["data", "sudoku", str(out), *SUDOKU]).exit_code == 0
    (out / OWNER_FILE).unlink()  # as an earlier version left it
    result = runner.invoke(app, ["data", "sudoku", str(out), *SUDOKU, "--overwrite"])
    assert result.exit_code == 0, result.output
    (out / OWNER_FILE).unlink()
    (out / "train" / "my_notes.txt").write_text("mine")  # anything else makes it foreign again
    result = runner.invoke(app, ["data", "sudoku", str(out), *SUDOKU, "--overwrite"])
    assert result.exit_code == 2 and "refusing to replace" in result.output
    assert (out / "train" / "my_notes.txt").read_text() == "mine"
