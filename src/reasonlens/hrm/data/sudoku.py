"""Sudoku datasets for HRM: the official encoding and augmentation, loaders for the shipped banks and for user
files, and :func:`build_sudoku_dataset`, which writes the official on-disk format (:mod:`.format`).

This module owns everything between a Sudoku board and a dataset folder; the solver, the difficulty rating
and the puzzle generator live in :mod:`.sudoku_solver` (re-exported here).

**Encoding** (sapientinc/HRM ``dataset/build_sudoku_dataset.py``, exact for 9×9): a board holds 0 = blank and
1..n; token = value + 1, so PAD = 0, blank = 1, digits 2..n+1; ``vocab_size = n + 2`` (11), ``seq_len = n²``
(81), ``ignore_label_id = 0`` (every cell, givens included, is scored), one puzzle identifier (0,
``"<blank>"``) and one example per puzzle. Inputs and labels are uint8.

**Augmentation** (:func:`shuffle_sudoku`, the official transform for 9×9 with its random draws in the same
order, from a passed-in ``np.random.Generator`` instead of the unseeded global ``np.random``): relabel the digits
1..n by a random permutation (0 stays 0); transpose with probability 0.5; permute the bands (groups of box-height
rows) and the rows inside each band, the stacks (groups of box-width columns) and the columns inside each
stack; new cell (i, j) takes old cell (row_perm[i], col_perm[j]) of the (maybe transposed) board. 6×6 boxes are
2 rows × 3 columns: a transpose would turn them into 3 × 2 boxes and break the puzzle, so 6×6 is never
transposed (and draws no transpose coin). Every group is an original puzzle followed by ``num_aug``
augmentations, train split only.

**Sources** for :func:`build_sudoku_dataset`: ``generate`` (:func:`generate_puzzle`, 4×4 / 6×6 / 9×9), the
banks in ``data/sudoku`` (:data:`BANK_LEVELS`, 9×9, see its README), or a user ``file`` in the official CSV
format (``source,q,a,rating`` header) or one puzzle per line (``puzzle`` or ``puzzle,solution``).
"""

from __future__ import annotations

import csv
import itertools
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, field_validator, model_validator

from reasonlens.hrm.data.format import DatasetError, SplitBuilder, make_metadata, write_dataset
from reasonlens.hrm.data.sudoku_solver import (
    BOX_SHAPES,
    DIFFICULTIES,
    DIFFICULTY_BACKTRACKS,
    SolveResult,
    as_board,
    box_shape,
    candidates,
    check_difficulty_names,
    count_solutions,
    difficulty_bucket,
    find_conflict,
    generate_full_grid,
    generate_puzzle,
    is_valid_solution,
    rate,
    solve,
    valid_grid_mask,
)
from reasonlens.utils.config import StrictConfig
from reasonlens.utils.paths import data_root

__all__ = [
    "BANK_LEVELS",
    "BOX_SHAPES",
    "DIFFICULTIES",
    "DIFFICULTY_BACKTRACKS",
    "SUDOKU_SIZES",
    "SolveResult",
    "SudokuBuildConfig",
    "SudokuTransform",
    "apply_transform",
    "box_shape",
    "build_sudoku_dataset",
    "candidates",
    "count_solutions",
    "decode_board",
    "difficulty_bucket",
    "encode_board",
    "find_conflict",
    "generate_full_grid",
    "generate_puzzle",
    "is_valid_solution",
    "load_bank",
    "load_puzzle_file",
    "random_transform",
    "rate",
    "shuffle_sudoku",
    "solve",
    "valid_grid_mask",
]

SUDOKU_SIZES = tuple(BOX_SHAPES)
SYMMETRY_HOLDOUT_SIZES = (6, 9)  # generated splits held out by symmetry class; 4×4 by puzzle
BANK_LEVELS = (
    "se_easy",
    "se_medium",
    "se_hard",
    "se_diabolical",
    "tdoku_17clue",
    "tdoku_magictour_top1465",
    "tdoku_forum_hardest_1905_11plus",
    "tdoku_forum_hardest_1106",
)
CSV_HEADER = "source,q,a,rating"
LENGTH_TO_SIZE = {size * size: size for size in SUDOKU_SIZES}


# ----------------------------------------------------------------------------------------------------------
# encoding


def encode_board(board) -> np.ndarray:
    """Board (n, n) with 0 = blank → flat uint8 tokens (value + 1: blank 1, digits 2..n+1)."""
    return (as_board(board).reshape(-1) + 1).astype(np.uint8)


