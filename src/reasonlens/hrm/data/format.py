"""The official puzzle-dataset layout on disk (sapientinc/HRM ``dataset/common.py``).

::

    <dir>/identifiers.json                  id -> puzzle name ("<blank>" at 0)
    <dir>/{train,test}/dataset.json         DatasetMetadata
    <dir>/{train,test}/all__inputs.npy       (N_examples, seq_len) uint8 token ids
    <dir>/{train,test}/all__labels.npy       (N_examples, seq_len) uint8
    <dir>/{train,test}/all__puzzle_identifiers.npy   (N_puzzles,) int32   row of the puzzle-embedding table
    <dir>/{train,test}/all__puzzle_indices.npy       (N_puzzles + 1,) int32  example offsets (CSR)
    <dir>/{train,test}/all__group_indices.npy        (N_groups + 1,) int32   puzzle offsets (CSR)

A *group* is an original puzzle plus its augmentations; a *puzzle* is one (augmented) variant with one
or more *examples* (input/label pairs; ARC has several per puzzle, Sudoku and Maze one). Datasets
written here load in the official trainer and official datasets load here.

:class:`SplitBuilder` collects groups and produces the arrays; :func:`write_dataset` writes a whole
dataset atomically (into a temporary folder renamed at the end); :func:`load_split` reads and validates.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ValidationError

from reasonlens.utils.errors import UserInputError
from reasonlens.utils.io import atomic_directory, check_replaceable, is_owned, mark_owned

SET_NAME = "all"
IGNORE_LABEL_ID = -100  # label of a cell that is not scored (the official value)
FIELDS = ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices")
BLANK_IDENTIFIER = "<blank>"

# dihedral transform id -> its inverse (official DIHEDRAL_INVERSE)
DIHEDRAL_INVERSE = [0, 3, 2, 1, 4, 5, 6, 7]


class DatasetError(UserInputError):
    """A dataset folder or file is missing, malformed, or inconsistent."""


class DatasetMetadata(BaseModel):
    """``dataset.json`` (official ``PuzzleDatasetMetadata``)."""

    pad_id: int
    ignore_label_id: int | None
    blank_identifier_id: int
    vocab_size: int
    seq_len: int
    num_puzzle_identifiers: int
    total_groups: int
    mean_puzzle_examples: float
    sets: list[str]


def dihedral_transform(grid: np.ndarray, tid: int) -> np.ndarray:
    """The 8 symmetries of the square: 0 identity, 1–3 rot90 k=1..3, 4 fliplr, 5 flipud, 6 transpose,
    7 anti-transpose (fliplr ∘ rot90)."""
    transforms = {
        0: lambda a: a,
        1: lambda a: np.rot90(a, k=1),
        2: lambda a: np.rot90(a, k=2),
        3: lambda a: np.rot90(a, k=3),
        4: np.fliplr,
        5: np.flipud,
        6: lambda a: a.T,
        7: lambda a: np.fliplr(np.rot90(a, k=1)),
    }
    if tid not in transforms:
        raise ValueError(f"dihedral transform id must be 0..7, got {tid}")
    return transforms[tid](grid)


def inverse_dihedral_transform(grid: np.ndarray, tid: int) -> np.ndarray:
    return dihedral_transform(grid, DIHEDRAL_INVERSE[tid])


@dataclass
class SplitArrays:
    inputs: np.ndarray
    labels: np.ndarray
    puzzle_identifiers: np.ndarray
    puzzle_indices: np.ndarray
    group_indices: np.ndarray

    @property
    def num_examples(self) -> int:
        return len(self.inputs)

    @property
    def num_puzzles(self) -> int:
        return len(self.puzzle_identifiers)

    @property
    def num_groups(self) -> int:
        return len(self.group_indices) - 1


class SplitBuilder:
    """Accumulates groups of puzzles of examples and returns the CSR arrays of one split.

    >>> builder = SplitBuilder(seq_len=4)
    >>> builder.add_group([(0, [([1, 2, 3, 4], [1, 2, 3, 4])])])   # one group, one puzzle, one example
    >>> builder.arrays().puzzle_indices.tolist()
    [0, 1]
    """

    def __init__(self, seq_len: int):
        self.seq_len = seq_len
        self.inputs: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.puzzle_identifiers: list[int] = []
        self.puzzle_indices = [0]
        self.group_indices = [0]

    def add_group(self, puzzles: list[tuple[int, list[tuple]]]) -> None:
        """``puzzles``: [(puzzle_identifier, [(input_tokens, label_tokens), ...]), ...] for one group."""
        if not puzzles:
            raise DatasetError("a group needs at least one puzzle")
        for identifier, examples in puzzles:
            if not examples:
                raise DatasetError(f"puzzle {identifier} has no examples")
            for inp, lab in examples:
                inp, lab = np.asarray(inp).reshape(-1), np.asarray(lab).reshape(-1)
                if inp.size != self.seq_len or lab.size != self.seq_len:
                    raise DatasetError(f"example of length {inp.size}/{lab.size}, expected seq_len {self.seq_len}")
                self.inputs.append(inp)
                self.labels.append(lab)
            self.puzzle_identifiers.append(int(identifier))
            self.puzzle_indices.append(len(self.inputs))
        self.group_indices.append(len(self.puzzle_identifiers))

    def arrays(self) -> SplitArrays:
        def stack(rows):
            arr = np.stack(rows) if rows else np.zeros((0, self.seq_len), dtype=np.uint8)
            if arr.size and (arr.min() < 0 or arr.max() > 255):
                raise DatasetError("token ids must fit in uint8 (0..255)")
            return arr.astype(np.uint8)

        return SplitArrays(
            inputs=stack(self.inputs),
            labels=stack(self.labels),
            puzzle_identifiers=np.array(self.puzzle_identifiers, dtype=np.int32),
            puzzle_indices=np.array(self.puzzle_indices, dtype=np.int32),
            group_indices=np.array(self.group_indices, dtype=np.int32),
        )


def make_metadata(
    arrays: SplitArrays,
    *,
    vocab_size: int,
    num_puzzle_identifiers: int,
    pad_id: int = 0,
    ignore_label_id: int | None = 0,
    blank_identifier_id: int = 0,
) -> DatasetMetadata:
    return DatasetMetadata(
        pad_id=pad_id,
        ignore_label_id=ignore_label_id,
        blank_identifier_id=blank_identifier_id,
        vocab_size=vocab_size,
        seq_len=int(arrays.inputs.shape[1]),
        num_puzzle_identifiers=num_puzzle_identifiers,
        total_groups=arrays.num_groups,
        mean_puzzle_examples=arrays.num_examples / max(arrays.num_puzzles, 1),
        sets=[SET_NAME],
    )


DATASET_FILES = ("identifiers.json", "build.json", "test_puzzles.json")  # beside the split folders


def is_unmarked_dataset(folder: Path) -> bool:
    """A dataset folder written before reasonlens marked its folders: only split folders (``dataset.json``
    and ``.npy`` arrays) and the builders' own files, so replacing it loses nothing of anyone else's."""
    for entry in folder.iterdir():
        if entry.is_dir():
            if not (entry / "dataset.json").is_file():
                return False
            if any(f.name != "dataset.json" and f.suffix != ".npy" for f in entry.iterdir()):
                return False
        elif entry.name not in DATASET_FILES:
            return False
    return True


def check_dataset_folder(out_dir: Path) -> bool:
    """Raise :class:`~reasonlens.utils.io.FolderError` unless a dataset may be written to ``out_dir`` (new,
    empty, ours, or an unmarked dataset of ours); True for the last case, which the writer then marks."""
    out_dir = Path(out_dir)
    if out_dir.is_dir() and not is_owned(out_dir) and any(out_dir.iterdir()) and is_unmarked_dataset(out_dir):
        return True
    check_replaceable(out_dir)
    return False


def write_dataset(
    out_dir: str | os.PathLike,
    splits: dict[str, tuple[DatasetMetadata, SplitArrays]],
    identifiers: list[str] | None = None,
    extra_files: dict[str, str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write every split (+ ``identifiers.json`` and any ``extra_files`` {relative name: text}) into a
    temporary folder beside ``out_dir`` and rename it into place: a killed build leaves nothing behind.
    ``overwrite`` replaces only a folder reasonlens made (:func:`reasonlens.utils.io.atomic_directory`)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise DatasetError(f"{out_dir} already exists; choose another output folder or pass overwrite")
    if overwrite and check_dataset_folder(out_dir):
        mark_owned(out_dir, "puzzle dataset")  # built before folders were marked: nothing foreign in it
    with atomic_directory(out_dir, "puzzle dataset") as tmp:  # replaces only a folder we made
        for split, (metadata, arrays) in splits.items():
            validate_split(metadata, arrays, where=f"{out_dir}/{split}")
            (tmp / split).mkdir()
            (tmp / split / "dataset.json").write_text(json.dumps(metadata.model_dump()))
            for field in FIELDS:
                np.save(tmp / split / f"{SET_NAME}__{field}.npy", getattr(arrays, field))
        (tmp / "identifiers.json").write_text(json.dumps(identifiers or [BLANK_IDENTIFIER]))
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
    return out_dir


def validate_split(metadata: DatasetMetadata, arrays: SplitArrays, where: str = "split") -> None:
    """Shapes and offsets agree with each other and with the metadata; ids and tokens are in range."""
    problems = []
    if arrays.inputs.shape != arrays.labels.shape:
        problems.append(f"inputs {arrays.inputs.shape} and labels {arrays.labels.shape} differ in shape")
    if arrays.inputs.ndim != 2 or arrays.inputs.shape[1] != metadata.seq_len:
        problems.append(f"inputs have shape {arrays.inputs.shape}, expected (N, seq_len={metadata.seq_len})")
    pi, gi = arrays.puzzle_indices, arrays.group_indices
    if pi.ndim != 1 or pi.size != arrays.num_puzzles + 1 or pi[0] != 0 or pi[-1] != arrays.num_examples:
        problems.append("puzzle_indices must run from 0 to N_examples with one entry per puzzle + 1")
    elif np.any(np.diff(pi) <= 0):
        problems.append("puzzle_indices must be strictly increasing (every puzzle has an example)")
    if gi.ndim != 1 or gi.size < 1 or gi[0] != 0 or gi[-1] != arrays.num_puzzles:
        problems.append("group_indices must run from 0 to N_puzzles")
    elif np.any(np.diff(gi) <= 0):
        problems.append("group_indices must be strictly increasing (every group has a puzzle)")
    if arrays.num_groups != metadata.total_groups:
        problems.append(f"{arrays.num_groups} groups but dataset.json says total_groups={metadata.total_groups}")
    not_integer = [f for f in FIELDS if not np.issubdtype(getattr(arrays, f).dtype, np.integer)]
    if not_integer:  # floats (NaN included) would reach the embedding as garbage indices
        kinds = ", ".join(f"{f} ({getattr(arrays, f).dtype})" for f in not_integer)
        raise DatasetError(f"{where}: {kinds} must hold integers")
    ids = arrays.puzzle_identifiers
    if ids.size and (ids.min() < 0 or ids.max() >= metadata.num_puzzle_identifiers):
        problems.append(f"puzzle identifiers must lie in [0, {metadata.num_puzzle_identifiers})")
    if arrays.inputs.size and max(arrays.inputs.max(), arrays.labels.max()) >= metadata.vocab_size:
        problems.append(f"token ids must lie below vocab_size={metadata.vocab_size}")
    labels = (
        arrays.labels[arrays.labels != metadata.ignore_label_id]
        if metadata.ignore_label_id is not None
        else arrays.labels
    )
    if (arrays.inputs.size and arrays.inputs.min() < 0) or (labels.size and labels.min() < 0):
        problems.append("token ids must be >= 0 (labels may also be the dataset's ignore_label_id)")
    if problems:
        raise DatasetError(f"{where}: " + "; ".join(problems))


def load_split(dataset_dir: str | os.PathLike, split: str, mmap: bool = True) -> tuple[DatasetMetadata, SplitArrays]:
    """Read one split of a dataset folder (inputs/labels memory-mapped), with clear errors."""
    folder = Path(dataset_dir) / split
    meta_path = folder / "dataset.json"
    if not meta_path.is_file():
        raise DatasetError(f"{meta_path} not found: is {dataset_dir} a puzzle dataset (train/ and test/ folders)?")
    try:
        metadata = DatasetMetadata(**json.loads(meta_path.read_text()))
    except (json.JSONDecodeError, ValidationError, TypeError) as err:
        raise DatasetError(f"{meta_path} is not valid dataset metadata: {err}") from None
    if SET_NAME not in metadata.sets:
        raise DatasetError(f"{meta_path}: only the set name '{SET_NAME}' is supported, found {metadata.sets}")
    arrays = {}
    for field in FIELDS:
        path = folder / f"{SET_NAME}__{field}.npy"
        if not path.is_file():
            raise DatasetError(f"{path} not found")
        try:
            arrays[field] = np.load(path, mmap_mode="r" if mmap and field in ("inputs", "labels") else None)
        except ValueError as err:
            raise DatasetError(f"{path} is not a readable .npy array: {err}") from None
    split_arrays = SplitArrays(**arrays)
    validate_split(metadata, split_arrays, where=str(folder))
    return metadata, split_arrays


def load_identifiers(dataset_dir: str | os.PathLike) -> list[str]:
    path = Path(dataset_dir) / "identifiers.json"
    if not path.is_file():
        raise DatasetError(f"{path} not found")
    return json.loads(path.read_text())
