"""ARC-AGI tasks as puzzle datasets in the official HRM format.

Follows sapientinc/HRM ``dataset/build_arc_dataset.py`` and adds TRM's
``test_puzzles.json`` (TinyRecursiveModels ``dataset/build_arc_dataset.py``) for the evaluator in
:mod:`reasonlens.hrm.evaluation.arc_voting`. This module owns:

* loading and validating ARC task files (:func:`load_task_file`, :func:`load_arc_tasks`);
* the token layout (:func:`grid_to_tokens`, :func:`crop_tokens`, :func:`crop_sizes`): PAD=0, EOS=1,
  colours 0..9 -> 2..11 on a 30×30 canvas, read row-major (900 tokens). The grid sits at an offset on a
  PAD canvas, EOS fills the row just below it and the column just right of it (inside the canvas), and
  the corner between them stays PAD;
* the augmentations (:func:`draw_augmentations`, :func:`augment_grid`, :func:`unaugment_grid`,
  :func:`augmentation_name`, :func:`parse_augmentation_name`): a dihedral transform plus a colour
  permutation keeping black (0) fixed, deduplicated, named ``"{task}_t{t}_{mapping}"``;
* :func:`build_tasks_dataset`, which turns in-memory tasks into the on-disk format (also used by the
  synthetic set in :mod:`reasonlens.hrm.data.arc_synthetic`), and :func:`build_arc_dataset` for real ARC.

Split logic (official): tasks of an *evaluation* source put their demonstration pairs in the train split
and their test pairs in the test split; every other task (training, ConceptARC) puts all its pairs in
train. The train and test puzzles of an evaluation task share their names, hence their puzzle ids: the
puzzle embedding learnt on the demonstrations is the one used at test time.

Differences from the official script, none of which changes the data's meaning: one seeded
``numpy.random.Generator`` drives everything and files are read in sorted order, so the same config
gives byte-identical output (the official build depends on filesystem order); a training task lists its
demonstration pairs before its test pairs (the official follows the JSON key order); and the
augmentation search and the encoding are vectorised over a task's augmentations.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from reasonlens.hrm.data.format import (
    BLANK_IDENTIFIER,
    DIHEDRAL_INVERSE,
    DatasetError,
    SplitArrays,
    dihedral_transform,
    make_metadata,
    write_dataset,
)
from reasonlens.utils.config import StrictConfig
from reasonlens.utils.paths import data_root

ARC_CANVAS_SIZE = 30
MAX_GRID_SIZE = 30
PAD_TOKEN = 0
EOS_TOKEN = 1
COLOUR_OFFSET = 2
NUM_COLOURS = 10
VOCAB_SIZE = NUM_COLOURS + 2  # PAD + EOS + colours
AUGMENT_RETRIES_FACTOR = 5
NUM_DIHEDRAL = 8
# dihedral ids that swap height and width (rot90, rot270, transpose, anti-transpose)
TRANSPOSING_DIHEDRALS = (1, 3, 6, 7)

CONCEPT_ARC_GROUPS = (
    "AboveBelow",
    "Center",
    "CleanUp",
    "CompleteShape",
    "Copy",
    "Count",
    "ExtendToBoundary",
    "ExtractObjects",
    "FilledNotFilled",
    "HorizontalVertical",
    "InsideOutside",
    "MoveToBoundary",
    "Order",
    "SameDifferent",
    "TopBottom2D",
    "TopBottom3D",
)

Role = Literal["train", "evaluation"]
ROLES = ("train", "evaluation")

# (folder relative to the data root, role); the official ARC-1 build reads 960 tasks, ARC-2 1120.
DATASET_SOURCES: dict[str, list[tuple[str, Role]]] = {
    "arc1": [("arc1/training", "train"), ("arc1/evaluation", "evaluation")]
    + [(f"conceptarc/corpus/{group}", "train") for group in CONCEPT_ARC_GROUPS],
    "arc2": [("arc2/training", "train"), ("arc2/evaluation", "evaluation")],
}

AUGMENTED_NAME = re.compile(r"^(?P<task>.+)_t(?P<tid>[0-7])_(?P<mapping>[0-9]{10})$")

Pair = tuple[np.ndarray, np.ndarray]


# ----------------------------------------------------------------------------------------------------
# Tasks and their validation


@dataclass
class ARCTask:
    """One ARC task: demonstration (``train``) pairs and ``test`` pairs of uint8 colour grids."""

    task_id: str
    role: Role
    train_pairs: list[Pair]
    test_pairs: list[Pair]

    @property
    def all_pairs(self) -> list[Pair]:
        return self.train_pairs + self.test_pairs

    def to_json(self) -> dict:
        """The task in the ARC JSON layout (what ``test_puzzles.json`` stores)."""

        def pairs(items):
            return [{"input": inp.tolist(), "output": out.tolist()} for inp, out in items]

        return {"train": pairs(self.train_pairs), "test": pairs(self.test_pairs)}


def parse_grid(raw, where: str, max_size: int = MAX_GRID_SIZE) -> np.ndarray:
    """A JSON grid (list of rows of ints 0..9, 1×1..max_size×max_size) as a uint8 array, or a
    :class:`DatasetError` naming ``where`` and what is wrong."""
    allowed = f"a grid is a non-empty rectangular list of rows of ints 0..9, at most {max_size}×{max_size}"
    if not isinstance(raw, list) or not raw or not all(isinstance(row, list) for row in raw):
        raise DatasetError(f"{where} is not a non-empty list of rows (lists); {allowed}")
    lengths = [len(row) for row in raw]
    if min(lengths) == 0 or len(set(lengths)) > 1:
        raise DatasetError(f"{where} is not rectangular (row lengths {sorted(set(lengths))}); {allowed}")
    height, width = len(raw), lengths[0]
    if height > max_size or width > max_size:
        raise DatasetError(f"{where} is {height}×{width}; {allowed}")
    for r, row in enumerate(raw):
        for c, value in enumerate(row):
            # bool is an int subclass in Python; reject it like any other non-int
            if type(value) is not int or not 0 <= value < NUM_COLOURS:
                raise DatasetError(f"{where} has {value!r} at row {r}, column {c}; {allowed}")
    return np.array(raw, dtype=np.uint8)


def task_from_json(data, task_id: str, role: Role, where: str, max_size: int = MAX_GRID_SIZE) -> ARCTask:
    """Validate a decoded task object ``{"train": [pairs], "test": [pairs]}``."""
    if role not in ROLES:
        raise DatasetError(f"{where}: role must be one of {ROLES}, got {role!r}")
    if AUGMENTED_NAME.match(task_id):
        raise DatasetError(
            f"{where}: task id {task_id!r} ends like an augmented name ('_t<0-7>_<10 digits>'), which the "
            "evaluator could not tell apart; rename the file"
        )
    if not isinstance(data, dict):
        raise DatasetError(f"{where}: expected a JSON object with 'train' and 'test' lists of pairs")
    pairs: dict[str, list[Pair]] = {}
    for kind in ("train", "test"):
        raw_pairs = data.get(kind)
        if not isinstance(raw_pairs, list) or not raw_pairs:
            raise DatasetError(f"{where}: '{kind}' must be a non-empty list of {{'input': grid, 'output': grid}}")
        pairs[kind] = []
        for index, pair in enumerate(raw_pairs):
            if not isinstance(pair, dict) or "input" not in pair or "output" not in pair:
                found = sorted(pair) if isinstance(pair, dict) else type(pair).__name__
                raise DatasetError(f"{where}: {kind} pair {index} needs 'input' and 'output' grids (found {found})")
            pairs[kind].append(
                (
                    parse_grid(pair["input"], f"{where}: {kind} pair {index} 'input'", max_size),
                    parse_grid(pair["output"], f"{where}: {kind} pair {index} 'output'", max_size),
                )
            )
    return ARCTask(task_id=task_id, role=role, train_pairs=pairs["train"], test_pairs=pairs["test"])


def load_task_file(path: str | Path, role: Role) -> ARCTask:
    """Read one ARC task JSON file; the task id is the file stem."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"ARC task file {path} not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: not valid JSON ({err})") from None
    return task_from_json(data, path.stem, role, where=str(path))


