"""Every recipe in configs/train validates and builds its model at the task's real shape, and the dataset
build command written in its header runs (with sizes shrunk so the test stays fast)."""

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reasonlens.cli.main import app
from reasonlens.hrm.analysis.studies import load_study
from reasonlens.hrm.training.checkpoint import build_model, model_arch
from reasonlens.hrm.training.trainer import load_train_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs" / "train").glob("*.yaml"))
TASK_SHAPES = {  # (seq_len, vocab_size, num_puzzle_identifiers) of the datasets the recipes are written for
    "sudoku-4x4": (16, 6, 1),
    "sudoku-6x6": (36, 8, 1),
    "sudoku": (81, 11, 1),
    "maze-10x10": (100, 6, 1),
    "maze": (900, 6, 1),
    "arc-synthetic": (100, 12, 201),
    "arc": (900, 12, 1000),
}
SHRINK = {"--train-size": "12", "--test-size": "4", "--num-aug": "1", "--num-tasks": "14", "--subsample-size": "12"}


def task_shape(data_path: str):
    name = Path(data_path).name
    for key, shape in TASK_SHAPES.items():
        if name.startswith(key):
            return shape
    raise AssertionError(f"no task shape for {data_path}")


def build_command(config_path: Path) -> list[str]:
    text = config_path.read_text()
    comment = " ".join(
        line.lstrip("#").strip().rstrip("\\").strip() for line in text.splitlines() if line.startswith("#")
    )
    match = re.search(r"reasonlens data (\S+ \S+(?: --\S+(?: [^-\s]\S*)?)*)", comment)
    if match is None:  # "Dataset: see other.yaml"
        other = re.search(r"see (\w+\.yaml)", comment)
        assert other, f"{config_path.name} does not say how to build its dataset"
        return build_command(config_path.parent / other.group(1))
    return shlex.split(match.group(1))


def shrink(args: list[str], out: Path) -> list[str]:
    kind, args = args[0], args[2:]
    shrunk, i = [kind, str(out)], 0
    while i < len(args):
        flag = args[i]
        value = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else None
        if flag == "--test-fraction":
            flag, value = "--test-size", "4"
        shrunk += [flag] + ([SHRINK.get(flag, value)] if value is not None else [])
        i += 2 if value is not None else 1
    if kind == "sudoku" and "--subsample-size" not in shrunk and "--size" not in shrunk:
        shrunk += ["--subsample-size", "12"]
    if kind == "arc":
        shrunk += ["--subsample-tasks", "2"]
    if kind == "maze":
        shrunk += ["--workers", "1"] + ([] if "--size" in shrunk else ["--size", "8"])
    return shrunk


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_recipe_config_builds_its_model(path):
    config = load_train_config(path)
    seq_len, vocab, ids = task_shape(config.data_path)
    model = build_model(
        config.arch, {**config.model, "seq_len": seq_len, "vocab_size": vocab, "num_puzzle_identifiers": ids}
    )
    assert model_arch(model) == config.arch
    for field, value in config.model.items():  # every field of the recipe reached the model
        assert getattr(model.config, field) == value, field
    levels = {"L_level": model.config.L_layers} if config.arch == "trm" else {"H_level": model.config.H_layers}
    for level, layers in levels.items():
        assert len(getattr(model.inner, level).layers) == layers
    assert config.epochs % (config.eval_interval or config.epochs) == 0


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_recipe_dataset_command_runs(path, tmp_path):
    args = shrink(build_command(path), tmp_path / "data")
    result = CliRunner().invoke(app, ["data", *args])
    assert result.exit_code == 0, f"{args}: {result.output}"
    assert (tmp_path / "data" / "train" / "dataset.json").is_file()


def test_official_recipes_match_the_papers():
    hrm = load_train_config(REPO / "configs" / "train" / "sudoku_extreme_1k.yaml")
    assert (hrm.global_batch_size, hrm.epochs, hrm.eval_interval, hrm.lr, hrm.weight_decay) == (
        768,
        20000,
        2000,
        1e-4,
        1.0,
    )
    arc = load_train_config(REPO / "configs" / "train" / "arc1.yaml")
    assert (arc.epochs, arc.puzzle_emb_lr, arc.weight_decay) == (100000, 1e-2, 0.1)
    trm = load_train_config(REPO / "configs" / "train" / "trm_sudoku_mlp.yaml")
    model = build_model("trm", {**trm.model, "seq_len": 81, "vocab_size": 11, "num_puzzle_identifiers": 1})
    assert trm.ema and sum(p.numel() for p in model.parameters()) == 5_028_866


STUDIES = sorted((REPO / "configs" / "studies").glob("*.yaml"))


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_study_variants_build_their_models(path):
    """Every variant of every shipped study is a valid training config whose model builds."""
    study = load_study(path)
    for name, overrides in study.variants.items():
        config = load_train_config(REPO / study.base, [*study.overrides, *overrides])
        seq_len, vocab, ids = task_shape(config.data_path)
        model = build_model(
            config.arch, {**config.model, "seq_len": seq_len, "vocab_size": vocab, "num_puzzle_identifiers": ids}
        )
        assert sum(p.numel() for p in model.parameters()) > 0, name
