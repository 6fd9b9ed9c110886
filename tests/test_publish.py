"""Model folders in the Hub layout: publish a run, load it back by path (never touching the network) or by
a Hub id (through huggingface_hub, stubbed here), and refuse what is not a run."""

from __future__ import annotations

import json

import huggingface_hub
import pytest
import torch
from conftest import train_tiny_sudoku
from typer.testing import CliRunner

from reasonlens.cli.main import app
from reasonlens.hrm.models.hrm_act_v1 import ACTModel, HRMACTv1
from reasonlens.hrm.models.trm import TRM
from reasonlens.hrm.training.checkpoint import CheckpointError, load_checkpoint
from reasonlens.hrm.training.publish import publish_run
from reasonlens.utils.io import FolderError


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_tiny_sudoku(tmp_path_factory.mktemp("publish"))


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_published_folder_is_self_contained_and_loads_without_the_hub(trained, tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a local folder must not contact the Hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    examples = tmp_path / "examples.txt"
    examples.write_text("1...\n")
    folder = publish_run(
        trained / "run", tmp_path / "zoo" / "tiny", card="# tiny\n\nA test model.\n", include=[examples]
    )
    names = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "config.yaml", "config.json", "dataset.json", "README.md", "summary.json"} <= names
    assert "examples.txt" in names and "metrics.jsonl" not in names
    curve = (folder / "eval_curve.jsonl").read_text().splitlines()
    assert len(curve) == 2 and all('"eval/exact_accuracy"' in line for line in curve)  # one per epoch
    assert json.loads((folder / "dataset.json").read_text())["vocab_size"] == 6  # the tokenisation travels along
    assert (folder / "README.md").read_text().startswith("---\nlibrary_name: reasonlens")
    # the dataset may vanish: loading needs only the folder
    for path in (trained / "data").rglob("*"):
        if path.is_file():
            path.rename(path.with_name(path.name + ".moved"))
    try:
        original = load_checkpoint(trained / "run")
        assert same_weights(load_checkpoint(folder), original)
        via_hub_api = ACTModel.from_pretrained(folder)
        assert isinstance(via_hub_api, HRMACTv1) and same_weights(via_hub_api, original)
        with pytest.raises(CheckpointError, match="not a TRM"):
            TRM.from_pretrained(folder)
    finally:
        for path in (trained / "data").rglob("*.moved"):
            path.rename(path.with_name(path.name.removesuffix(".moved")))


def test_a_hub_id_goes_through_snapshot_download(trained, tmp_path, monkeypatch):
    folder = publish_run(trained / "run", tmp_path / "m")
    asked = {}

    def fake_download(repo_id, **kwargs):
        asked["repo_id"] = repo_id
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    monkeypatch.setattr(  # the mixin fetches config.json first
        huggingface_hub.hub_mixin, "hf_hub_download", lambda repo_id, filename, **kw: str(folder / filename)
    )
    model = ACTModel.from_pretrained("someone/hrm-sudoku")
    assert asked["repo_id"] == "someone/hrm-sudoku" and same_weights(model, load_checkpoint(folder))


def test_save_pretrained_round_trip(tmp_path):
    from conftest import tiny_hrm_config

    model = HRMACTv1(tiny_hrm_config())
    model.save_pretrained(tmp_path / "saved")
    assert {"model.safetensors", "config.yaml", "config.json", "README.md"} <= {
        p.name for p in (tmp_path / "saved").iterdir()
    }
    assert same_weights(ACTModel.from_pretrained(tmp_path / "saved"), model)


def test_publish_refuses_what_is_not_a_run_and_foreign_folders(trained, tmp_path):
    with pytest.raises(CheckpointError, match="not a trained run"):
        publish_run(tmp_path, tmp_path / "out")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FolderError):
        publish_run(trained / "run", foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_cli_publish_writes_the_card(trained, tmp_path):
    card = tmp_path / "card.md"
    card.write_text("# my model\n\nnumbers here\n")
    result = CliRunner().invoke(
        app, ["hrm", "publish", str(trained / "run"), str(tmp_path / "out"), "--card", str(card)]
    )
    assert result.exit_code == 0, result.output
    text = (tmp_path / "out" / "README.md").read_text()
    assert "numbers here" in text and text.startswith("---")
    missing = CliRunner().invoke(
        app, ["hrm", "publish", str(trained / "run"), str(tmp_path / "o2"), "--card", "nope.md"]
    )
    assert missing.exit_code == 2 and "no such file" in missing.output