def resolve_sources(dataset: str | list[tuple[str, Role]]) -> list[tuple[str, Path, Role]]:
    """``"arc1"`` / ``"arc2"`` or explicit ``[(folder, role), ...]`` -> [(folder as given, path, role)].
    Relative folders are read under :func:`reasonlens.utils.paths.data_root`."""
    if isinstance(dataset, str):
        if dataset not in DATASET_SOURCES:
            raise DatasetError(f"unknown ARC dataset {dataset!r}; choose one of {sorted(DATASET_SOURCES)}")
        dataset = DATASET_SOURCES[dataset]
    if not dataset:
        raise DatasetError("no ARC sources given; pass 'arc1', 'arc2' or a list of (folder, role)")
    resolved = []
    for folder, role in dataset:
        if role not in ROLES:
            raise DatasetError(f"source {folder!r}: role must be one of {ROLES}, got {role!r}")
        path = Path(folder)
        resolved.append((str(folder), path if path.is_absolute() else data_root() / path, role))
    return resolved


def load_source(folder: Path, role: Role) -> list[ARCTask]:
    if not folder.is_dir():
        raise DatasetError(f"ARC source folder {folder} not found (it should hold the task .json files)")
    files = sorted(folder.glob("*.json"))
    if not files:
        raise DatasetError(f"ARC source folder {folder} holds no .json task files")
    return [load_task_file(path, role) for path in files]


