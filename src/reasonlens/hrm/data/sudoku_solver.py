"""Sudoku combinatorics for the HRM data module: board geometry (4×4, 6×6, 9×9), an exact solver that counts
solutions and backtracks, the difficulty buckets built on that count, and a generator of unique puzzles.

Boards are integer arrays of shape (n, n): 0 = blank, 1..n = digit. Boxes are 2×2 (n = 4), 2 rows × 3 columns
(n = 6) and 3×3 (n = 9).

**Solver.** Candidates are bitmasks (bit d-1 = digit d). Propagation applies naked singles (a cell with one
candidate removes it from its peers) and hidden singles (a digit with one place left in a unit goes there) until
nothing changes; then the search branches on a cell with the fewest candidates (MRV; ties: lowest cell index),
trying its digits in ascending order (in random order when a generator is passed, for the generator's full
grids). It is deterministic; with ``limit=2`` (uniqueness) it takes about 0.3 ms on a Sudoku-Exchange puzzle,
25 ms on average on tdoku_forum_hardest_1106 and 0.13 s on the worst of them (one CPU core).

**Backtracks** (the difficulty rating, :func:`rate`): the number of guesses (a digit tried at a branch cell)
whose subtree held no solution, over the search run with ``limit=2``. For a puzzle with exactly one solution
that search is the whole tree, so the count does not depend on the order the digits are tried in (relabelling
the digits leaves it unchanged; moving cells can change it, through MRV's tie-breaking), and it is 0 exactly
when naked and hidden singles alone solve the puzzle. It is the same idea as tdoku's backtrack count, which
HRM's Sudoku-Extreme ``rating`` column holds, but not the same number: tdoku propagates more strongly
(box-line interactions, SIMD "triads") and orders its guesses differently, so it backtracks far less.

**Difficulty buckets**: ``easy`` = 0 backtracks (singles suffice), ``moderate`` = 1..19, ``hard`` = 20 or more
(:data:`DIFFICULTY_BACKTRACKS`). Measured on every puzzle of the shipped banks (``data/sudoku``):

=================================  ======  ======  ======  ======  =====  ===========================
bank                               n       median  mean    p90     max    easy / moderate / hard (%)
=================================  ======  ======  ======  ======  =====  ===========================
se_easy                            500     0       0.0     0       0      100 / 0 / 0
se_medium                          500     0       0.6     2       12     71 / 29 / 0
se_hard                            20000   2       2.7     6       101    0 / 99 / 1
se_diabolical                      20000   3       4.9     11      114    0 / 97 / 3
tdoku_17clue                       20000   1       9.0     17      4089   45 / 46 / 9
tdoku_magictour_top1465            1465    43      86.3    206     2486   0 / 15 / 85
tdoku_forum_hardest_1905_11plus    20000   249     340.4   666     3904   0 / 0 / 100
tdoku_forum_hardest_1106           375     545     736.4   1490    3738   0 / 0 / 100
=================================  ======  ======  ======  ======  =====  ===========================

The share of 0s equals the banks' README "no guess" column (70.8 % se_medium, 44.7 % 17-clue), whose solver
also used naked and hidden singles. The cut at 20 sits above the 99th percentile of se_hard (16), near that of
se_diabolical (28), and near the 15th percentile of Magictour (85 % of it is hard): ``moderate`` is the
Sudoku-Exchange hard/diabolical world (hard for humans, a few wrong guesses for search), ``hard`` the Magictour
and forum-hardest lists that Sudoku-Extreme (HRM paper §3.1) was built from. Minimal generated 9×9 puzzles are
mostly easy or moderate (see :func:`generate_puzzle`).

**Generator.** A random full grid (the solver on an empty board, digits tried in random order), then cells
blanked in random order, each blank kept only if the puzzle stays unique, until ``target_clues`` givens remain or
no given can be removed (a minimal puzzle). Uniqueness after blanking digit v at cell c is decided by one search
for a solution with v forbidden at c (instead of counting to two). Minimal puzzles (one CPU core): 4×4 average
4.3 givens, all easy, about 5000 puzzles/s; 6×6 10.1 givens, 97 % easy, about 900/s; 9×9 24.3 givens, 51 % easy
/ 48 % moderate / 1.3 % hard, about 95/s (260/s when stopping at 30 givens). ``difficulty`` rejects until a
puzzle falls in the bucket, so hard 9×9 puzzles come at about 2 per second; the banks are the better source.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BOX_SHAPES = {4: (2, 2), 6: (2, 3), 9: (3, 3)}  # size -> (box rows, box columns)
DIFFICULTIES = ("easy", "moderate", "hard")
# bucket -> inclusive backtrack range (None = unbounded); see the module docstring for the measurements
DIFFICULTY_BACKTRACKS = {"easy": (0, 0), "moderate": (1, 19), "hard": (20, None)}


def box_shape(size: int) -> tuple[int, int]:
    """(box rows, box columns) of a board of side ``size``; a clear ``ValueError`` for any other size."""
    if size not in BOX_SHAPES:
        raise ValueError(f"Sudoku size must be 4, 6 or 9 (boxes 2×2, 2×3, 3×3), got {size!r}")
    return BOX_SHAPES[size]


@dataclass(frozen=True)
class Geometry:
    """Cells are numbered row-major 0..n²-1. ``units`` lists the rows, then the columns, then the boxes
    (boxes row-major, box rows × box columns); ``peers[c]`` are the cells sharing a unit with c."""

    size: int
    box_rows: int
    box_cols: int
    units: tuple[tuple[int, ...], ...]
    peers: tuple[tuple[int, ...], ...]

    @property
    def full_mask(self) -> int:
        return (1 << self.size) - 1

    def unit_name(self, unit_index: int) -> str:
        kind, number = divmod(unit_index, self.size)
        return f"{('row', 'column', 'box')[kind]} {number + 1}"


@functools.cache
def geometry(size: int) -> Geometry:
    box_rows, box_cols = box_shape(size)
    rows = [tuple(r * size + c for c in range(size)) for r in range(size)]
    cols = [tuple(r * size + c for r in range(size)) for c in range(size)]
    boxes = [
        tuple((r0 + r) * size + c0 + c for r in range(box_rows) for c in range(box_cols))
        for r0 in range(0, size, box_rows)
        for c0 in range(0, size, box_cols)
    ]
    units = tuple(rows + cols + boxes)
    peers = tuple(
        tuple(sorted({p for unit in units if cell in unit for p in unit} - {cell})) for cell in range(size * size)
    )
    return Geometry(size, box_rows, box_cols, units, peers)


def as_board(board, size: int | None = None) -> np.ndarray:
    """``board`` as an (n, n) int64 array with values 0..n; ``ValueError`` naming what is wrong otherwise.
    Accepts (n, n) or flat (n²,) input; ``size`` defaults to what the shape says."""
    array = np.asarray(board)
    if array.dtype.kind not in "iu" and not (array.dtype.kind == "f" and np.all(array == np.round(array))):
        raise ValueError(f"a Sudoku board must hold integers, got dtype {array.dtype}")
    if size is None:
        if array.ndim == 2 and array.shape[0] == array.shape[1]:
            size = array.shape[0]
        elif array.ndim == 1 and array.size in (16, 36, 81):
            size = {16: 4, 36: 6, 81: 9}[array.size]
        else:
            raise ValueError(f"a Sudoku board has shape (n, n) or (n²,) for n = 4, 6 or 9, got shape {array.shape}")
    box_shape(size)
    if array.shape not in ((size, size), (size * size,)):
        raise ValueError(
            f"a {size}×{size} Sudoku board has shape ({size}, {size}) or ({size * size},), got {array.shape}"
        )
    array = array.reshape(size, size).astype(np.int64)
    if array.min() < 0 or array.max() > size:
        raise ValueError(f"{size}×{size} Sudoku cells must be 0 (blank) or 1..{size}, got {array.min()}..{array.max()}")
    return array


def find_conflict(board) -> str | None:
    """The first rule a board's givens break ("digit 5 appears twice in row 3"), or None if there is none."""
    board = as_board(board)
    geo = geometry(len(board))
    flat = board.reshape(-1)
    for unit_index, unit in enumerate(geo.units):
        values = flat[list(unit)]
        values = values[values > 0]
        counts = np.bincount(values, minlength=geo.size + 1)
        if counts.max(initial=0) > 1:
            return f"digit {int(counts.argmax())} appears twice in {geo.unit_name(unit_index)}"
    return None


