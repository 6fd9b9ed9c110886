"""Batches from a puzzle dataset with the official sampler semantics (sapientinc/HRM
``puzzle_dataset.py::PuzzleDataset``), as a plain seeded iterator instead of a DataLoader worker.

**Train.** One *iteration* covers ``epochs_per_iter`` epochs (the trainer's eval interval). Iteration i
(1-based) draws from ``Philox(seed + i)``: the group order is the concatenation of ``epochs_per_iter``
random permutations of the groups; walking that order, each group contributes one uniformly chosen
member puzzle (one augmentation variant) and ``min(puzzle size, room left)`` of its examples, drawn
without replacement, until the global batch is full. An incomplete last batch is dropped. Each rank
takes its slice ``[rank·local : (rank+1)·local]`` of every global batch. An epoch is one pass over the
*groups*, so with 1000 Sudoku groups an epoch is 1000 samples whatever ``num_aug`` is.

The group order and member choice use the same Philox stream as upstream, so Sudoku and Maze batches
(one example per puzzle) are identical to the official sampler's for the same seed. Upstream draws the
examples within a puzzle from the *unseeded* global NumPy generator; here they come from a generator
seeded by (seed, iteration), so every run is reproducible (this only matters for ARC).

**Test.** Every example once, in file order, in windows split by rank. A test batch holds at most
``min(local batch size, the split's rows per rank)`` rows: a batch size above the split never pads (a
``--batch-size 100000`` on 20 puzzles runs one batch of 20). Only when asked (``pad_last``: a compiled
model wants one fixed shape) is a short last batch padded — up to that same size, never past the split —
with ``pad_id`` inputs, ignored labels and the blank puzzle id; padding rows are never scored.

Labels equal to ``ignore_label_id`` become ``IGNORE_LABEL_ID`` (−100), as upstream.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import torch

from reasonlens.hrm.data.format import IGNORE_LABEL_ID, DatasetError, DatasetMetadata, SplitArrays, load_split


def sample_batch(
    rng: np.random.Generator,
    example_rng: np.random.Generator,
    group_order: np.ndarray,
    puzzle_indices: np.ndarray,
    group_indices: np.ndarray,
    start: int,
    global_batch_size: int,
) -> tuple[int, np.ndarray, np.ndarray]:
    """Fill one global batch walking ``group_order`` from ``start``; return (next start, example
    indices, puzzle index of each example)."""
    examples, puzzles = [], []
    size = 0
    while start < group_order.size and size < global_batch_size:
        group = group_order[start]
        puzzle = rng.integers(group_indices[group], group_indices[group + 1])  # one member of the group
        start += 1
        first = puzzle_indices[puzzle]
        puzzle_size = int(puzzle_indices[puzzle + 1] - first)
        take = min(puzzle_size, global_batch_size - size)
        examples.append(first + example_rng.choice(puzzle_size, take, replace=False))
        puzzles.append(np.full(take, puzzle, dtype=np.int32))
        size += take
    if not examples:
        return start, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32)
    return start, np.concatenate(examples), np.concatenate(puzzles)


def puzzle_of_examples(arrays: SplitArrays) -> np.ndarray:
    """The puzzle index of every example (the examples of a puzzle are contiguous)."""
    return np.repeat(np.arange(arrays.num_puzzles), np.diff(arrays.puzzle_indices))


def collate_examples(
    metadata: DatasetMetadata,
    arrays: SplitArrays,
    indices: np.ndarray,
    puzzle_of_example: np.ndarray | None = None,
    pad_to: int | None = None,
) -> dict[str, torch.Tensor]:
    """Examples ``indices`` as an int32 batch (``inputs``, ``labels`` with ignored labels as −100,
    ``puzzle_identifiers``), padded to ``pad_to`` rows with pad inputs, ignored labels and the blank id."""
    indices = np.asarray(indices)
    if puzzle_of_example is None:
        puzzle_of_example = puzzle_of_examples(arrays)[indices]
    batch = {
        "inputs": arrays.inputs[indices].astype(np.int32),
        "labels": arrays.labels[indices].astype(np.int32),
        "puzzle_identifiers": arrays.puzzle_identifiers[puzzle_of_example].astype(np.int32),
    }
    if metadata.ignore_label_id is not None:
        batch["labels"][batch["labels"] == metadata.ignore_label_id] = IGNORE_LABEL_ID
    missing = (pad_to or 0) - len(indices)
    if missing > 0:
        pad_values = {
            "inputs": metadata.pad_id,
            "labels": IGNORE_LABEL_ID,
            "puzzle_identifiers": metadata.blank_identifier_id,
        }
        batch = {
            k: np.pad(v, ((0, missing),) + ((0, 0),) * (v.ndim - 1), constant_values=pad_values[k])
            for k, v in batch.items()
        }
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}


class PuzzleBatches:
    """Batches of one split. ``train_iteration()`` yields the batches of the next training iteration;
    ``test_batches()`` yields ``(batch, real rows in it)`` over the whole split (the rest is padding)."""

    def __init__(
        self,
        dataset_dir: str | os.PathLike,
        split: str,
        global_batch_size: int,
        *,
        seed: int = 0,
        epochs_per_iter: int = 1,
        rank: int = 0,
        world_size: int = 1,
    ):
        if global_batch_size < 1 or global_batch_size % world_size:
            raise DatasetError(
                f"global batch size {global_batch_size} must be a positive multiple of the world size {world_size}"
            )
        if epochs_per_iter < 1:
            raise DatasetError(f"epochs_per_iter must be >= 1, got {epochs_per_iter}")
        self.metadata: DatasetMetadata
        self.arrays: SplitArrays
        self.metadata, self.arrays = load_split(dataset_dir, split)
        self.global_batch_size = global_batch_size
        self.local_batch_size = global_batch_size // world_size
        self.seed, self.epochs_per_iter = seed, epochs_per_iter
        self.rank, self.world_size = rank, world_size
        self.iterations_started = 0  # the official ``_iters``
        self.batches_done = 0  # batches yielded in the current iteration (resume position)
        self._resume_pending = False

    # -- state, for resuming -----------------------------------------------------------------

    def state_dict(self) -> dict:
        return {"iterations_started": self.iterations_started, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict) -> None:
        """Resume: the next ``train_iteration()`` replays the interrupted iteration and skips the
        batches already trained on (or starts the next one if it was complete)."""
        self.iterations_started = int(state["iterations_started"])
        self.batches_done = int(state["batches_done"])
        self._resume_pending = self.batches_done > 0

    # -- batches -----------------------------------------------------------------------------

    def collate(self, indices: np.ndarray, puzzle_of_example: np.ndarray) -> dict[str, torch.Tensor]:
        return collate_examples(self.metadata, self.arrays, indices, puzzle_of_example, pad_to=self.local_batch_size)

    def batches_per_iteration(self) -> int:
        """Full global batches in one iteration (every group contributes at least one example)."""
        examples = self.epochs_per_iter * self.arrays.num_groups * self.metadata.mean_puzzle_examples
        return int(examples // self.global_batch_size)

    def train_iteration(self) -> Iterator[dict[str, torch.Tensor]]:
        resuming, self._resume_pending = self._resume_pending, False
        if not resuming:
            self.iterations_started += 1
            self.batches_done = 0
        skip = self.batches_done
        iteration = self.iterations_started
        rng = np.random.Generator(np.random.Philox(seed=self.seed + iteration))
        example_rng = np.random.default_rng([self.seed, iteration])
        num_groups = self.arrays.num_groups
        group_order = np.concatenate([rng.permutation(num_groups) for _ in range(self.epochs_per_iter)])
        start, produced = 0, 0
        while start < group_order.size:
            start, indices, puzzles = sample_batch(
                rng,
                example_rng,
                group_order,
                self.arrays.puzzle_indices,
                self.arrays.group_indices,
                start,
                self.global_batch_size,
            )
            if indices.size < self.global_batch_size:
                break  # drop the incomplete last batch
            produced += 1
            if produced <= skip:
                continue  # already trained on before the interruption
            local = slice(self.rank * self.local_batch_size, (self.rank + 1) * self.local_batch_size)
            self.batches_done = produced
            yield self.collate(indices[local], puzzles[local])

    def test_batch_rows(self) -> int:
        """Rows of a test batch on this rank: the local batch size, or fewer when the split is smaller
        (its rows spread over the ranks)."""
        per_rank = -(-self.arrays.num_examples // self.world_size)
        return max(1, min(self.local_batch_size, per_rank))

    def test_batches(self, pad_last: bool = False) -> Iterator[tuple[dict[str, torch.Tensor], int]]:
        """``(batch, real rows)`` over the whole split in file order. Batches hold at most
        :meth:`test_batch_rows` rows; with ``pad_last`` every batch has exactly that many (the short last
        one padded), otherwise only the real rows (a rank whose slice of the last window is empty gets
        one padding row, so that every rank evaluates and reduces the same metrics)."""
        total = self.arrays.num_examples
        if total == 0:
            return
        rows = self.test_batch_rows()
        window = rows * self.world_size
        puzzle_of_example = puzzle_of_examples(self.arrays)
        for start in range(0, total, window):
            end = min(total, start + window)
            local_start = min(start + self.rank * rows, end)
            local_end = min(local_start + rows, end)
            indices = np.arange(local_start, local_end)
            pad_to = rows if pad_last else max(len(indices), 1)
            batch = collate_examples(self.metadata, self.arrays, indices, puzzle_of_example[indices], pad_to=pad_to)
            yield batch, len(indices)