# ----------------------------------------------------------------------------------------------------
# Token layout


def grid_to_tokens(grid, offset: tuple[int, int] = (0, 0), canvas_size: int = ARC_CANVAS_SIZE) -> np.ndarray:
    """Encode a colour grid as ``canvas_size**2`` uint8 tokens (row-major): the grid (+2) at ``offset``
    on a PAD canvas, EOS on the row below it and the column right of it where they fit; corner PAD."""
    grid = np.asarray(grid)
    if grid.ndim != 2 or grid.size == 0 or grid.min() < 0 or grid.max() >= NUM_COLOURS:
        raise ValueError(f"grid must be a non-empty 2-D array of colours 0..9, got shape {grid.shape}")
    height, width = grid.shape
    pad_r, pad_c = offset
    if pad_r < 0 or pad_c < 0 or pad_r + height > canvas_size or pad_c + width > canvas_size:
        raise ValueError(f"a {height}×{width} grid at offset {offset} does not fit a {canvas_size}² canvas")
    canvas = np.full((canvas_size, canvas_size), PAD_TOKEN, dtype=np.uint8)
    canvas[pad_r : pad_r + height, pad_c : pad_c + width] = grid + COLOUR_OFFSET
    if pad_r + height < canvas_size:
        canvas[pad_r + height, pad_c : pad_c + width] = EOS_TOKEN
    if pad_c + width < canvas_size:
        canvas[pad_r : pad_r + height, pad_c + width] = EOS_TOKEN
    return canvas.reshape(-1)


def _canvas_side(length: int) -> int:
    side = math.isqrt(length)
    if side * side != length:
        raise ValueError(f"token rows of length {length} are not a square canvas")
    return side