def valid_grid_mask(grids: np.ndarray) -> np.ndarray:
    """Vectorised check of a stack of grids (m, n, n): True where every row, column and box holds 1..n once."""
    grids = np.asarray(grids)
    m, n = grids.shape[0], grids.shape[-1]
    box_rows, box_cols = box_shape(n)
    boxes = grids.reshape(m, n // box_rows, box_rows, n // box_cols, box_cols).transpose(0, 1, 3, 2, 4).reshape(m, n, n)
    digits = np.arange(1, n + 1)
    valid = np.ones(m, dtype=bool)
    for units in (grids, grids.transpose(0, 2, 1), boxes):  # (m, unit, cell)
        counts = (units[..., None] == digits).sum(axis=2)  # (m, unit, digit)
        valid &= np.all(counts == 1, axis=(1, 2))
    return valid


def is_valid_solution(grid, size: int | None = None) -> bool:
    """True if ``grid`` is a completely filled board whose every row, column and box holds 1..n once.
    A grid of the wrong shape or with values outside 0..n raises ``ValueError``; a blank makes it False."""
    grid = as_board(grid, size)
    return bool(valid_grid_mask(grid[None])[0])


@dataclass(frozen=True)
class SolveResult:
    """``solutions`` holds up to ``limit`` solutions (search stops there); see the module docstring for
    ``backtracks``. ``guesses`` counts every digit tried at a branch cell during the whole search."""

    solutions: tuple[np.ndarray, ...]
    backtracks: int
    guesses: int
    limit: int

    @property
    def num_solutions(self) -> int:
        """Solutions found, capped at ``limit``."""
        return len(self.solutions)

    @property
    def solution(self) -> np.ndarray | None:
        return self.solutions[0] if self.solutions else None

    @property
    def unique(self) -> bool:
        """Exactly one solution; only meaningful for a search run with ``limit >= 2``."""
        if self.limit < 2:
            raise ValueError("uniqueness needs a search with limit >= 2")
        return len(self.solutions) == 1


class _Search:
    """Depth-first search over candidate bitmasks (a list of n² ints; a solved cell holds one bit)."""

    def __init__(self, geo: Geometry, limit: int, rng: np.random.Generator | None):
        self.geo = geo
        self.limit = limit
        self.rng = rng
        self.solutions: list[list[int]] = []
        self.backtracks = 0
        self.guesses = 0

    def propagate(self, cand: list[int], queue: list[int]) -> bool:
        """Naked and hidden singles to a fixed point; False on a contradiction. ``queue`` holds the cells
        that became single since their peers were last updated."""
        peers, units, full = self.geo.peers, self.geo.units, self.geo.full_mask
        while True:
            while queue:
                cell = queue.pop()
                bit = cand[cell]
                for peer in peers[cell]:
                    mask = cand[peer]
                    if mask & bit:
                        mask ^= bit
                        if not mask:
                            return False
                        cand[peer] = mask
                        if not mask & (mask - 1):
                            queue.append(peer)
            for unit in units:
                seen_once = seen_twice = 0
                for cell in unit:
                    mask = cand[cell]
                    seen_twice |= seen_once & mask
                    seen_once |= mask
                if seen_once != full:
                    return False  # a digit has no place left in this unit
                hidden = seen_once & ~seen_twice
                if hidden:
                    for cell in unit:
                        mask = cand[cell]
                        if mask & (mask - 1) and mask & hidden:
                            mask &= hidden
                            if mask & (mask - 1):
                                return False  # two digits can only go in this one cell
                            cand[cell] = mask
                            queue.append(cell)
            if not queue:
                return True

    def run(self, cand: list[int], queue: list[int]) -> bool:
        """Search below ``cand``; True if this subtree held a solution."""
        if not self.propagate(cand, queue):
            return False
        branch_cell, fewest = -1, self.geo.size + 1
        for cell, mask in enumerate(cand):
            if mask & (mask - 1):
                count = mask.bit_count()
                if count < fewest:
                    branch_cell, fewest = cell, count
                    if count == 2:
                        break
        if branch_cell < 0:
            self.solutions.append(cand)
            return True
        mask = cand[branch_cell]
        options = [1 << d for d in range(self.geo.size) if mask >> d & 1]
        if self.rng is not None:
            options = [options[i] for i in self.rng.permutation(len(options))]
        found = False
        for bit in options:
            self.guesses += 1
            child = cand.copy()
            child[branch_cell] = bit
            if self.run(child, [branch_cell]):
                found = True
            else:
                self.backtracks += 1
            if len(self.solutions) >= self.limit:
                break
        return found


def _initial_candidates(board: np.ndarray, geo: Geometry) -> tuple[list[int] | None, list[int]]:
    """Candidate masks with the givens placed (None if two givens clash) and the queue of given cells."""
    full = geo.full_mask
    cand = [full] * (geo.size * geo.size)
    queue = []
    for cell, value in enumerate(board.reshape(-1).tolist()):
        if value:
            cand[cell] = 1 << (value - 1)
            queue.append(cell)
    for cell in queue:
        if any(cand[p] == cand[cell] for p in geo.peers[cell]):
            return None, []
    return cand, queue


def _masks_to_board(cand: list[int], size: int) -> np.ndarray:
    return np.array([mask.bit_length() for mask in cand], dtype=np.int64).reshape(size, size)


def solve(board, limit: int = 1, rng: np.random.Generator | None = None) -> SolveResult:
    """Search for up to ``limit`` solutions of ``board`` ((n, n) or flat, 0 = blank). ``limit=2`` decides
    uniqueness and gives the rating (``backtracks``); ``rng`` randomises the digit order, None keeps it
    deterministic."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    board = as_board(board)
    geo = geometry(len(board))
    search = _Search(geo, limit, rng)
    cand, queue = _initial_candidates(board, geo)
    if cand is not None:
        search.run(cand, queue)
    solutions = tuple(_masks_to_board(s, geo.size) for s in search.solutions)
    return SolveResult(solutions, search.backtracks, search.guesses, limit)


def candidates(board) -> np.ndarray | None:
    """The candidate bitmasks (n, n) (bit d-1 set = digit d still possible) left by singles propagation alone,
    or None if propagation reaches a contradiction. A board solved by singles has one bit per cell."""
    board = as_board(board)
    geo = geometry(len(board))
    cand, queue = _initial_candidates(board, geo)
    if cand is None or not _Search(geo, 1, None).propagate(cand, queue):
        return None
    return np.array(cand, dtype=np.int64).reshape(geo.size, geo.size)


def count_solutions(board, limit: int = 2) -> int:
    """Number of solutions, counted up to ``limit``."""
    return solve(board, limit=limit).num_solutions


def rate(board) -> int:
    """The backtrack count of a puzzle with exactly one solution (see the module docstring); ``ValueError``
    for a board with no solution or several."""
    result = solve(board, limit=2)
    if result.num_solutions != 1:
        found = "no solution" if result.num_solutions == 0 else "more than one solution"
        raise ValueError(f"only a puzzle with exactly one solution has a rating; this one has {found}")
    return result.backtracks


def difficulty_bucket(backtracks: int) -> str:
    """``easy`` / ``moderate`` / ``hard`` for a backtrack count (thresholds: :data:`DIFFICULTY_BACKTRACKS`)."""
    for name, (low, high) in DIFFICULTY_BACKTRACKS.items():
        if backtracks >= low and (high is None or backtracks <= high):
            return name
    raise ValueError(f"backtracks must be a non-negative integer, got {backtracks}")


def check_difficulty_names(names: str | Sequence[str]) -> tuple[str, ...]:
    names = (names,) if isinstance(names, str) else tuple(names)
    unknown = [name for name in names if name not in DIFFICULTIES]
    if unknown or not names:
        raise ValueError(f"difficulty must be one or more of {', '.join(DIFFICULTIES)}, got {list(names)}")
    return names


def _has_other_solution(cand: list[int], cell: int, value: int, geo: Geometry) -> bool:
    """Does the puzzle with candidates ``cand`` (``cell`` just blanked) have a solution without ``value`` at
    ``cell``? If not, the puzzle's only solution is the one that had ``value`` there."""
    cand = cand.copy()
    cand[cell] = geo.full_mask & ~(1 << (value - 1))
    queue = [c for c, mask in enumerate(cand) if not mask & (mask - 1)]
    search = _Search(geo, 1, None)
    return search.run(cand, queue)


def generate_full_grid(size: int, rng: np.random.Generator) -> np.ndarray:
    """A random complete valid grid of side ``size``."""
    geo = geometry(size)
    empty = np.zeros((size, size), dtype=np.int64)
    cand, queue = _initial_candidates(empty, geo)
    search = _Search(geo, 1, rng)
    search.run(cand, queue)
    return _masks_to_board(search.solutions[0], size)


def _seeded(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be a numpy Generator, an int seed or None, got {type(rng).__name__}")


def carve_puzzle(grid: np.ndarray, rng: np.random.Generator, target_clues: int | None = None) -> np.ndarray:
    """Blank the cells of a full ``grid`` in random order, keeping each blank only if the puzzle stays
    unique, until ``target_clues`` givens remain (None: until no given can be removed, a minimal puzzle)."""
    grid = as_board(grid)
    geo = geometry(len(grid))
    puzzle = grid.copy().reshape(-1)
    # the givens' masks; a blank cell holds the full mask and is narrowed again by each search's propagation
    cand = [1 << (v - 1) for v in puzzle.tolist()]
    clues = puzzle.size
    for cell in rng.permutation(puzzle.size).tolist():
        if target_clues is not None and clues <= target_clues:
            break
        value = int(puzzle[cell])
        if not _has_other_solution(cand, cell, value, geo):
            puzzle[cell] = 0
            cand[cell] = geo.full_mask
            clues -= 1
    return puzzle.reshape(grid.shape)


def generate_puzzle(
    size: int = 9,
    rng: np.random.Generator | int | None = None,
    target_clues: int | None = None,
    difficulty: str | Sequence[str] | None = None,
    max_tries: int = 1000,
) -> tuple[np.ndarray, np.ndarray, int]:
    """A random puzzle with exactly one solution: ``(puzzle, solution, backtracks)``.

    ``rng``: a Generator or an int seed (same seed, same puzzle). ``target_clues``: stop removing givens once
    this many remain (the puzzle may keep more if it becomes minimal first); None removes until minimal.
    ``difficulty``: bucket name(s); puzzles outside are rejected, up to ``max_tries`` full grids."""
    box_shape(size)
    rng = _seeded(rng)
    wanted = check_difficulty_names(difficulty) if difficulty is not None else None
    if target_clues is not None and not 0 <= target_clues <= size * size:
        raise ValueError(f"target_clues must lie in 0..{size * size}, got {target_clues}")
    for _ in range(max_tries):
        solution = generate_full_grid(size, rng)
        puzzle = carve_puzzle(solution, rng, target_clues)
        result = solve(puzzle, limit=2)
        if result.num_solutions != 1 or not np.array_equal(result.solution, solution):
            raise RuntimeError("generator bug: a carved puzzle is not unique")
        backtracks = result.backtracks
        if wanted is None or difficulty_bucket(backtracks) in wanted:
            return puzzle, solution, backtracks
    raise ValueError(
        f"no {size}×{size} puzzle of difficulty {list(wanted)} in {max_tries} tries; generated puzzles are mostly "
        "easy (hard ones are rare, especially for 4×4 and 6×6): raise max_tries or use the real banks"
    )