def decode_board(tokens, size: int) -> np.ndarray:
    """Tokens (n² or (n, n)) → board (n, n) with 0 = blank. Tokens must be 1 (blank) .. n+1 (digit n); PAD (0)
    or anything above n+1 raises ``ValueError`` (clip model predictions first if they may hold those)."""
    box_shape(size)
    tokens = np.asarray(tokens)
    if tokens.size != size * size:
        raise ValueError(f"a {size}×{size} board has {size * size} tokens, got {tokens.size}")
    flat = tokens.reshape(-1).astype(np.int64)
    bad = np.flatnonzero((flat < 1) | (flat > size + 1))
    if bad.size:
        raise ValueError(
            f"token {flat[bad[0]]} at cell {bad[0]} is not a {size}×{size} board token; allowed: 1 (blank) and "
            f"2..{size + 1} (digits 1..{size}); 0 is PAD"
        )
    return (flat - 1).reshape(size, size)


# ----------------------------------------------------------------------------------------------------------
# augmentation


@dataclass(frozen=True)
class SudokuTransform:
    """One member of the official transform family. ``digit_map[v]`` is the new value of v (``digit_map[0] == 0``);
    new cell (i, j) = old cell (row_perm[i], col_perm[j]) of the board, transposed first if ``transpose``."""

    digit_map: np.ndarray
    transpose: bool
    row_perm: np.ndarray
    col_perm: np.ndarray