def crop_sizes(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Heights and widths of the official crop for a batch of token rows ``(N, side²)``.

    The official crop (HRM ``arc_eval.ipynb``, TRM ``evaluators/arc.py::_crop``), stated exactly: with
    ``run[r]`` the number of leading colour tokens (2..11) of canvas row r (0-based), the width available
    to the first r+1 rows is ``w[r] = min(run[0..r])``; the crop is the ``(r+1) × w[r]`` top-left block of
    largest area, the smallest r on ties, and 0×0 when every area is 0 (e.g. row 0 starts with PAD/EOS).
    """
    tokens = np.asarray(tokens)
    side = _canvas_side(tokens.shape[-1])
    grids = tokens.reshape(-1, side, side)
    is_colour = (grids >= COLOUR_OFFSET) & (grids < COLOUR_OFFSET + NUM_COLOURS)
    run = np.where(is_colour.all(axis=2), side, np.argmin(is_colour, axis=2))
    width = np.minimum.accumulate(run, axis=1)
    area = width * np.arange(1, side + 1)
    best = np.argmax(area, axis=1)  # first maximum = fewest rows on ties, as the official strict '>'
    best_area = area[np.arange(len(area)), best]
    heights = np.where(best_area > 0, best + 1, 0)
    widths = np.where(best_area > 0, width[np.arange(len(width)), best], 0)
    return heights, widths


def crop_tokens(tokens: np.ndarray) -> np.ndarray:
    """Decode one token row (``side²`` tokens) to its colour grid with the official crop
    (see :func:`crop_sizes`); inverts :func:`grid_to_tokens` at offset (0, 0)."""
    tokens = np.asarray(tokens).reshape(-1)
    side = _canvas_side(tokens.size)
    heights, widths = crop_sizes(tokens[None])
    return (tokens.reshape(side, side)[: heights[0], : widths[0]] - COLOUR_OFFSET).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------
# Augmentation: dihedral transform + colour permutation with black fixed


def identity_mapping() -> np.ndarray:
    return np.arange(NUM_COLOURS, dtype=np.uint8)


def augment_grid(grid: np.ndarray, tid: int, mapping: np.ndarray) -> np.ndarray:
    """Official order: recolour with ``mapping`` (colour c -> mapping[c]), then dihedral ``tid``."""
    return np.ascontiguousarray(dihedral_transform(np.asarray(mapping)[grid], tid))


def unaugment_grid(grid: np.ndarray, tid: int, mapping: np.ndarray) -> np.ndarray:
    """Inverse of :func:`augment_grid`: inverse dihedral (``DIHEDRAL_INVERSE``), then ``argsort(mapping)``."""
    inverse_colours = np.argsort(mapping).astype(np.uint8)
    return np.ascontiguousarray(inverse_colours[dihedral_transform(grid, DIHEDRAL_INVERSE[tid])])


def augmentation_name(task_id: str, tid: int, mapping: np.ndarray) -> str:
    """``"{task}_t{t}_{mapping}"``, mapping = the new colour of each colour 0..9, e.g. ``abc_t3_0591243786``."""
    return f"{task_id}_t{tid}_{''.join(str(int(c)) for c in mapping)}"


def parse_augmentation_name(name: str) -> tuple[str, int, np.ndarray]:
    """``(task_id, tid, mapping)`` of a puzzle name; a name without the suffix is the original task
    (identity transform)."""
    match = AUGMENTED_NAME.match(name)
    if not match:
        return name, 0, identity_mapping()
    mapping = np.array([int(ch) for ch in match["mapping"]], dtype=np.uint8)
    if mapping[0] != 0 or sorted(mapping.tolist()) != list(range(NUM_COLOURS)):
        raise DatasetError(f"puzzle name {name!r}: colour mapping must be a permutation of 0..9 keeping 0 first")
    return match["task"], int(match["tid"]), mapping


def _dihedral_cell_order(height: int, width: int, tid: int) -> np.ndarray:
    """Flat source-cell index of each cell of the transformed grid (so ``flat[order]`` transforms)."""
    return dihedral_transform(np.arange(height * width).reshape(height, width), tid).reshape(-1)


def _transformed_shape(shape: tuple[int, int], tid: int) -> tuple[int, int]:
    return (shape[1], shape[0]) if tid in TRANSPOSING_DIHEDRALS else shape


def _random_colour_maps(rng: np.random.Generator, count: int) -> np.ndarray:
    maps = np.zeros((count, NUM_COLOURS), dtype=np.uint8)
    maps[:, 1:] = rng.permuted(np.tile(np.arange(1, NUM_COLOURS, dtype=np.uint8), (count, 1)), axis=1)
    return maps


def draw_augmentations(
    pairs: list[Pair],
    num_aug: int,
    rng: np.random.Generator,
    retries_factor: int = AUGMENT_RETRIES_FACTOR,
) -> list[tuple[int, np.ndarray]]:
    """The task's group: ``[(0, identity)]`` followed by up to ``num_aug`` distinct augmentations
    ``(tid, mapping)``, drawn over at most ``retries_factor * num_aug`` random trials.

    Two augmentations are the same when they give the same multiset of (input, output) pairs, shapes
    included: the equivalence of the official sha256 puzzle hash (sorted per-pair hashes), tested here on
    the bytes themselves. A task with few colours or symmetric grids therefore gets fewer augmentations.
    """
    group = [(0, identity_mapping())]
    if num_aug <= 0:
        return group
    # per dihedral id: each pair's cells in transformed order, concatenated; plus the shapes header
    flat_pairs = [np.concatenate([inp.reshape(-1), out.reshape(-1)]) for inp, out in pairs]
    cells_by_tid, headers_by_tid, bounds = [], [], np.cumsum([0] + [flat.size for flat in flat_pairs])
    for tid in range(NUM_DIHEDRAL):
        cells, headers = [], []
        for (inp, out), flat in zip(pairs, flat_pairs):
            order = np.concatenate(
                [_dihedral_cell_order(*inp.shape, tid), inp.size + _dihedral_cell_order(*out.shape, tid)]
            )
            cells.append(flat[order])
            headers.append(bytes(_transformed_shape(inp.shape, tid) + _transformed_shape(out.shape, tid)))
        cells_by_tid.append(np.concatenate(cells))
        headers_by_tid.append(headers)

    pair_ids: dict[tuple[bytes, bytes], int] = {}

    def puzzle_keys(tids: np.ndarray, maps: np.ndarray) -> list[tuple[int, ...]]:
        keys: list[tuple[int, ...] | None] = [None] * len(tids)
        for tid in np.unique(tids):
            rows = np.flatnonzero(tids == tid)
            recoloured = maps[rows][:, cells_by_tid[tid]]
            for row, content in zip(rows, recoloured):
                ids = sorted(
                    pair_ids.setdefault((header, content[start:stop].tobytes()), len(pair_ids))
                    for header, start, stop in zip(headers_by_tid[tid], bounds[:-1], bounds[1:])
                )
                keys[row] = tuple(ids)
        return keys

    seen = set(puzzle_keys(np.zeros(1, dtype=np.int64), identity_mapping()[None]))
    trials_left = retries_factor * num_aug
    while len(group) < num_aug + 1 and trials_left > 0:
        count = min(trials_left, max(64, 2 * (num_aug + 1 - len(group))))
        tids, maps = rng.integers(0, NUM_DIHEDRAL, size=count), _random_colour_maps(rng, count)
        for tid, mapping, key in zip(tids, maps, puzzle_keys(tids, maps)):
            if key not in seen:
                seen.add(key)
                group.append((int(tid), mapping))
                if len(group) == num_aug + 1:
                    break
        trials_left -= count
    return group


# ----------------------------------------------------------------------------------------------------
# Encoding a whole split, vectorised over each task's augmentations


def _place_grids(
    out: np.ndarray,
    rows: np.ndarray,
    tokens: np.ndarray,
    shape: tuple[int, int],
    pad_r: np.ndarray,
    pad_c: np.ndarray,
    side: int,
) -> None:
    """Write grids of one shape (``tokens``: (n, h*w), already +2) into ``out[rows]`` at per-row offsets,
    with their EOS row and column (the layout of :func:`grid_to_tokens`)."""
    height, width = shape
    cell_r, cell_c = np.divmod(np.arange(height * width), width)
    out[rows[:, None], (pad_r[:, None] + cell_r) * side + pad_c[:, None] + cell_c] = tokens
    below = pad_r + height < side
    if below.any():
        out[rows[below, None], (pad_r[below, None] + height) * side + pad_c[below, None] + np.arange(width)] = EOS_TOKEN
    right = pad_c + width < side
    if right.any():
        out[rows[right, None], (pad_r[right, None] + np.arange(height)) * side + pad_c[right, None] + width] = EOS_TOKEN


def _encode_split(
    groups: list[tuple[list[Pair], list[tuple[int, np.ndarray]], list[int]]],
    side: int,
    translate: bool,
    rng: np.random.Generator,
) -> SplitArrays:
    """``groups``: per task, (the pairs going to this split, its augmentations, their puzzle ids)."""
    num_rows = sum(len(pairs) * len(augs) for pairs, augs, _ in groups)
    inputs = np.zeros((num_rows, side * side), dtype=np.uint8)
    labels = np.zeros((num_rows, side * side), dtype=np.uint8)
    puzzle_identifiers, puzzle_indices, group_indices = [], [0], [0]
    first_row = 0
    for pairs, augs, ids in groups:
        num_puzzles, num_examples = len(augs), len(pairs)
        tids = np.array([tid for tid, _ in augs])
        maps = np.stack([mapping for _, mapping in augs])
        transposed = np.isin(tids, TRANSPOSING_DIHEDRALS)
        pad_r = np.zeros((num_puzzles, num_examples), dtype=np.int64)
        pad_c = np.zeros((num_puzzles, num_examples), dtype=np.int64)
        if translate:
            # one offset per example, shared by its input and output, fitting both transformed grids
            height = np.array([max(inp.shape[0], out.shape[0]) for inp, out in pairs])
            width = np.array([max(inp.shape[1], out.shape[1]) for inp, out in pairs])
            max_r = np.where(transposed[:, None], width, height)
            max_c = np.where(transposed[:, None], height, width)
            untranslated = rng.integers(0, num_examples, size=num_puzzles)
            pad_r = rng.integers(0, side - max_r + 1)
            pad_c = rng.integers(0, side - max_c + 1)
            pad_r[np.arange(num_puzzles), untranslated] = 0
            pad_c[np.arange(num_puzzles), untranslated] = 0
        for example, (inp, out) in enumerate(pairs):
            for tid in np.unique(tids):
                members = np.flatnonzero(tids == tid)
                rows = first_row + members * num_examples + example
                for grid, target in ((inp, inputs), (out, labels)):
                    order = _dihedral_cell_order(*grid.shape, tid)
                    tokens = maps[members][:, grid.reshape(-1)[order]] + COLOUR_OFFSET
                    shape = _transformed_shape(grid.shape, tid)
                    _place_grids(target, rows, tokens, shape, pad_r[members, example], pad_c[members, example], side)
        puzzle_identifiers.extend(ids)
        puzzle_indices.extend(first_row + num_examples * np.arange(1, num_puzzles + 1))
        group_indices.append(len(puzzle_identifiers))
        first_row += num_puzzles * num_examples
    return SplitArrays(
        inputs=inputs,
        labels=labels,
        puzzle_identifiers=np.array(puzzle_identifiers, dtype=np.int32),
        puzzle_indices=np.array(puzzle_indices, dtype=np.int32),
        group_indices=np.array(group_indices, dtype=np.int32),
    )


def build_tasks_dataset(
    tasks: list[ARCTask],
    out_dir: str | Path,
    *,
    num_aug: int,
    rng: np.random.Generator,
    translate: bool = True,
    canvas_size: int = ARC_CANVAS_SIZE,
    overwrite: bool = False,
    build_info: dict | None = None,
) -> Path:
    """Augment, split, encode and write ``tasks`` (official format + ``test_puzzles.json`` + ``build.json``).

    Each task's group is [original, augmentations...] in both splits it appears in; every member is a
    puzzle with its own identifier (``identifiers.json``: ``"<blank>"`` then names in train order).
    """
    ids_seen: set[str] = set()
    for task in tasks:
        if task.task_id in ids_seen:
            raise DatasetError(f"task id {task.task_id!r} appears twice; task ids must be unique across sources")
        ids_seen.add(task.task_id)
        for inp, out in task.all_pairs:
            if max(inp.shape + out.shape) > canvas_size:
                raise DatasetError(f"task {task.task_id}: a grid exceeds the {canvas_size}×{canvas_size} canvas")
    if not any(task.role == "evaluation" for task in tasks):
        raise DatasetError("no task has the 'evaluation' role, so the test split would be empty")

    augmentations = [draw_augmentations(task.all_pairs, num_aug, rng) for task in tasks]
    names = [
        [task.task_id] + [augmentation_name(task.task_id, tid, mapping) for tid, mapping in augs[1:]]
        for task, augs in zip(tasks, augmentations)
    ]
    identifiers = [BLANK_IDENTIFIER] + [name for task_names in names for name in task_names]
    id_of = {name: index for index, name in enumerate(identifiers)}
    puzzle_ids = [[id_of[name] for name in task_names] for task_names in names]

    train_groups, test_groups = [], []
    for task, augs, ids in zip(tasks, augmentations, puzzle_ids):
        if task.role == "evaluation":
            train_groups.append((task.train_pairs, augs, ids))
            test_groups.append((task.test_pairs, augs, ids))
        else:
            train_groups.append((task.all_pairs, augs, ids))
    splits = {}
    for split, groups, split_translate in (("train", train_groups, translate), ("test", test_groups, False)):
        arrays = _encode_split(groups, canvas_size, split_translate, rng)
        metadata = make_metadata(arrays, vocab_size=VOCAB_SIZE, num_puzzle_identifiers=len(identifiers))
        splits[split] = (metadata, arrays)

    counts = [len(augs) - 1 for augs in augmentations]
    info = dict(build_info or {})
    info.update(
        canvas_size=canvas_size,
        tasks=len(tasks),
        evaluation_tasks=sum(task.role == "evaluation" for task in tasks),
        num_puzzle_identifiers=len(identifiers),
        augmentations={
            "requested_per_task": num_aug,
            "total": int(sum(counts)),
            "min_per_task": int(min(counts)),
            "tasks_below_requested": int(sum(count < num_aug for count in counts)),
        },
        splits={
            split: {
                "groups": arrays.num_groups,
                "puzzles": arrays.num_puzzles,
                "examples": arrays.num_examples,
                "mean_puzzle_examples": metadata.mean_puzzle_examples,
            }
            for split, (metadata, arrays) in splits.items()
        },
    )
    test_puzzles = {task.task_id: task.to_json() for task in tasks if task.role == "evaluation"}
    extra_files = {"test_puzzles.json": json.dumps(test_puzzles), "build.json": json.dumps(info, indent=2) + "\n"}
    return write_dataset(out_dir, splits, identifiers=identifiers, extra_files=extra_files, overwrite=overwrite)


# ----------------------------------------------------------------------------------------------------
# Real ARC


class ARCBuildConfig(StrictConfig):
    """Build of real ARC; defaults are the official ones (ARC-1 sources, 1000 augmentations)."""

    out_dir: Path = Field(description="output folder (written atomically)")
    dataset: Literal["arc1", "arc2"] | list[tuple[str, Role]] = Field(
        "arc1",
        description="arc1 (training + evaluation + ConceptARC) | arc2; in Python also a list of (folder, role) pairs",
    )
    num_aug: int = Field(default=1000, ge=0, description="dihedral + colour augmentations per task (official: 1000)")
    seed: int = Field(42, description="random seed: the same seed gives byte-identical files")
    translate: bool = Field(True, description="random translation of train examples (official)")
    subsample_tasks: int | None = Field(default=None, ge=1, description="keep at most this many tasks per source")
    overwrite: bool = Field(False, description="replace the output folder if it exists")

    @field_validator("dataset", mode="before")
    @classmethod
    def _known_dataset(cls, value):
        if isinstance(value, str) and value not in ("arc1", "arc2"):
            raise ValueError(f"dataset must be 'arc1', 'arc2' or a list of (folder, role) pairs, got {value!r}")
        return value


def load_arc_tasks(
    dataset: str | list[tuple[str, Role]], rng: np.random.Generator, subsample_tasks: int | None = None
) -> tuple[list[ARCTask], list[dict]]:
    """Tasks of every source in order, each source shuffled (as the official build) and, with
    ``subsample_tasks``, cut to its first that many; plus a per-source summary."""
    tasks, summary = [], []
    for folder, path, role in resolve_sources(dataset):
        source_tasks = load_source(path, role)
        source_tasks = [source_tasks[i] for i in rng.permutation(len(source_tasks))]
        if subsample_tasks is not None:
            source_tasks = source_tasks[:subsample_tasks]
        tasks.extend(source_tasks)
        summary.append({"folder": folder, "role": role, "tasks": len(source_tasks)})
    return tasks, summary


def build_arc_dataset(config: ARCBuildConfig) -> Path:
    """Build real ARC (ARC-1: 960 tasks, ARC-2: 1120) into ``config.out_dir``; same config, same bytes."""
    rng = np.random.default_rng(config.seed)
    tasks, sources = load_arc_tasks(config.dataset, rng, config.subsample_tasks)
    build_info = {
        "builder": "reasonlens.hrm.data.arc",
        "config": config.model_dump(mode="json", exclude={"out_dir", "overwrite"}),
        "sources": sources,
    }
    return build_tasks_dataset(
        tasks,
        config.out_dir,
        num_aug=config.num_aug,
        rng=rng,
        translate=config.translate,
        overwrite=config.overwrite,
        build_info=build_info,
    )
