"""The official Maze encoding (sapientinc/HRM ``dataset/build_maze_dataset.py``) and the conversions between
maze strings, char grids and token grids.

A maze is a row-major string over the charset ``"# SGo"``; token = charset index + 1, so PAD = 0, ``#`` wall = 1,
``' '`` free = 2, ``S`` start = 3, ``G`` goal = 4, ``o`` path = 5 (labels only); ``vocab_size = 6``,
``seq_len = H·W`` (900 for 30×30), ``ignore_label_id = 0`` (every cell is scored), one puzzle identifier (0,
``"<blank>"``), one example per puzzle. The input is the maze with S and G; the label is the same grid with the
interior cells of a shortest path (S and G excluded) turned into ``o``. Grids are handled as *token grids*:
``(H, W)`` uint8 arrays of these ids, sides 2..64 (generated mazes 5..64; a row is one uint64 bit mask in the
batched BFS of :mod:`.batch_bfs`).
"""

from __future__ import annotations

import math

import numpy as np

from reasonlens.hrm.data.format import DatasetError

CHARSET = "# SGo"
PAD, WALL, FREE, START, GOAL, PATH = range(6)
VOCAB_SIZE = len(CHARSET) + 1

MAX_SIDE = 64  # one uint64 bit mask per row in the batched BFS
MIN_SIDE = 2

_RENDER_CHARS = "?#.SGo"  # free cells as '.' so they stay visible
_ID_TO_CHAR = np.array(list("?" + CHARSET))
_CHAR_TO_ID = np.zeros(128, np.uint8)
_CHAR_TO_ID[[ord(ch) for ch in CHARSET]] = np.arange(1, len(CHARSET) + 1)


def _square_side(length: int) -> int:
    side = math.isqrt(length)
    if length == 0 or side * side != length or not MIN_SIDE <= side <= MAX_SIDE:
        raise DatasetError(
            f"{length} cells is not a square maze: a maze holds H·W cells with H = W between {MIN_SIDE} and "
            f"{MAX_SIDE} (900 for 30×30)"
        )
    return side


def string_to_tokens(text: str) -> np.ndarray:
    """Row-major maze string over ``"# SGo"`` -> flat uint8 token ids."""
    if not isinstance(text, str):
        raise DatasetError(f"a maze string must be a str, got {type(text).__name__}")
    codes = np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype="<u4")
    tokens = _CHAR_TO_ID[np.minimum(codes, 127)]
    bad = np.flatnonzero(tokens == 0)
    if bad.size:
        raise DatasetError(
            f"invalid character {text[bad[0]]!r} at position {bad[0]}; allowed: '#' wall, ' ' free, 'S' start, "
            "'G' goal, 'o' path"
        )
    return tokens


def tokens_to_grid(tokens, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Token ids (flat or 2-D) -> ``(H, W)`` uint8 token grid; ``shape`` defaults to the square of the length."""
    array = np.asarray(tokens)
    if array.dtype.kind not in "iu":
        raise DatasetError(f"maze tokens must be integers, got dtype {array.dtype}")
    if shape is None:
        shape = array.shape if array.ndim == 2 else (_square_side(array.size),) * 2
    if array.size != shape[0] * shape[1] or min(shape) < 1:
        raise DatasetError(f"{array.size} maze tokens do not fill a {shape[0]}×{shape[1]} grid")
    outside = array[(array < WALL) | (array > PATH)]
    if outside.size:
        raise DatasetError(f"maze token ids must lie in {WALL}..{PATH} ('#', ' ', 'S', 'G', 'o'), found {outside[0]}")
    return array.reshape(shape).astype(np.uint8)


def encode(maze, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A maze string, a list of row strings, a char grid (array of 1-char strings) or token ids -> token grid."""
    if isinstance(maze, str):
        return tokens_to_grid(string_to_tokens(maze), shape)
    if isinstance(maze, (list, tuple)) and maze and all(isinstance(row, str) for row in maze):
        if len({len(row) for row in maze}) != 1:
            raise DatasetError("the rows of a maze must all have the same length")
        return tokens_to_grid(string_to_tokens("".join(maze)), shape or (len(maze), len(maze[0])))
    array = np.asarray(maze)
    if array.dtype.kind == "U":
        if array.size and np.char.str_len(array).max() != 1:
            raise DatasetError("a char grid must hold one character per cell")
        text = "".join(array.ravel().tolist())
        return tokens_to_grid(string_to_tokens(text), shape or (array.shape if array.ndim == 2 else None))
    return tokens_to_grid(array, shape)


def _is_text(grid) -> bool:
    """A maze string, a list of row strings or a char grid (as opposed to token ids)."""
    if isinstance(grid, str) or (isinstance(grid, np.ndarray) and grid.dtype.kind == "U"):
        return True
    return isinstance(grid, (list, tuple)) and bool(grid) and all(isinstance(row, str) for row in grid)


def decode(grid, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Token grid (or anything :func:`encode` takes) -> ``(H, W)`` char grid (numpy array of 1-char strings)."""
    return _ID_TO_CHAR[encode(grid, shape)]


def maze_to_string(grid, shape: tuple[int, int] | None = None) -> str:
    """Token grid or char grid -> the row-major string of the official CSV."""
    return "".join(decode(grid, shape).ravel().tolist())


def render(grid, shape: tuple[int, int] | None = None) -> str:
    """Text picture of a token grid, token array or maze text, for debugging: one line per row, ``#`` wall,
    ``.`` free, ``S``, ``G``, ``o`` path, ``?`` for any other token (PAD or a model's stray id), so a raw model
    output renders too."""
    array = encode(grid, shape) if _is_text(grid) else np.asarray(grid)
    if shape is not None or array.ndim != 2:
        array = array.reshape(shape or (_square_side(array.size),) * 2)
    ids = np.where((array >= WALL) & (array <= PATH), array, PAD).astype(np.intp)
    return "\n".join("".join(_RENDER_CHARS[i] for i in row) for row in ids)


def _check_maze(grid: np.ndarray, what: str = "maze") -> np.ndarray:
    """A token grid with only '#', ' ', 'S', 'G' and exactly one S and one G."""
    if (grid == PATH).any():
        raise DatasetError(f"{what} contains path cells 'o'; a maze holds only '#', ' ', 'S', 'G'")
    starts, goals = int((grid == START).sum()), int((grid == GOAL).sum())
    if starts != 1 or goals != 1:
        raise DatasetError(f"{what} must contain exactly one S and one G, found {starts} S and {goals} G")
    return grid


def as_maze(maze) -> np.ndarray:
    """:func:`encode` plus the checks of a maze: no ``o`` cells, exactly one S and one G."""
    return _check_maze(encode(maze))