def random_transform(size: int, rng: np.random.Generator) -> SudokuTransform:
    """Draw a transform; for 9×9 the draws are those of the official ``shuffle_sudoku``, in its order."""
    box_rows, box_cols = box_shape(size)
    digit_map = np.pad(rng.permutation(np.arange(1, size + 1)), (1, 0))
    transpose = bool(rng.random() < 0.5) if box_rows == box_cols else False
    bands = rng.permutation(size // box_rows)
    row_perm = np.concatenate([band * box_rows + rng.permutation(box_rows) for band in bands])
    stacks = rng.permutation(size // box_cols)
    col_perm = np.concatenate([stack * box_cols + rng.permutation(box_cols) for stack in stacks])
    return SudokuTransform(digit_map, transpose, row_perm, col_perm)


def apply_transform(board: np.ndarray, transform: SudokuTransform) -> np.ndarray:
    board = np.asarray(board)
    if transform.transpose:
        board = board.T
    return transform.digit_map[board[np.ix_(transform.row_perm, transform.col_perm)]]


def shuffle_sudoku(board: np.ndarray, solution: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The official augmentation: one random transform applied to both the puzzle and its solution."""
    transform = random_transform(len(board), rng)
    return apply_transform(board, transform), apply_transform(solution, transform)


# ----------------------------------------------------------------------------------------------------------
# parsing and checking


def _parse_lines(lines: list[str], wheres: list[str], size: int, what: str, blanks: bool) -> np.ndarray:
    """Lines of n² characters → boards (m, n, n) uint8; ``DatasetError`` naming the first bad line."""
    cells = size * size
    allowed = ("'.' or '0' for a blank, " if blanks else "") + f"digits 1..{size}"
    for line, where in zip(lines, wheres):
        if len(line) != cells:
            raise DatasetError(
                f"{where}: the {what} has {len(line)} characters, expected {cells} for a {size}×{size} board"
            )
        if not line.isascii():
            position, char = next((i, c) for i, c in enumerate(line) if not c.isascii())
            raise DatasetError(
                f"{where}: invalid character {char!r} at position {position + 1} of the {what}; allowed: {allowed}"
            )
    if not lines:
        return np.zeros((0, size, size), dtype=np.uint8)
    raw = np.frombuffer("".join(lines).encode("ascii"), dtype=np.uint8).reshape(len(lines), cells)
    table = np.full(256, -1, dtype=np.int16)
    table[ord("1") : ord("9") + 1] = np.arange(1, 10)
    if blanks:
        table[ord(".")] = table[ord("0")] = 0
    values = table[raw]
    for bad, problem in ((values < 0, "invalid"), (values > size, "too big")):
        if bad.any():
            row, position = np.argwhere(bad)[0]
            char = lines[row][position]
            if problem == "invalid":
                message = f"invalid character {char!r} at position {position + 1} of the {what}; allowed: {allowed}"
            else:
                message = (
                    f"digit {char} at position {position + 1} of the {what} is not allowed in a {size}×{size} "
                    f"Sudoku (digits 1..{size})"
                )
            raise DatasetError(f"{wheres[row]}: {message}")
    return values.reshape(-1, size, size).astype(np.uint8)


def _check_pairs(puzzles: np.ndarray, solutions: np.ndarray, wheres: list[str]) -> None:
    """Every solution is a valid grid and agrees with its puzzle's givens; ``DatasetError`` naming the first bad one."""
    if not len(puzzles):
        return
    valid = valid_grid_mask(solutions)
    if not valid.all():
        i = int(np.flatnonzero(~valid)[0])
        raise DatasetError(f"{wheres[i]}: the solution is not a valid Sudoku grid: {find_conflict(solutions[i])}")
    mismatch = (puzzles != 0) & (puzzles != solutions)
    if mismatch.any():
        i, row, col = np.argwhere(mismatch)[0]
        raise DatasetError(
            f"{wheres[i]}: the solution does not match the givens: row {row + 1}, column {col + 1} is given as "
            f"{puzzles[i, row, col]} but the solution has {solutions[i, row, col]}"
        )


def _solve_unique(puzzle: np.ndarray, where: str) -> SolveResult:
    """Solve with limit 2; ``DatasetError`` if the givens clash, or there is no solution or more than one."""
    conflict = find_conflict(puzzle)
    if conflict:
        raise DatasetError(f"{where}: the givens break the rules: {conflict}")
    result = solve(puzzle, limit=2)
    if result.num_solutions == 0:
        raise DatasetError(f"{where}: the puzzle has no solution")
    if result.num_solutions > 1:
        raise DatasetError(f"{where}: the puzzle has more than one solution (a Sudoku must have exactly one)")
    return result


def _read_text_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"{path} not found")
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path} is not UTF-8 text: {err}") from None


# ----------------------------------------------------------------------------------------------------------
# loaders


def bank_folder(root: str | Path | None = None) -> Path:
    """The folder holding the bank files: ``root`` if given, else ``data_root()/sudoku``."""
    if root is not None:
        return Path(root)
    try:
        return data_root() / "sudoku"
    except FileNotFoundError as err:
        raise DatasetError(str(err)) from None


def load_bank(level: str, root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One shipped bank: ``(puzzles, solutions)``, each (m, 9, 9) uint8 with 0 = blank. Every line is checked
    (81 characters, allowed characters, the solution is a valid grid that agrees with the givens); a bad line
    raises ``DatasetError`` naming file and line. Uniqueness is not re-checked here (the banks' README
    records it; :func:`build_sudoku_dataset` re-checks every puzzle it writes)."""
    if level not in BANK_LEVELS:
        raise DatasetError(f"unknown Sudoku bank {level!r}; the banks are: {', '.join(BANK_LEVELS)}")
    folder = bank_folder(root)
    puzzle_path, solution_path = folder / f"{level}.puzzles.txt", folder / f"{level}.solutions.txt"
    puzzle_lines, solution_lines = _read_text_lines(puzzle_path), _read_text_lines(solution_path)
    if len(puzzle_lines) != len(solution_lines):
        raise DatasetError(
            f"{puzzle_path} has {len(puzzle_lines)} lines but {solution_path} has {len(solution_lines)}; "
            "they must pair up line by line"
        )
    puzzles = _parse_lines(
        puzzle_lines, [f"{puzzle_path}:{i + 1}" for i in range(len(puzzle_lines))], 9, "puzzle", True
    )
    solution_wheres = [f"{solution_path}:{i + 1}" for i in range(len(solution_lines))]
    solutions = _parse_lines(solution_lines, solution_wheres, 9, "solution", False)
    _check_pairs(puzzles, solutions, solution_wheres)
    return puzzles, solutions


def _file_records(path: Path) -> list[tuple[int, str, str | None]]:
    """(line number, puzzle text, solution text or None) for every puzzle line of a user file."""
    lines = _read_text_lines(path)
    content = [(number, line.strip()) for number, line in enumerate(lines, start=1)]
    content = [(number, line) for number, line in content if line and not line.startswith("#")]
    records: list[tuple[int, str, str | None]] = []
    if content and content[0][1].replace(" ", "") == CSV_HEADER:
        for number, line in content[1:]:
            try:
                fields = next(csv.reader([line]))
            except csv.Error as err:
                raise DatasetError(f"{path}:{number}: not a CSV row: {err}") from None
            if len(fields) != 4:
                raise DatasetError(
                    f"{path}:{number}: expected 4 comma-separated fields ({CSV_HEADER}), got {len(fields)}"
                )
            _, puzzle, answer, _ = (field.strip() for field in fields)
            records.append((number, puzzle, answer or None))
        return records
    for number, line in content:
        fields = [field.strip() for field in line.split(",")]
        if len(fields) > 2:
            raise DatasetError(
                f"{path}:{number}: expected 'puzzle' or 'puzzle,solution', got {len(fields)} comma-separated fields "
                f"(a CSV file needs the header '{CSV_HEADER}')"
            )
        records.append((number, fields[0], fields[1] if len(fields) == 2 and fields[1] else None))
    return records


def load_puzzle_file(path: str | Path, size: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A user file → ``(puzzles, solutions, backtracks)``: boards (m, n, n) uint8 and the rating of each puzzle.

    Formats: the official CSV (header ``source,q,a,rating``; ``q`` with ``.`` or ``0`` for blanks; ``a`` the
    solution; ``rating`` is ignored: puzzles are re-rated) or one puzzle per line, ``puzzle`` or
    ``puzzle,solution`` (blank lines and ``#`` comments skipped). The size comes from the line length (16, 36 or
    81 characters) unless ``size`` is given; every line must have the same size. Every puzzle is solved: it
    must have exactly one solution, and a given solution must be a valid grid that agrees with the givens (it
    then equals the solver's). Any problem raises ``DatasetError`` naming ``file:line``."""
    puzzles, solutions, backtracks, _ = _load_puzzle_file(Path(path), size)
    return puzzles, solutions, backtracks


def _load_puzzle_file(path: Path, size: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    records = _file_records(path)
    if not records:
        raise DatasetError(f"{path} holds no puzzles")
    if size is None:
        first_number, first_puzzle, _ = records[0]
        size = LENGTH_TO_SIZE.get(len(first_puzzle))
        if size is None:
            raise DatasetError(
                f"{path}:{first_number}: the puzzle has {len(first_puzzle)} characters; a Sudoku line has 16 (4×4), "
                "36 (6×6) or 81 (9×9)"
            )
    box_shape(size)
    wheres = [f"{path}:{number}" for number, _, _ in records]
    puzzles = _parse_lines([puzzle for _, puzzle, _ in records], wheres, size, "puzzle", True)
    solutions = np.zeros_like(puzzles)
    backtracks = np.zeros(len(records), dtype=np.int64)
    for i, (_, _, answer) in enumerate(records):
        result = _solve_unique(puzzles[i], wheres[i])
        if answer is not None:
            given = _parse_lines([answer], wheres[i : i + 1], size, "solution", False)
            _check_pairs(puzzles[i : i + 1], given, wheres[i : i + 1])
        solutions[i] = result.solution
        backtracks[i] = result.backtracks
    return puzzles, solutions, backtracks, wheres


# ----------------------------------------------------------------------------------------------------------
# symmetry classes


def symmetry_key(board: np.ndarray) -> tuple:
    """A key that every Sudoku-equivalent copy of ``board`` shares (digit relabelling, band / stack and
    row / column-within-band permutations, transpose for square boxes): the sorted given-count per digit,
    and the smallest over band, stack (and transpose) orders of (box given-counts, each band's sorted row
    counts, each stack's sorted column counts). Different keys prove two puzzles inequivalent; equal keys
    only make it possible, so the builder keeps a train puzzle out when its key equals a test puzzle's."""
    size = board.shape[-1]
    box_rows, box_cols = box_shape(size)
    given = board > 0
    digits = tuple(sorted(np.bincount(board[given], minlength=size + 1)[1:].tolist()))
    rows = given.sum(1).reshape(size // box_rows, box_rows)  # (bands, rows in a band)
    cols = given.sum(0).reshape(size // box_cols, box_cols)  # (stacks, columns in a stack)
    boxes = given.reshape(size // box_rows, box_rows, size // box_cols, box_cols).sum((1, 3))  # (bands, stacks)
    views = [(rows, cols, boxes)] + ([(cols, rows, boxes.T)] if box_rows == box_cols else [])
    best = None
    for band_counts, stack_counts, box_counts in views:
        for bands in itertools.permutations(range(box_counts.shape[0])):
            for stacks in itertools.permutations(range(box_counts.shape[1])):
                key = (
                    tuple(box_counts[np.ix_(bands, stacks)].ravel().tolist()),
                    tuple(tuple(sorted(band_counts[b].tolist())) for b in bands),
                    tuple(tuple(sorted(stack_counts[k].tolist())) for k in stacks),
                )
                if best is None or key < best:
                    best = key
    digit_counts = np.bincount(board.ravel(), minlength=size + 1)
    row_of, col_of = np.nonzero(given)
    per_given = sorted(
        (
            *sorted((int(rows.ravel()[r]), int(cols.ravel()[c]))),
            int(boxes[r // box_rows, c // box_cols]),
            int(digit_counts[board[r, c]]),
        )
        for r, c in zip(row_of.tolist(), col_of.tolist())
    )
    per_digit = []
    for digit in range(1, size + 1):
        where = board == digit
        by_band = tuple(sorted(where.reshape(size // box_rows, -1).sum(1).tolist()))
        by_stack = tuple(sorted(where.T.reshape(size // box_cols, -1).sum(1).tolist()))
        per_digit.append(tuple(sorted((by_band, by_stack))) if box_rows == box_cols else (by_band, by_stack))
    return (digits, best, tuple(per_given), tuple(sorted(per_digit)))


# ----------------------------------------------------------------------------------------------------------
# builder


def _names(value: Any, allowed: tuple[str, ...], field: str) -> Any:
    """Check a name or list of names against ``allowed`` (anything else is left to pydantic's type check)."""
    names = [value] if isinstance(value, str) else value
    if isinstance(names, list) and all(isinstance(name, str) for name in names):
        unknown = [name for name in names if name not in allowed]
        if unknown or not names:
            raise ValueError(f"{field} {unknown or '[]'} unknown; allowed: {', '.join(allowed)}")
    return value


class SudokuBuildConfig(StrictConfig):
    """What :func:`build_sudoku_dataset` builds. The official ``DataProcessConfig`` names are kept where they
    exist (``subsample_size``, ``num_aug``); ``min_backtracks`` plays the part of the official ``min_difficulty``
    (our rating, see :mod:`.sudoku_solver`).

    Test split: with ``generate``, ``test_size`` puzzles are generated; with banks or a file, either a held-out
    source (``test_source`` banks or ``test_file``; its puzzles are removed from the train pool, ``test_size``
    optionally caps it) or a random part of the train pool (``test_size`` or ``test_fraction``). The difficulty
    filter applies to both splits (like the official ``min_difficulty``)."""

    out_dir: Path = Field(description="output folder (written atomically)")
    source: str | list[str] = Field(
        "generate", description="'generate', 'file', or bank level(s): " + ", ".join(BANK_LEVELS)
    )
    size: int | None = Field(None, description="4, 6 or 9; generate (default 9); files (default: line length)")
    train_size: int | None = Field(None, ge=1, description="train puzzles before augmentation; default: all")
    test_size: int | None = Field(None, ge=1, description="test puzzles")
    test_fraction: float | None = Field(None, gt=0, lt=1, description="hold out this fraction of the source as test")
    test_source: str | list[str] | None = Field(None, description="bank level(s) used only for test")
    train_file: Path | None = Field(None, description="file: your puzzles (official CSV or one per line)")
    test_file: Path | None = Field(None, description="file: your test puzzles")
    subsample_size: int | None = Field(None, ge=1, description="official: randomly subsample the train split")
    num_aug: int = Field(0, ge=0, description="augmented copies of each train puzzle (official num_aug: 1000)")
    difficulty: str | list[str] | None = Field(None, description="bucket(s): " + ", ".join(DIFFICULTIES))
    min_backtracks: int | None = Field(None, ge=0, description="minimum solver backtracks")
    max_backtracks: int | None = Field(None, ge=0, description="maximum solver backtracks")
    target_clues: int | None = Field(None, ge=0, description="generate: stop removing givens at this many clues")
    target_clues_max: int | None = Field(
        None, ge=0, description="generate: draw each puzzle's target uniformly from target_clues..target_clues_max"
    )
    seed: int = Field(0, description="random seed: the same seed gives byte-identical files")
    overwrite: bool = Field(False, description="replace the output folder if it exists")

    @field_validator("source", mode="before")
    @classmethod
    def _known_source(cls, value):
        if isinstance(value, list):
            return _names(value, BANK_LEVELS, "source banks")
        return _names(value, ("generate", "file", *BANK_LEVELS), "source")

    @field_validator("test_source", mode="before")
    @classmethod
    def _known_test_source(cls, value):
        return value if value is None else _names(value, BANK_LEVELS, "test_source banks")

    @field_validator("difficulty", mode="before")
    @classmethod
    def _known_difficulty(cls, value):
        return value if value is None else _names(value, DIFFICULTIES, "difficulty")

    @field_validator("size")
    @classmethod
    def _known_size(cls, value):
        if value is not None:
            box_shape(value)
        return value

    @model_validator(mode="after")
    def _consistent(self):
        kind = self.source_kind
        if kind == "generate":
            if self.train_size is None or self.test_size is None:
                raise ValueError("source 'generate' needs train_size and test_size")
            extra = [
                f for f in ("test_fraction", "test_source", "train_file", "test_file") if getattr(self, f) is not None
            ]
        elif kind == "bank":
            if self.size not in (None, 9):
                raise ValueError(f"the banks are 9×9; size {self.size} is only for source 'generate' or 'file'")
            extra = [
                f
                for f in ("train_file", "test_file", "target_clues", "target_clues_max")
                if getattr(self, f) is not None
            ]
            overlap = set(self.bank_levels) & set(self.test_levels)
            if overlap:
                raise ValueError(
                    f"bank(s) {sorted(overlap)} are both source and test_source; to split one bank use test_size "
                    "or test_fraction"
                )
        else:
            if self.train_file is None:
                raise ValueError("source 'file' needs train_file")
            extra = [f for f in ("test_source", "target_clues", "target_clues_max") if getattr(self, f) is not None]
        if extra:
            raise ValueError(f"{', '.join(extra)} cannot be used with source {self.source!r}")
        held_out = self.test_source is not None or self.test_file is not None
        if self.test_fraction is not None and (held_out or self.test_size is not None):
            raise ValueError(
                "test_fraction splits the train source; it cannot be combined with test_size or a held-out test source"
            )
        if kind != "generate" and not held_out and self.test_fraction is None and self.test_size is None:
            raise ValueError("say how to make the test split: test_size, test_fraction, or test_source/test_file")
        if (
            self.min_backtracks is not None
            and self.max_backtracks is not None
            and self.min_backtracks > self.max_backtracks
        ):
            raise ValueError(f"min_backtracks ({self.min_backtracks}) is above max_backtracks ({self.max_backtracks})")
        if self.target_clues is not None and self.target_clues > self.board_size**2:
            raise ValueError(f"target_clues {self.target_clues} exceeds the {self.board_size**2} cells of the board")
        if self.target_clues_max is not None:
            if self.target_clues is None or self.target_clues_max < self.target_clues:
                raise ValueError("target_clues_max needs target_clues (the low end of the range) at or below it")
            if self.target_clues_max > self.board_size**2:
                raise ValueError(
                    f"target_clues_max {self.target_clues_max} exceeds the {self.board_size**2} cells of the board"
                )
        return self

    @property
    def source_kind(self) -> str:
        return self.source if self.source in ("generate", "file") else "bank"

    @property
    def bank_levels(self) -> list[str]:
        if self.source_kind != "bank":
            return []
        return [self.source] if isinstance(self.source, str) else list(self.source)

    @property
    def test_levels(self) -> list[str]:
        if self.test_source is None:
            return []
        return [self.test_source] if isinstance(self.test_source, str) else list(self.test_source)

    @property
    def train_count(self) -> int | None:
        """Original train puzzles: ``train_size`` cut to ``subsample_size`` (None: all there are)."""
        counts = [count for count in (self.train_size, self.subsample_size) if count is not None]
        return min(counts) if counts else None

    @property
    def board_size(self) -> int:
        return self.size or 9

    def accepts(self, backtracks: int) -> bool:
        """Does a puzzle with this rating pass the difficulty filter?"""
        if self.difficulty is not None and difficulty_bucket(backtracks) not in check_difficulty_names(self.difficulty):
            return False
        if self.min_backtracks is not None and backtracks < self.min_backtracks:
            return False
        return self.max_backtracks is None or backtracks <= self.max_backtracks

    @property
    def has_filter(self) -> bool:
        return self.difficulty is not None or self.min_backtracks is not None or self.max_backtracks is not None


class _Pool:
    """Candidate puzzles with their solutions, where they came from, and ratings filled in lazily."""

    def __init__(
        self, puzzles: np.ndarray, solutions: np.ndarray, wheres: list[str], sources: list[str], backtracks=None
    ):
        self.puzzles, self.solutions, self.wheres, self.sources = puzzles, solutions, wheres, sources
        self.backtracks = np.full(len(puzzles), -1, dtype=np.int64) if backtracks is None else np.asarray(backtracks)
        self.keys = [puzzle.tobytes() for puzzle in puzzles]
        self.symmetry_keys: dict[int, tuple] = {}

    def symmetry(self, i: int) -> tuple:
        """:func:`symmetry_key` of puzzle i (computed once)."""
        if i not in self.symmetry_keys:
            self.symmetry_keys[i] = symmetry_key(self.puzzles[i])
        return self.symmetry_keys[i]

    def __len__(self) -> int:
        return len(self.puzzles)

    def rating(self, i: int) -> int:
        """Backtracks of puzzle i, solving it (and checking it is unique, with the stored solution) if needed."""
        if self.backtracks[i] < 0:
            result = _solve_unique(self.puzzles[i], self.wheres[i])
            if not np.array_equal(result.solution, self.solutions[i]):
                raise DatasetError(f"{self.wheres[i]}: the stored solution is not the puzzle's solution")
            self.backtracks[i] = result.backtracks
        return int(self.backtracks[i])

    def take(self, indices: list[int]) -> _Pool:
        return _Pool(
            self.puzzles[indices],
            self.solutions[indices],
            [self.wheres[i] for i in indices],
            [self.sources[i] for i in indices],
            self.backtracks[indices],
        )


def _bank_pool(levels: list[str]) -> _Pool:
    """The banks' puzzles, exact duplicates across banks dropped (the first occurrence is kept)."""
    puzzles, solutions, wheres, sources, seen = [], [], [], [], set()
    folder = bank_folder()
    for level in levels:
        level_puzzles, level_solutions = load_bank(level, folder)
        for i, puzzle in enumerate(level_puzzles):
            key = puzzle.tobytes()
            if key not in seen:
                seen.add(key)
                puzzles.append(puzzle)
                solutions.append(level_solutions[i])
                wheres.append(f"{folder / level}.puzzles.txt:{i + 1}")
                sources.append(level)
    if not puzzles:
        raise DatasetError(f"the banks {levels} hold no puzzles")
    return _Pool(np.stack(puzzles), np.stack(solutions), wheres, sources)


def _file_pool(path: Path, size: int | None) -> _Pool:
    """A user file's puzzles, exact duplicates dropped (the first occurrence is kept)."""
    puzzles, solutions, backtracks, wheres = _load_puzzle_file(path, size)
    first_of = {}
    for i, puzzle in enumerate(puzzles):
        first_of.setdefault(puzzle.tobytes(), i)
    keep = sorted(first_of.values())
    return _Pool(puzzles[keep], solutions[keep], [wheres[i] for i in keep], [path.name] * len(keep), backtracks[keep])


def _select(
    pool: _Pool, order: np.ndarray, count: int | None, config: SudokuBuildConfig, exclude: set[tuple] = frozenset()
) -> tuple[list[int], int]:
    """Walk ``order``, keep puzzles whose symmetry key is not in ``exclude`` and that pass the filter (rating
    them only when there is a filter), up to ``count`` (None: all). Returns (chosen, how many ``exclude`` kept
    out)."""
    chosen, excluded = [], 0
    for i in order.tolist():
        if count is not None and len(chosen) >= count:
            break
        if exclude and pool.symmetry(i) in exclude:
            excluded += 1
            continue
        if config.has_filter and not config.accepts(pool.rating(i)):
            continue
        chosen.append(i)
    return chosen, excluded


def _generated_splits(config: SudokuBuildConfig, rng: np.random.Generator) -> tuple[_Pool, _Pool, int]:
    """Generate test_size then train_size distinct unique puzzles that pass the filter, no train puzzle sharing
    a symmetry key with a test puzzle (6×6 and 9×9: a 4×4 board has too few givens for the key to tell puzzles
    apart, so 4×4 splits are held out by puzzle). Returns (train, test, train puzzles kept out by that rule)."""
    size = config.board_size
    by_class = size in SYMMETRY_HOLDOUT_SIZES
    needed = config.test_size + config.train_count
    max_attempts = 300 * needed + 1000  # hard 9×9 puzzles are ~1 in 80 attempts
    puzzles, solutions, backtracks, seen, test_keys = [], [], [], set(), set()
    attempts = excluded = 0
    while len(puzzles) < needed:
        if attempts >= max_attempts or (attempts >= 2000 and not puzzles):
            raise DatasetError(
                f"only {len(puzzles)} of {needed} generated {size}×{size} puzzles passed the difficulty filter in "
                f"{attempts} attempts; widen the filter or use the banks for hard puzzles"
            )
        attempts += 1
        target = config.target_clues
        if config.target_clues_max is not None:
            target = int(rng.integers(config.target_clues, config.target_clues_max + 1))
        puzzle, solution, rating = generate_puzzle(size, rng, target)
        if puzzle.tobytes() in seen or not config.accepts(rating):
            continue
        if len(puzzles) < config.test_size:  # the test puzzles come first
            test_keys.add(symmetry_key(puzzle))
        elif by_class and symmetry_key(puzzle) in test_keys:  # a train puzzle perhaps equivalent to a test one
            excluded += 1
            if excluded > 20 * needed:
                raise DatasetError(
                    f"{excluded} generated train puzzles shared a symmetry key with the {config.test_size} test "
                    f"puzzles ({len(puzzles) - config.test_size} kept): ask for fewer test puzzles or a wider "
                    "range of givens"
                )
            continue
        seen.add(puzzle.tobytes())
        puzzles.append(puzzle)
        solutions.append(solution)
        backtracks.append(rating)
    wheres = [f"generated puzzle {i}" for i in range(needed)]
    pool = _Pool(
        np.stack(puzzles).astype(np.uint8),
        np.stack(solutions).astype(np.uint8),
        wheres,
        ["generated"] * needed,
        backtracks,
    )
    test_indices = list(range(config.test_size))
    return pool.take(list(range(config.test_size, needed))), pool.take(test_indices), excluded


def _sampled_splits(config: SudokuBuildConfig, rng: np.random.Generator) -> tuple[_Pool, _Pool, int]:
    """Train and test pools for bank and file sources (see :class:`SudokuBuildConfig`), no train puzzle sharing
    a symmetry key with a test puzzle (a held-out source: with any of its puzzles). Returns (train, test, train
    puzzles kept out by that rule)."""
    if config.source_kind == "bank":
        pool = _bank_pool(config.bank_levels)
        held_out = _bank_pool(config.test_levels) if config.test_levels else None
    else:
        pool = _file_pool(config.train_file, config.size)
        held_out = _file_pool(config.test_file, config.size) if config.test_file else None
        if held_out is not None and held_out.puzzles.shape[1:] != pool.puzzles.shape[1:]:
            raise DatasetError(f"{config.test_file} and {config.train_file} hold puzzles of different sizes")

    if held_out is not None:
        test_indices, _ = _select(held_out, rng.permutation(len(held_out)), config.test_size, config)
        test = held_out.take(test_indices)
        train_order = rng.permutation(len(pool))
        # the whole held-out source, not only the puzzles drawn from it
        exclude = {held_out.symmetry(i) for i in range(len(held_out))}
    else:
        order = rng.permutation(len(pool))
        test_count = config.test_size
        if config.test_fraction is not None:
            eligible, _ = _select(pool, order, None, config)
            test_count = round(config.test_fraction * len(eligible))
            if not 1 <= test_count < len(eligible):
                raise DatasetError(
                    f"test_fraction {config.test_fraction} of the {len(eligible)} eligible puzzles leaves a split empty"
                )
        test_indices, _ = _select(pool, order, test_count, config)
        test = pool.take(test_indices)
        train_order = order[np.isin(order, test_indices, invert=True)]
        exclude = {pool.symmetry(i) for i in test_indices}
    if config.test_size is not None and len(test) < config.test_size:
        raise DatasetError(
            f"asked for {config.test_size} test puzzles but only {len(test)} are available after the filter"
        )

    train_indices, excluded = _select(pool, train_order, config.train_count, config, exclude)
    train = pool.take(train_indices)
    if config.train_size is not None and len(train) < config.train_count:  # subsample_size alone never asks too much
        raise DatasetError(
            f"asked for {config.train_count} train puzzles but only {len(train)} are available after the filter "
            "and the test split"
        )
    for name, split in (("train", train), ("test", test)):
        if not len(split):
            raise DatasetError(f"no puzzles left for the {name} split (check the sources and the difficulty filter)")
    return train, test, excluded


def _split_arrays(pool: _Pool, num_aug: int, rng: np.random.Generator):
    """One group per original puzzle: [original, aug_1, ..., aug_num_aug], each its own one-example puzzle."""
    size = pool.puzzles.shape[-1]
    builder = SplitBuilder(seq_len=size * size)
    boards, answers = [], []
    for puzzle, solution in zip(pool.puzzles, pool.solutions):
        variants = [(puzzle, solution)] + [shuffle_sudoku(puzzle, solution, rng) for _ in range(num_aug)]
        builder.add_group([(0, [(encode_board(p), encode_board(s))]) for p, s in variants])
        boards += [p for p, _ in variants]
        answers += [s for _, s in variants]
    return builder.arrays(), np.stack(boards), np.stack(answers)


def _verify_written(boards: np.ndarray, answers: np.ndarray, split: str) -> None:
    """The last check before writing: every puzzle (augmentations included) agrees with a valid solution."""
    valid = valid_grid_mask(answers)
    agree = np.all((boards == 0) | (boards == answers), axis=(1, 2))
    bad = np.flatnonzero(~(valid & agree))
    if bad.size:
        raise DatasetError(f"{split} puzzle {bad[0]} does not agree with a valid solution; nothing was written")


def _stats(pool: _Pool, arrays) -> dict:
    ratings = np.array([pool.rating(i) for i in range(len(pool))])
    clues = np.count_nonzero(pool.puzzles, axis=(1, 2))
    buckets = Counter(difficulty_bucket(int(r)) for r in ratings)
    return {
        "groups": arrays.num_groups,
        "puzzles": arrays.num_puzzles,
        "examples": arrays.num_examples,
        "sources": dict(sorted(Counter(pool.sources).items())),
        "clues": {"min": int(clues.min()), "mean": round(float(clues.mean()), 2), "max": int(clues.max())},
        "backtracks": {
            "min": int(ratings.min()),
            "median": float(np.median(ratings)),
            "mean": round(float(ratings.mean()), 2),
            "max": int(ratings.max()),
        },
        "difficulty": {name: buckets.get(name, 0) for name in DIFFICULTIES},
    }


def build_sudoku_dataset(config: SudokuBuildConfig | dict) -> Path:
    """Build a Sudoku dataset in the official format (see the module docstring) and return its folder.

    Every original puzzle written is solved (limit 2): it must have exactly one solution, the one stored; every
    written pair (augmentations included) is checked to agree with a valid solution. ``build.json`` beside the
    splits records the config (without ``out_dir``/``overwrite``), the counts and the difficulty statistics.
    The same config and seed give byte-identical files. Solving costs about 0.3 ms per Sudoku-Exchange puzzle and
    10–25 ms per forum-hardest one; without a difficulty filter only the puzzles written are solved."""
    config = SudokuBuildConfig.from_dict(config)
    select_seed, aug_seed = np.random.SeedSequence(config.seed).spawn(2)
    select_rng, aug_rng = np.random.default_rng(select_seed), np.random.default_rng(aug_seed)
    if config.source_kind == "generate":
        train, test, excluded = _generated_splits(config, select_rng)
    else:
        train, test, excluded = _sampled_splits(config, select_rng)

    size = train.puzzles.shape[-1]
    splits, stats = {}, {}
    for name, pool, num_aug in (("train", train, config.num_aug), ("test", test, 0)):
        arrays, boards, answers = _split_arrays(pool, num_aug, aug_rng)
        _verify_written(boards, answers, name)
        splits[name] = (make_metadata(arrays, vocab_size=size + 2, num_puzzle_identifiers=1), arrays)
        stats[name] = _stats(pool, arrays)
    build_info = {
        "config": config.model_dump(mode="json", exclude={"out_dir", "overwrite"}),
        "size": size,
        "vocab_size": size + 2,
        "seq_len": size * size,
        "splits": stats,
        # train candidates kept out because their symmetry key equals a test puzzle's (symmetry_key)
        "excluded_as_possibly_equivalent_to_test": excluded,
        "difficulty_backtracks": {name: list(bounds) for name, bounds in DIFFICULTY_BACKTRACKS.items()},
    }
    return write_dataset(
        config.out_dir,
        splits,
        identifiers=["<blank>"],
        extra_files={"build.json": json.dumps(build_info, indent=2) + "\n"},
        overwrite=config.overwrite,
    )
