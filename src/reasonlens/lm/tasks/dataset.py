"""Datasets of the scoring game as Hugging Face ``datasets`` objects, reproducible from the task seed.

:func:`build_sft_datasets` returns a ``DatasetDict`` with ``train`` / ``val`` / ``test`` (in
distribution) and one ``ood_<category>`` test set per OOD category. Validation and test prompts never
occur in the training set, so ID test accuracy measures generalisation to new card sets, not recall.
"""

from __future__ import annotations

import random
from pathlib import Path

from datasets import Dataset, DatasetDict, load_from_disk

from reasonlens.lm.config.task_config import TaskConfig
from reasonlens.lm.errors import LMError
from reasonlens.lm.tasks.generators import make_example
from reasonlens.utils.io import atomic_directory, read_yaml, write_yaml

ID_SPLITS = ("train", "val", "test")


def _examples(config: TaskConfig, split: str, distribution: str, n: int, exclude: set[str]) -> list[dict]:
    rng = random.Random(f"{config.seed}-{split}")
    out, attempts = [], 0
    while len(out) < n:
        example = make_example(config, rng, distribution)
        attempts += 1
        if example["prompt"] in exclude:
            if attempts > 50 * n:
                raise LMError(f"cannot find {n} {split} prompts unseen in training; lower n_{split} or widen the task")
            continue
        out.append(example)
    return out


def build_examples(config: TaskConfig) -> dict[str, list[dict]]:
    """{split name: list of example dicts} — what :func:`build_sft_datasets` wraps."""
    config = TaskConfig.from_dict(config)
    splits = {"train": _examples(config, "train", "id", config.n_train, set())}
    seen = {e["prompt"] for e in splits["train"]}
    splits["val"] = _examples(config, "val", "id", config.n_val, seen)
    splits["test"] = _examples(config, "test", "id", config.n_test, seen)
    for category in config.ood_categories:
        splits[f"ood_{category}"] = _examples(config, f"ood_{category}", category, config.n_ood, seen)
    return splits


def build_sft_datasets(config: TaskConfig):
    """``DatasetDict`` with train/val/test and ``ood_<category>`` splits (columns: see generators)."""
    return DatasetDict({name: Dataset.from_list(rows) for name, rows in build_examples(config).items()})


def save_datasets(datasets, path: str | Path, config: TaskConfig | None = None) -> Path:
    """Write the DatasetDict (and its task config) to ``path`` atomically."""
    path = Path(path)
    with atomic_directory(path, "card-game datasets") as tmp:
        datasets.save_to_disk(str(tmp / "data"))
        if config is not None:
            write_yaml(tmp / "task_config.yaml", config.model_dump(mode="json"))
    return path


def load_datasets(path: str | Path):
    """(DatasetDict, TaskConfig or None) from a directory written by :func:`save_datasets`."""
    path = Path(path)
    if not (path / "data").is_dir():
        raise LMError(f"{path} is not a dataset directory (no data/ inside); build one with `reasonlens lm datasets`")
    config_file = path / "task_config.yaml"
    config = TaskConfig.from_dict(read_yaml(config_file)) if config_file.exists() else None
    return load_from_disk(str(path / "data")), config
