"""The dataset builder (:func:`build_maze_dataset`) and what it builds (:class:`MazeBuildConfig`): the official
on-disk format (:mod:`reasonlens.hrm.data.format`) from the official CSV files (:mod:`.official_csv`) or from the
generator (:mod:`.generator`). ``aug`` adds the 8 dihedral variants of each train maze as one group (official
``--aug``, default off: "data augmentation is disabled for Maze"); test is never augmented.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from reasonlens.hrm.data.format import (
    BLANK_IDENTIFIER,
    DatasetError,
    SplitBuilder,
    dihedral_transform,
    make_metadata,
    write_dataset,
)
from reasonlens.hrm.data.maze.batch_bfs import _valid_optimal_batch
from reasonlens.hrm.data.maze.difficulty import (
    HARD_MIN_PATH_LENGTH,
    HARD_SIZE,
    _resolve_min_path_length,
    maze_shape,
)
from reasonlens.hrm.data.maze.encoding import PATH, VOCAB_SIZE, WALL
from reasonlens.hrm.data.maze.generator import GenerationStats, default_oversampling, generate_mazes
from reasonlens.hrm.data.maze.official_csv import read_maze_csv
from reasonlens.hrm.data.maze.paths import TIE_BREAK, path_problem
from reasonlens.utils.config import StrictConfig

logger = logging.getLogger(__name__)

NUM_DIHEDRAL = 8
_CHUNK_MAZES = 50  # mazes per generation job of the builder (fixed: the output must not depend on workers)


class MazeBuildConfig(StrictConfig):
    """What :func:`build_maze_dataset` builds. ``generate``: ``train_size`` + ``test_size`` new mazes,
    ``min_path_length`` (cells on the shortest path, S and G included) defaulting to 111 on 30×30 (HRM's
    Maze-Hard: > 110) and ``max(H, W)`` otherwise (Lehnert et al.). ``csv``: the official files ``train_csv``
    and ``test_csv`` (side read from them), ``train_size``/``test_size`` rows of each (a seeded subsample when a
    file holds more, None for all)."""

    out_dir: Path = Field(description="output folder (written atomically)")
    source: Literal["generate", "csv"] = Field(
        "generate", description="generate: Lehnert-style random mazes; csv: the official CSV files"
    )
    size: int | None = Field(None, description="maze side; generate: default 30; csv: read from the files")
    train_size: int | None = Field(1000, ge=1, description="train mazes before augmentation; csv: None for all")
    test_size: int | None = Field(1000, ge=1, description="test mazes")
    min_path_length: int | None = Field(
        None,
        ge=2,
        description="generate: min cells on the shortest path, S and G included (default 111 on 30×30, else the side)",
    )
    aug: bool = Field(False, description="add the 8 dihedral variants of each train maze as its group")
    train_csv: Path | None = Field(None, description="csv: official CSV (source,q,a,rating) of the train split")
    test_csv: Path | None = Field(None, description="csv: official CSV of the test split")
    seed: int = Field(0, ge=0, description="random seed: the same seed gives byte-identical files")
    workers: int | None = Field(None, ge=1, description="generate: processes (default: CPU cores); same output")
    overwrite: bool = Field(False, description="replace the output folder if it exists")

    @model_validator(mode="after")
    def _consistent(self):
        if self.source == "generate":
            if self.size is not None:
                maze_shape(self.size)
            if self.train_size is None or self.test_size is None:
                raise ValueError("source 'generate' needs train_size and test_size")
            given = [f for f in ("train_csv", "test_csv") if getattr(self, f) is not None]
            if given:
                raise ValueError(f"{' and '.join(given)} are read only with source 'csv'")
            _resolve_min_path_length(self.side, self.side, self.resolved_min_path_length)
        else:
            missing = [f for f in ("train_csv", "test_csv") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"source 'csv' needs {' and '.join(missing)}")
            if self.min_path_length is not None:
                raise ValueError("min_path_length filters generated mazes only; the CSV files are kept as they are")
        return self

    @property
    def side(self) -> int:
        return HARD_SIZE if self.size is None else self.size

    @property
    def resolved_min_path_length(self) -> int | None:
        if self.source == "csv":
            return None
        if self.min_path_length is not None:
            return self.min_path_length
        return HARD_MIN_PATH_LENGTH if self.side == HARD_SIZE else self.side


def _dihedral_key(maze: np.ndarray) -> bytes:
    """The same bytes for a maze and its 8 dihedral variants (dedupes train/test across augmentation)."""
    return min(np.ascontiguousarray(dihedral_transform(maze, tid)).tobytes() for tid in range(NUM_DIHEDRAL))


def _generate_chunk(job: tuple[int, int, int, int, int, int]) -> tuple[np.ndarray, np.ndarray, GenerationStats]:
    side, min_path_length, seed, split_index, chunk_index, count = job
    rng = np.random.default_rng([seed, split_index, chunk_index])
    return generate_mazes(count, side, rng, min_path_length)


def _available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _pool(workers: int, jobs: int):
    if workers <= 1 or jobs <= 1:
        return None
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(max_workers=min(workers, jobs), mp_context=multiprocessing.get_context(method))


def _generate_split(
    config: MazeBuildConfig, split_index: int, count: int, taken: set[bytes], stats: GenerationStats
) -> tuple[np.ndarray, np.ndarray, int]:
    """``count`` mazes not in ``taken`` (dihedral keys, updated), from jobs seeded (seed, split, chunk) and
    merged in chunk order, so the result does not depend on ``workers``. Returns mazes, solutions, duplicates."""
    side, min_path_length = config.side, config.resolved_min_path_length
    workers = config.workers or _available_cpus()
    mazes, solutions, duplicates, next_chunk = [], [], 0, 0
    max_chunks = 20 + 4 * math.ceil(count / _CHUNK_MAZES)
    while len(mazes) < count:
        needed = count - len(mazes)
        sizes = [min(_CHUNK_MAZES, needed - start) for start in range(0, needed, _CHUNK_MAZES)]
        if next_chunk + len(sizes) > max_chunks:
            raise DatasetError(
                f"found only {len(mazes)} distinct {side}×{side} mazes with min_path_length {min_path_length} "
                f"for a split of {count}: too few such mazes exist; lower the sizes or min_path_length"
            )
        jobs = [(side, min_path_length, config.seed, split_index, next_chunk + i, n) for i, n in enumerate(sizes)]
        next_chunk += len(jobs)
        pool, results = _pool(workers, len(jobs)), []
        try:
            for result in pool.map(_generate_chunk, jobs) if pool else map(_generate_chunk, jobs):
                results.append(result)
                logger.info("maze split %d: job %d/%d done", split_index, len(results), len(jobs))
        finally:
            if pool:
                pool.shutdown()
        for chunk_mazes, chunk_solutions, chunk_stats in results:
            stats.add(chunk_stats)
            for maze, solution in zip(chunk_mazes, chunk_solutions):
                key = _dihedral_key(maze)
                if key in taken:
                    duplicates += 1
                    continue
                taken.add(key)
                mazes.append(maze)
                solutions.append(solution)
    return np.stack(mazes[:count]), np.stack(solutions[:count]), duplicates


def _csv_split(path: Path, count: int | None, rng: np.random.Generator, side: int | None, field: str):
    """The mazes of one CSV file; ``count`` of them (a seeded subsample, file order kept) unless None."""
    mazes, solutions = read_maze_csv(path)
    if side is not None and mazes.shape[1] != side:
        raise DatasetError(f"{path}: the mazes are {mazes.shape[1]}×{mazes.shape[1]} but size={side}")
    if count is not None:
        if count > len(mazes):
            raise DatasetError(f"{path} holds {len(mazes)} mazes, fewer than {field}={count}; lower it or use None")
        if count < len(mazes):
            keep = np.sort(rng.choice(len(mazes), size=count, replace=False))
            mazes, solutions = mazes[keep], solutions[keep]
    return mazes, solutions


def _split_arrays(mazes: np.ndarray, solutions: np.ndarray, augment: bool, split: str):
    """Encode one split; every written (maze, label) pair, augmented ones included, is checked first."""
    transforms = range(NUM_DIHEDRAL) if augment else range(1)
    variants = [
        [(dihedral_transform(maze, tid), dihedral_transform(solution, tid)) for tid in transforms]
        for maze, solution in zip(mazes, solutions)
    ]
    all_mazes = np.stack([maze for group in variants for maze, _ in group])
    all_labels = np.stack([label for group in variants for _, label in group])
    bad = np.flatnonzero(~_valid_optimal_batch(all_mazes, all_labels))
    if bad.size:
        first = bad[0]
        raise DatasetError(
            f"{split} maze {first // len(transforms)} (dihedral {first % len(transforms)}): the label is not a "
            f"valid shortest path: {path_problem(all_mazes[first], all_labels[first])}"
        )
    builder = SplitBuilder(mazes.shape[1] * mazes.shape[2])
    for group in variants:
        builder.add_group([(0, [(maze.ravel(), label.ravel())]) for maze, label in group])
    return builder.arrays()


def _length_stats(solutions: np.ndarray) -> dict:
    lengths = (solutions == PATH).sum(axis=(1, 2)) + 2
    return {
        "min": int(lengths.min()),
        "median": float(np.median(lengths)),
        "mean": round(float(lengths.mean()), 2),
        "max": int(lengths.max()),
    }


def build_maze_dataset(config: MazeBuildConfig | dict) -> Path:
    """Build a Maze dataset in the official format (see :mod:`reasonlens.hrm.data.maze`) and return its folder.

    Train and test mazes are disjoint, also up to the dihedral symmetries (generated ones are deduplicated; for
    CSV files the overlap is only counted). Every written pair (augmentations included) is checked to be a
    valid shortest path, and generated mazes to reach ``min_path_length``. ``build.json`` beside the splits
    records the config (without ``out_dir``, ``overwrite``, ``workers``), the counts, the path-length
    statistics and, for ``generate``, the acceptance rates. The same config and seed give byte-identical
    files whatever ``workers``."""
    config = MazeBuildConfig.from_dict(config)
    if config.out_dir.exists() and not config.overwrite:
        raise DatasetError(f"{config.out_dir} already exists; choose another output folder or pass overwrite")
    build_info: dict = {
        "builder": "reasonlens.hrm.data.maze",
        "config": config.model_dump(mode="json", exclude={"out_dir", "overwrite", "workers"}),
    }
    if config.source == "generate":
        stats, taken = GenerationStats(), set()
        train_mazes, train_solutions, train_dups = _generate_split(config, 0, config.train_size, taken, stats)
        test_mazes, test_solutions, test_dups = _generate_split(config, 1, config.test_size, taken, stats)
        min_length = config.resolved_min_path_length
        for split, solutions in (("train", train_solutions), ("test", test_solutions)):
            if _length_stats(solutions)["min"] < min_length:
                raise DatasetError(f"{split}: a generated maze is shorter than min_path_length={min_length}")
        build_info["generation"] = {
            "attempts": stats.attempts,
            "accepted": stats.accepted,
            "acceptance_rate": stats.acceptance_rate,
            "plain_rejection_acceptance_rate": stats.plain_acceptance,
            "oversampling": default_oversampling(config.side, config.side, min_length),
            "shared_layouts": stats.shared_layouts,
            "duplicates_dropped": train_dups + test_dups,
        }
    else:
        rng = np.random.default_rng(config.seed)
        train_mazes, train_solutions = _csv_split(config.train_csv, config.train_size, rng, config.size, "train_size")
        test_mazes, test_solutions = _csv_split(config.test_csv, config.test_size, rng, config.size, "test_size")
        if train_mazes.shape[1:] != test_mazes.shape[1:]:
            raise DatasetError(f"{config.train_csv} and {config.test_csv} hold mazes of different sizes")
        train_keys = {_dihedral_key(maze) for maze in train_mazes}
        build_info["csv"] = {
            "train_test_overlap": sum(_dihedral_key(maze) in train_keys for maze in test_mazes),
        }

    side = train_mazes.shape[1]
    splits, split_info = {}, {}
    for split, mazes, solutions, augment in (
        ("train", train_mazes, train_solutions, config.aug),
        ("test", test_mazes, test_solutions, False),
    ):
        arrays = _split_arrays(mazes, solutions, augment, split)
        splits[split] = (make_metadata(arrays, vocab_size=VOCAB_SIZE, num_puzzle_identifiers=1), arrays)
        split_info[split] = {
            "groups": arrays.num_groups,
            "puzzles": arrays.num_puzzles,
            "examples": arrays.num_examples,
            "path_length": _length_stats(solutions),
            "wall_fraction_mean": round(float((mazes == WALL).mean()), 4),
        }
    build_info.update(
        size=side,
        seq_len=side * side,
        vocab_size=VOCAB_SIZE,
        min_path_length=config.resolved_min_path_length,
        path_length_unit="cells on the shortest path, S and G included",
        tie_break=TIE_BREAK,
        splits=split_info,
    )
    return write_dataset(
        config.out_dir,
        splits,
        identifiers=[BLANK_IDENTIFIER],
        extra_files={"build.json": json.dumps(build_info, indent=2) + "\n"},
        overwrite=config.overwrite,
    )
