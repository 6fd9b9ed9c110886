"""Shared test helpers: small puzzle datasets in the official format, a tiny trained HRM run, the one small
model config, picture checks and the CPU's bf16 support."""

import numpy as np
import pytest

from reasonlens.hrm.data.format import SplitBuilder, make_metadata, write_dataset


def build_sorting_dataset(out_dir, n_train=256, n_test=64, seq_len=6, seed=0):
    """Sort digits ascending (puzzle id 1) or descending (id 2): one example per puzzle, like Sudoku."""
    rng = np.random.default_rng(seed)
    splits = {}
    for split, n in (("train", n_train), ("test", n_test)):
        builder = SplitBuilder(seq_len)
        for _ in range(n):
            digits = rng.integers(1, 10, seq_len)
            task = int(rng.integers(0, 2))
            ordered = np.sort(digits)
            builder.add_group([(task + 1, [(digits + 1, (ordered[::-1] if task else ordered) + 1)])])
        arrays = builder.arrays()
        splits[split] = (make_metadata(arrays, vocab_size=11, num_puzzle_identifiers=3), arrays)
    return write_dataset(out_dir, splits, identifiers=["<blank>", "asc", "desc"])


def build_grouped_dataset(out_dir, seed=0):
    """Groups of 1–3 member puzzles with 1–4 examples each (ARC-like); labels 0 in places (ignored)."""
    rng = np.random.default_rng(seed)
    splits = {}
    for split, n_groups in (("train", 12), ("test", 5)):
        builder = SplitBuilder(4)
        next_id = 1
        for _ in range(n_groups):
            members = []
            for _ in range(int(rng.integers(1, 4))):
                examples = [(rng.integers(1, 6, 4), rng.integers(0, 6, 4)) for _ in range(int(rng.integers(1, 5)))]
                members.append((next_id, examples))
                next_id += 1
            builder.add_group(members)
        arrays = builder.arrays()
        splits[split] = (make_metadata(arrays, vocab_size=6, num_puzzle_identifiers=60), arrays)
    return write_dataset(out_dir, splits)


@pytest.fixture
def sorting_dataset(tmp_path):
    return build_sorting_dataset(tmp_path / "sorting")


@pytest.fixture
def grouped_dataset(tmp_path):
    return build_grouped_dataset(tmp_path / "grouped")


def train_tiny_sudoku(root, **model):
    """A tiny HRM trained for 2 epochs on 64 generated 4×4 Sudokus (12 held out) into ``root/run``;
    ``model`` overrides the schedule (e.g. ``L_cycles=3``). Returns ``root``."""
    from reasonlens.hrm.data.sudoku import SudokuBuildConfig, build_sudoku_dataset
    from reasonlens.hrm.training.trainer import TrainConfig, train

    data = build_sudoku_dataset(
        SudokuBuildConfig(out_dir=root / "data", source="generate", size=4, train_size=64, test_size=12, seed=0)
    )
    defaults = {k: v for k, v in tiny_hrm_config(halt_max_steps=4).items() if k not in ("seq_len", "vocab_size")}
    train(
        TrainConfig(
            data_path=str(data),
            run_dir=str(root / "run"),
            global_batch_size=16,
            epochs=2,
            eval_interval=1,
            lr=1e-3,
            lr_warmup_steps=2,
            progress=False,
            model={**defaults, **model},
        )
    )
    return root


def write_tiny_recipe(path, data_path, **model):
    """A one-epoch training recipe (YAML) for a tiny HRM on ``data_path``; ``model`` sets the model fields."""
    from reasonlens.utils.io import write_yaml

    recipe = {
        "arch": "hrm_act_v1",
        "data_path": str(data_path),
        "global_batch_size": 16,
        "epochs": 1,
        "eval_interval": 1,
        "lr": 1e-3,
        "lr_warmup_steps": 1,
        "model": {"num_heads": 2, "H_layers": 1, "L_layers": 1, "halt_max_steps": 2, **model},
    }
    write_yaml(path, recipe)
    return path


def assert_real_picture(path, min_side=100, min_colours=8):
    """A written picture is a real image: it opens, has a plausible size and is not one flat colour."""
    from PIL import Image

    with Image.open(path) as image:
        assert min(image.size) >= min_side, f"{path}: {image.size}"
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) >= min_colours, f"{path} has only {len(colours)} colours"


def tiny_hrm_config(**overrides):
    """The one small HRM-family model config of the tests (a few thousand parameters, fp32); each test states
    what it changes. TRM and the transformer baseline take it too (extra HRM fields are ignored by them)."""
    config = dict(
        seq_len=8,
        vocab_size=6,
        hidden_size=32,
        num_heads=2,
        H_layers=1,
        L_layers=1,
        H_cycles=2,
        L_cycles=2,
        halt_max_steps=3,
        forward_dtype="float32",
        puzzle_emb_ndim=32,
    )
    return {**config, **overrides}


def native_bf16_cpu() -> bool:
    """Whether bf16 matmuls are native here. Without it (an AVX2-only CPU) bf16 sums round differently and
    large bf16 models run many times slower."""
    from reasonlens.utils.cpu import native_bf16

    return native_bf16()
