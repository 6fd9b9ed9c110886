"""Bit-parallel BFS over a batch of mazes, each row of each maze one uint64 bit mask (bit c = column c): the
batched valid-optimal-path check, the :func:`path_accuracy` metric, and the bit helpers the generator's BFS
(:mod:`.generator`) uses."""

from __future__ import annotations

import numpy as np

from reasonlens.hrm.data.maze.encoding import FREE, GOAL, PATH, START, WALL, _check_maze, tokens_to_grid

_ONE = np.uint64(1)


def _mask_to_bits(mask: np.ndarray) -> np.ndarray:
    """(..., H, W) bool -> (..., H) uint64."""
    packed = np.packbits(mask, axis=-1, bitorder="little")
    padded = np.zeros((*mask.shape[:-1], 8), np.uint8)
    padded[..., : packed.shape[-1]] = packed
    return padded.view("<u8")[..., 0].astype(np.uint64)


def _bits_to_mask(bits: np.ndarray, width: int) -> np.ndarray:
    """(..., H) uint64 -> (..., H, W) bool."""
    as_bytes = np.ascontiguousarray(bits.astype("<u8")).view(np.uint8).reshape(*bits.shape, 8)
    return np.unpackbits(as_bytes, axis=-1, bitorder="little")[..., :width].astype(bool)


def _cell_bits(cells: np.ndarray, height: int, width: int) -> np.ndarray:
    bits = np.zeros((len(cells), height), np.uint64)
    bits[np.arange(len(cells)), cells // width] = _ONE << (cells % width).astype(np.uint64)
    return bits


def _neighbours(front: np.ndarray) -> np.ndarray:
    """Cells next to the front (may include columns beyond the width: callers mask with the open cells)."""
    spread = (front << _ONE) | (front >> _ONE)
    spread[:, 1:] |= front[:, :-1]
    spread[:, :-1] |= front[:, 1:]
    return spread


def _popcount(bits: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(bits).sum(axis=-1, dtype=np.int64)
    return np.unpackbits(np.ascontiguousarray(bits.astype("<u8")).view(np.uint8), axis=-1).sum(axis=-1, dtype=np.int64)


def _goal_distances(passable: np.ndarray, starts: np.ndarray, goals: np.ndarray) -> np.ndarray:
    """Moves from ``starts`` to ``goals`` (flat cells) through ``passable`` (N, H, W) for a batch; -1: none."""
    _, height, width = passable.shape
    distance = np.where(starts == goals, 0, -1).astype(np.int64)
    active = np.flatnonzero(starts != goals)
    front = _cell_bits(starts[active], height, width)
    target = _cell_bits(goals[active], height, width)
    unvisited = _mask_to_bits(passable[active]) & ~front
    depth = 0
    while active.size:
        depth += 1
        front = _neighbours(front) & unvisited
        unvisited ^= front
        reached = (front & target).any(axis=1)
        distance[active[reached]] = depth
        alive = front.any(axis=1) & ~reached
        if not alive.all():
            active, front, unvisited, target = active[alive], front[alive], unvisited[alive], target[alive]
    return distance


def _valid_optimal_batch(mazes: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """:func:`is_valid_optimal_path` for (N, H, W) checked mazes and predictions of the same shape."""
    count = len(mazes)
    if count == 0:
        return np.zeros(0, bool)
    flat = mazes.reshape(count, -1)
    starts, goals = np.argmax(flat == START, axis=1), np.argmax(flat == GOAL, axis=1)
    marked = predictions == PATH
    unchanged = ~np.where(marked, mazes != FREE, predictions != mazes).any(axis=(1, 2))
    optimal = _goal_distances(mazes != WALL, starts, goals)
    along_marks = _goal_distances(marked | (mazes == START) | (mazes == GOAL), starts, goals)
    return unchanged & (optimal > 0) & (marked.sum(axis=(1, 2)) == optimal - 1) & (along_marks == optimal)


def path_accuracy(inputs, labels, predictions) -> dict[str, float]:
    """Both Maze metrics over a batch of token arrays (N, H·W) or grids (N, H, W): ``exact`` (the official one:
    the whole prediction equals the label) and ``valid_optimal`` (:func:`is_valid_optimal_path`, fair to
    other shortest paths than the label's)."""
    inputs, labels, predictions = (np.asarray(a) for a in (inputs, labels, predictions))
    count = len(inputs)
    if not inputs.shape == labels.shape == predictions.shape or count == 0:
        raise ValueError(
            f"inputs, labels and predictions must share one non-empty shape, got {inputs.shape}, {labels.shape}, "
            f"{predictions.shape}"
        )
    mazes = np.stack([_check_maze(tokens_to_grid(row), f"maze {i}") for i, row in enumerate(inputs.reshape(count, -1))])
    side = mazes.shape[1]
    preds = predictions.reshape(count, side, side).astype(np.int64)
    exact = (preds == labels.reshape(count, side, side)).all(axis=(1, 2))
    return {"exact": float(exact.mean()), "valid_optimal": float(_valid_optimal_batch(mazes, preds).mean())}
