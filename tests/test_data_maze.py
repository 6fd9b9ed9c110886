"""Maze data (reasonlens.hrm.data.maze): encoding, the Lehnert-style generator, BFS shortest paths and their
tie-break against a brute-force search, the valid-optimal-path check, dihedral augmentation, the official
CSV format and the dataset builder."""

import contextlib
import itertools
import json
import math

import numpy as np
import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from reasonlens.cli.data import app as data_app
from reasonlens.hrm.data import maze
from reasonlens.hrm.data.format import (
    DatasetError,
    dihedral_transform,
    inverse_dihedral_transform,
    load_identifiers,
    load_split,
)
from reasonlens.hrm.data.maze import FREE, GOAL, PATH, START, WALL, batch_bfs, builder
from reasonlens.utils.config import ConfigError

# fmt: off
SMALL_MAZE = [
    "S #  ",
    "  # #",
    "#    ",
    "  ## ",
    "#   G",
]
# fmt: on
SMALL_SOLUTION = [  # the tie-broken label: down before right at S, down before right at (2, 1)
    "S #  ",
    "oo# #",
    "#o   ",
    " o## ",
    "#oooG",
]
MOVES = {(-1, 0): "0", (1, 0): "1", (0, -1): "2", (0, 1): "3"}  # up < down < left < right


def grid(rows):
    return maze.encode(rows)


def random_layout(rng, side):
    """A random square maze (not filtered: may be unsolvable) with one S and one G."""
    cells = side * side
    low, high = maze.wall_count_range(side, side)
    walls = int(rng.integers(low, high, endpoint=True))
    order = rng.permutation(cells)
    tokens = np.full(cells, FREE, np.uint8)
    tokens[order[:walls]] = WALL
    tokens[order[walls]], tokens[order[walls + 1]] = START, GOAL
    return tokens.reshape(side, side)


def brute_force_shortest_paths(tokens):
    """Every shortest S–G path, by iterative deepening over simple paths (no BFS anywhere)."""
    height, width = tokens.shape
    start = tuple(int(v) for v in np.argwhere(tokens == START)[0])
    goal = tuple(int(v) for v in np.argwhere(tokens == GOAL)[0])

    def extend(path, visited, budget, found):
        row, col = path[-1]
        if (row, col) == goal:
            found.append(list(path))
            return
        if abs(row - goal[0]) + abs(col - goal[1]) > budget:
            return
        for d_row, d_col in MOVES:
            nxt = (row + d_row, col + d_col)
            if 0 <= nxt[0] < height and 0 <= nxt[1] < width and tokens[nxt] != WALL and nxt not in visited:
                visited.add(nxt)
                path.append(nxt)
                extend(path, visited, budget - 1, found)
                path.pop()
                visited.discard(nxt)

    for moves in range(height * width):
        found = []
        extend([start], {start}, moves, found)
        if found:
            return found
    return []


def move_string(path):
    return "".join(MOVES[(b[0] - a[0], b[1] - a[1])] for a, b in itertools.pairwise(path))


def with_path(tokens, path):
    marked = tokens.copy()
    for cell in path[1:-1]:
        marked[cell] = PATH
    return marked


# ----------------------------------------------------------------------------------------------------------
# encoding


def test_official_token_ids_and_round_trips():
    assert maze.string_to_tokens("# SGo").tolist() == [1, 2, 3, 4, 5]
    assert maze.VOCAB_SIZE == 6 and maze.PAD == 0
    text = "".join(SMALL_MAZE)
    tokens = grid(SMALL_MAZE)
    assert tokens.shape == (5, 5) and tokens.dtype == np.uint8
    assert np.array_equal(maze.encode(text), tokens)
    assert np.array_equal(maze.tokens_to_grid(tokens.ravel()), tokens)
    assert maze.maze_to_string(tokens) == text
    chars = maze.decode(tokens)
    assert chars.shape == (5, 5) and "".join(chars[0]) == SMALL_MAZE[0]
    assert np.array_equal(maze.encode(chars), tokens)
    assert np.array_equal(maze.encode(text[:20], shape=(4, 5)), tokens[:4])


def test_encoding_errors_say_what_is_wrong():
    with pytest.raises(DatasetError, match=r"invalid character 'x' at position 3; allowed: '#' wall"):
        maze.string_to_tokens("S  xG")
    with pytest.raises(DatasetError, match="24 cells is not a square maze"):
        maze.encode("S" + " " * 22 + "G")
    with pytest.raises(DatasetError, match=r"token ids must lie in 1..5"):
        maze.tokens_to_grid(np.array([0, 1, 2, 3]))
    with pytest.raises(DatasetError, match="same length"):
        maze.encode(["S ", "  G"])
    with pytest.raises(DatasetError, match="one character per cell"):
        maze.encode(np.array([["S", "  "], ["G", " "]]))
    with pytest.raises(DatasetError, match="exactly one S and one G, found 2 S and 1 G"):
        maze.solve("SS G")
    with pytest.raises(DatasetError, match="contains path cells 'o'"):
        maze.path_length("SoG ")


def test_render_shows_every_cell_and_marks_unknown_tokens():
    picture = maze.render(grid(SMALL_SOLUTION))
    assert picture.splitlines() == ["S.#..", "oo#.#", "#o...", ".o##.", "#oooG"]
    assert maze.render(np.array([[0, 1], [7, 3]])) == "?#\n?S"
    assert maze.render("S  G") == "S.\n.G"


# ----------------------------------------------------------------------------------------------------------
# generator


def test_size_and_min_path_length_errors_name_the_allowed_range():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"maze sides must lie in \[5, 64\].*got 4×4"):
        maze.generate_maze(4, rng)
    with pytest.raises(ValueError, match=r"\[5, 64\].*got 5×65"):
        maze.generate_maze((5, 65), rng)
    with pytest.raises(ValueError, match="an int or a"):
        maze.generate_maze(True, rng)
    with pytest.raises(ValueError, match=r"min_path_length must lie in \[2, 46\] for a 8×8 maze"):
        maze.generate_maze(8, rng, min_path_length=47)
    with pytest.raises(ValueError, match=r"only 0 of 1 8×8 mazes .* after \d+ draws; lower min_path_length"):
        maze.generate_mazes(1, 8, rng, min_path_length=46, max_attempts=1)


@pytest.mark.parametrize(("size", "min_path_length"), [(5, None), (10, None), ((7, 12), None), (8, 20)])
def test_generator_follows_lehnert_walls_and_the_path_filter(size, min_path_length):
    mazes, solutions, stats = maze.generate_mazes(150, size, np.random.default_rng(1), min_path_length)
    height, width = maze.maze_shape(size)
    low, high = maze.wall_count_range(height, width)
    assert (low, high) == (height * width // 10 * 3, height * width // 10 * 5)
    assert mazes.shape == solutions.shape == (150, height, width)
    walls = (mazes == WALL).sum(axis=(1, 2))
    assert walls.min() >= low and walls.max() <= high
    assert walls.min() < low + (high - low) / 3 and walls.max() > high - (high - low) / 2
    assert ((mazes == START).sum(axis=(1, 2)) == 1).all() and ((mazes == GOAL).sum(axis=(1, 2)) == 1).all()
    minimum = min_path_length or max(height, width)
    lengths = [maze.path_length(m) for m in mazes]
    assert min(lengths) >= minimum and min(lengths) == minimum  # the filter bites, and only there
    for m, s in zip(mazes, solutions):
        assert np.array_equal(s, maze.solve(m))
    assert stats.accepted >= 150 and 0 < stats.acceptance_rate < 1


def test_oversampled_generator_matches_plain_rejection_sampling():
    """With M = 4 the mazes must follow the distribution of the plain procedure (draw walls, S and G; keep if
    long enough). Picking G uniformly among the far cells of each (walls, S) instead would shift the mean path
    length by about 0.5 here (measured), 9 standard errors."""
    side, min_length, count = 6, 12, 1000
    rng = np.random.default_rng(7)
    plain = []
    while len(plain) < count:
        candidate = random_layout(rng, side)
        length = maze.path_length(candidate)
        if length is not None and length >= min_length:
            plain.append(candidate)
    plain = np.stack(plain)
    ours, _, stats = maze.generate_mazes(count, side, np.random.default_rng(8), min_length, oversampling=4)
    assert 3 < stats.acceptance_rate / stats.plain_acceptance < 5
    for feature in (
        lambda ms: np.array([maze.path_length(m) for m in ms], float),
        lambda ms: (ms == WALL).sum(axis=(1, 2)).astype(float),
    ):
        a, b = feature(plain), feature(ours)
        standard_error = math.sqrt(a.var() / count + b.var() / count)
        assert abs(a.mean() - b.mean()) < 4 * standard_error


def test_generation_is_seeded_and_prefix_stable():
    first = maze.generate_mazes(12, 9, np.random.default_rng(3))
    again = maze.generate_mazes(12, 9, np.random.default_rng(3))
    fewer = maze.generate_mazes(5, 9, np.random.default_rng(3))
    other = maze.generate_mazes(12, 9, np.random.default_rng(4))
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert np.array_equal(first[0][:5], fewer[0])
    assert not np.array_equal(first[0], other[0])
    single, solution = maze.generate_maze(9, 3)
    assert np.array_equal(single, first[0][0]) and np.array_equal(solution, first[1][0])


def test_one_hard_30x30_maze():
    hard, solution = maze.generate_maze(30, np.random.default_rng(0), maze.HARD_MIN_PATH_LENGTH)
    assert hard.shape == (30, 30) and maze.path_length(hard) >= 111
    assert 270 <= (hard == WALL).sum() <= 450
    assert maze.is_valid_optimal_path(hard, solution) and (solution == PATH).sum() + 2 == maze.path_length(hard)
    assert maze.default_oversampling(30, 30, 111) == 4 and maze.default_oversampling(30, 30, 30) == 1


# ----------------------------------------------------------------------------------------------------------
# shortest paths, tie-break, validity


def test_bfs_is_optimal_and_the_tie_break_is_the_smallest_move_string():
    rng = np.random.default_rng(11)
    solvable = 0
    for index in range(60):
        tokens = random_layout(rng, 5 + index % 2)
        paths = brute_force_shortest_paths(tokens)
        assert maze.count_shortest_paths(tokens) == len(paths)
        if not paths:
            assert maze.path_length(tokens) is None and maze.shortest_path(tokens) is None
            with pytest.raises(DatasetError, match="no path from S to G"):
                maze.solve(tokens)
            continue
        solvable += 1
        assert maze.path_length(tokens) == len(paths[0])
        ours = maze.shortest_path(tokens)
        assert ours in paths
        assert move_string(ours) == min(move_string(p) for p in paths)
        assert np.array_equal(maze.solve(tokens), with_path(tokens, ours))
    assert 20 < solvable < 60


def test_tie_break_on_an_open_grid():
    open_grid = ["S    ", "     ", "     ", "     ", "    G"]
    assert maze.count_shortest_paths(open_grid) == 70  # C(8, 4)
    assert maze.maze_to_string(maze.solve(open_grid)) == "S    o    o    o    ooooG"  # down first, then right
    reverse = ["G    ", "     ", "     ", "     ", "    S"]
    assert maze.maze_to_string(maze.solve(reverse)) == "Goooo    o    o    o    S"  # up first, then left
    assert maze.TIE_BREAK.endswith("up, down, left, right")


def test_is_valid_optimal_path_accepts_every_shortest_path():
    rng = np.random.default_rng(5)
    checked = 0
    while checked < 25:
        tokens = random_layout(rng, 6)
        paths = brute_force_shortest_paths(tokens)
        if len(paths) < 2:
            continue
        checked += 1
        for path in paths:
            assert maze.is_valid_optimal_path(tokens, with_path(tokens, path))
            assert maze.is_valid_optimal_path(maze.maze_to_string(tokens), maze.maze_to_string(with_path(tokens, path)))
        labels = np.stack([with_path(tokens, path) for path in paths])
        assert maze.path_accuracy(np.stack([tokens] * len(paths)), labels, labels[::-1])["valid_optimal"] == 1.0


def test_is_valid_optimal_path_rejects_and_says_why():
    tokens, label = grid(SMALL_MAZE), grid(SMALL_SOLUTION)
    assert maze.count_shortest_paths(tokens) == 4 and maze.path_problem(tokens, label) is None
    gap = label.copy()
    gap[4, 2], gap[2, 2] = FREE, PATH  # still 7 marks, but broken
    extra = label.copy()
    extra[2, 2] = PATH
    missing = label.copy()
    missing[4, 2] = FREE
    through_wall = label.copy()
    through_wall[0, 2] = PATH
    moved_goal = label.copy()
    moved_goal[4, 4], moved_goal[3, 4] = FREE, GOAL
    padded = label.copy()
    padded[0, 4] = 0
    expected = {
        "gap": (gap, "the 'o' cells do not connect S to G"),
        "extra": (extra, "8 cells are marked 'o' but a shortest path has 7 between S and G"),
        "missing": (missing, "6 cells are marked 'o' but a shortest path has 7 between S and G"),
        "wall": (through_wall, "cell (0, 2) is 'o' but the maze has '#' (only free cells may become 'o')"),
        "goal": (moved_goal, "cell (3, 4) is 'G' but the maze has ' ' (only free cells may become 'o')"),
        "pad": (padded, "cell (0, 4) is token 0 but the maze has ' ' (only free cells may become 'o')"),
    }
    for name, (prediction, message) in expected.items():
        assert maze.path_problem(tokens, prediction) == message, name
        assert not maze.is_valid_optimal_path(tokens, prediction), name
    assert maze.path_problem(tokens, label.ravel()[:24]) == "the prediction has 24 cells but the maze has 25"
    assert maze.path_problem(tokens, "x" * 25).startswith("the prediction is not a maze grid: invalid character")
    assert maze.path_problem(tokens, SMALL_SOLUTION) is None  # row strings work too
    assert maze.path_problem(tokens, SMALL_SOLUTION[:4]) == (
        "the prediction is not a maze grid: 20 maze tokens do not fill a 5×5 grid"
    )
    assert "dtype float64" in maze.path_problem(tokens, label.astype(float))

    open_grid = grid(["S    ", "     ", "     ", "     ", "    G"])
    detour = grid(["So   ", "oo   ", "o    ", "o    ", "ooooG"])  # a connected path, 2 moves too long
    assert maze.path_problem(open_grid, detour) == "9 cells are marked 'o' but a shortest path has 7 between S and G"

    walled = tokens.copy()
    walled[3, 4] = walled[4, 3] = WALL
    assert maze.path_problem(walled, walled) == "the maze has no path from S to G"
    with pytest.raises(DatasetError, match="exactly one S and one G"):
        maze.is_valid_optimal_path("S   ", "S   ")


def test_batched_check_agrees_with_the_single_one():
    mazes, labels, _ = maze.generate_mazes(40, 7, np.random.default_rng(2))
    rng = np.random.default_rng(3)
    predictions = labels.astype(np.int64).copy()
    for prediction in predictions[10:]:  # keep 10 exact, perturb the rest
        for _ in range(int(rng.integers(1, 3))):
            row, col = rng.integers(0, 7, 2)
            prediction[row, col] = rng.choice([FREE, PATH, WALL, 0])
    single = np.array([maze.is_valid_optimal_path(m, p) for m, p in zip(mazes, predictions)])
    assert np.array_equal(batch_bfs._valid_optimal_batch(mazes, predictions), single)
    assert single[:10].all() and not single.all()
    scores = maze.path_accuracy(mazes.reshape(40, -1), labels.reshape(40, -1), predictions.reshape(40, -1))
    exact = (predictions == labels).all(axis=(1, 2)).mean()
    assert scores == {"exact": exact, "valid_optimal": single.mean()}


def test_exact_match_and_valid_optimal_differ_on_another_shortest_path():
    open_grid = grid(["S    ", "     ", "     ", "     ", "    G"])
    label = maze.solve(open_grid)
    other = maze.encode("Soooo    o    o    o    G")
    scores = maze.path_accuracy(open_grid[None], label[None], other[None])
    assert scores == {"exact": 0.0, "valid_optimal": 1.0}
    with pytest.raises(ValueError, match="share one non-empty shape"):
        maze.path_accuracy(open_grid[None], label[None], other)


def test_dihedral_augmentation_keeps_valid_optimal_labels():
    mazes, solutions, _ = maze.generate_mazes(10, 8, np.random.default_rng(9))
    for tokens, solution in zip(mazes, solutions):
        length = maze.path_length(tokens)
        for tid in range(8):
            moved, moved_label = dihedral_transform(tokens, tid), dihedral_transform(solution, tid)
            assert maze.is_valid_optimal_path(moved, moved_label)
            assert maze.path_length(moved) == length
            assert np.array_equal(inverse_dihedral_transform(moved, tid), tokens)
            assert np.array_equal(inverse_dihedral_transform(moved_label, tid), solution)


# ----------------------------------------------------------------------------------------------------------
# official CSV


def csv_text(*rows, header="source,q,a,rating"):
    return "\n".join([header, *(",".join(row) for row in rows)]) + "\n"


Q, A = "".join(SMALL_MAZE), "".join(SMALL_SOLUTION)


def replace(text, position, char):
    return text[:position] + char + text[position + 1 :]


def test_csv_reads_official_rows():
    mazes, solutions = maze.parse_maze_csv(csv_text(["hard", Q, A, "6"], ["hard", Q, A, "6"]))
    assert mazes.shape == (2, 5, 5) and np.array_equal(mazes[0], grid(SMALL_MAZE))
    assert np.array_equal(solutions[1], grid(SMALL_SOLUTION))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "f.csv: empty file"),
        ("source,q,a,rating\n", "f.csv: no mazes after the header"),
        (csv_text(["x", Q, A, "6"], header="src,q,a"), "f.csv:1: header is 'src,q,a', expected source,q,a,rating"),
        (csv_text(["x", Q, A]), "f.csv:2: expected 4 fields"),
        (csv_text(["x", Q[:24], A[:24], "6"]), "f.csv:2: q: 24 cells is not a square maze"),
        (csv_text(["x", Q, A[:24], "6"]), "f.csv:2: a has 24 characters but q has 25"),
        (csv_text(["x", replace(Q, 3, "x"), A, "6"]), "f.csv:2: q: invalid character 'x' at position 3"),
        (csv_text(["x", Q, replace(A, 7, "*"), "6"]), r"f.csv:2: a: invalid character '\*' at position 7"),
        (csv_text(["x", replace(Q, 1, "o"), A, "6"]), "f.csv:2: q contains path cells 'o'"),
        (csv_text(["x", replace(Q, 1, "S"), A, "6"]), "f.csv:2: q must contain exactly one S and one G, found 2 S"),
        (csv_text(["x", replace(Q, 24, " "), A, "6"]), "f.csv:2: q must .* found 1 S and 0 G"),
        (csv_text(["x", Q, A, "6"], ["y", "S" + " " * 34 + "G", "S" + " " * 34 + "G", "1"]), "f.csv:3: q is a 6×6"),
        (
            csv_text(["x", Q, A, "6"], ["y", Q, replace(A, 5, " "), "6"]),
            "f.csv:3: a is not a valid shortest path for q: 6 cells are marked 'o'",
        ),
        (
            csv_text(["x", Q, replace(A, 2, "o"), "6"], ["x", Q, Q, "6"]),
            r"f.csv:2: a is not a valid shortest path for q: cell \(0, 2\) is 'o' .*\(and 1 more rows\)",
        ),
        (
            csv_text(["x", replace(replace(Q, 23, "#"), 19, "#"), replace(replace(Q, 23, "#"), 19, "#"), "0"]),
            "f.csv:2: a is not a valid shortest path for q: the maze has no path from S to G",
        ),
    ],
)
def test_csv_errors_name_file_line_and_problem(text, message):
    with pytest.raises(DatasetError, match=message):
        maze.parse_maze_csv(text, "f.csv")


def test_csv_file_errors(tmp_path):
    with pytest.raises(DatasetError, match=r"nope.csv: maze CSV not found"):
        maze.read_maze_csv(tmp_path / "nope.csv")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"source,q,a,rating\n\xff\xfe")
    with pytest.raises(DatasetError, match="binary.csv: not UTF-8 text"):
        maze.read_maze_csv(binary)


def test_csv_write_read_round_trip(tmp_path):
    mazes, solutions, _ = maze.generate_mazes(6, 7, np.random.default_rng(4))
    path = maze.write_maze_csv(tmp_path / "sub" / "mazes.csv", mazes, solutions)
    lines = path.read_text().splitlines()
    assert lines[0] == "source,q,a,rating" and len(lines) == 7
    assert lines[1].endswith(f",{maze.path_length(mazes[0])}")
    back_mazes, back_solutions = maze.read_maze_csv(path)
    assert np.array_equal(back_mazes, mazes) and np.array_equal(back_solutions, solutions)
    assert [p.name for p in path.parent.iterdir()] == ["mazes.csv"]  # no temporary file left


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_parsers_raise_only_dataset_errors_on_arbitrary_text(text):
    for parse in (maze.parse_maze_csv, maze.string_to_tokens, maze.encode):
        with contextlib.suppress(DatasetError):
            parse(text)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.text(alphabet='# SGo,\n"', max_size=30), st.text(alphabet="# SGo", max_size=30)), max_size=3),
    st.lists(st.tuples(st.integers(0, 24), st.sampled_from("# SGox")), max_size=3),
)
def test_csv_parser_raises_only_dataset_errors_on_maze_like_rows(rows, edits):
    q, a = Q, A
    for position, char in edits:
        q, a = (replace(q, position, char), a) if position % 2 else (q, replace(a, position, char))
    text = csv_text(["x", q, a, "6"], *(["y", left, right, "1"] for left, right in rows))
    try:
        mazes, solutions = maze.parse_maze_csv(text)
    except DatasetError:
        return
    assert all(maze.is_valid_optimal_path(m, s) for m, s in zip(mazes, solutions))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-3, 300), min_size=25, max_size=25))
def test_validity_check_never_raises_on_model_output(values):
    prediction = np.array(values).reshape(5, 5)
    valid = maze.is_valid_optimal_path(grid(SMALL_MAZE), prediction)
    assert valid in (True, False)
    if valid:
        assert (prediction == PATH).sum() == 7


# ----------------------------------------------------------------------------------------------------------
# builder


def build(tmp_path, name, **fields):
    return maze.build_maze_dataset({"out_dir": tmp_path / name, "workers": 1, **fields})


def test_builder_writes_the_official_format(tmp_path):
    out = build(tmp_path, "maze", size=7, train_size=30, test_size=20, aug=True, seed=1)
    assert load_identifiers(out) == ["<blank>"]
    for split, groups, per_group in (("train", 30, 8), ("test", 20, 1)):
        metadata, arrays = load_split(out, split)
        assert metadata.model_dump() == {
            "pad_id": 0,
            "ignore_label_id": 0,
            "blank_identifier_id": 0,
            "vocab_size": 6,
            "seq_len": 49,
            "num_puzzle_identifiers": 1,
            "total_groups": groups,
            "mean_puzzle_examples": 1.0,
            "sets": ["all"],
        }
        assert arrays.inputs.dtype == arrays.labels.dtype == np.uint8
        assert arrays.inputs.shape == (groups * per_group, 49)
        assert arrays.group_indices.tolist() == list(range(0, groups * per_group + 1, per_group))
        assert arrays.puzzle_indices.tolist() == list(range(groups * per_group + 1))
        assert (arrays.puzzle_identifiers == 0).all()
        inputs, labels = arrays.inputs.reshape(-1, 7, 7), arrays.labels.reshape(-1, 7, 7)
        assert batch_bfs._valid_optimal_batch(inputs, labels).all()
        assert set(np.unique(arrays.inputs)) <= {1, 2, 3, 4} and PATH in arrays.labels
        for start in range(0, len(inputs), per_group):  # a group is a maze and its dihedral variants, in order
            for tid in range(per_group):
                assert np.array_equal(inputs[start + tid], dihedral_transform(inputs[start], tid))
                assert np.array_equal(labels[start + tid], dihedral_transform(labels[start], tid))
                assert np.array_equal(labels[start], maze.solve(inputs[start]))
    info = json.loads((out / "build.json").read_text())
    assert info["min_path_length"] == 7 and info["splits"]["train"]["path_length"]["min"] >= 7
    assert info["splits"]["train"]["groups"] == 30 and info["splits"]["train"]["examples"] == 240
    assert info["config"]["seed"] == 1 and "out_dir" not in info["config"]
    generation = info["generation"]
    assert 0 < generation["acceptance_rate"] < 1 and generation["accepted"] >= 50


def test_builder_is_reproducible_and_independent_of_workers(tmp_path):
    first = build(tmp_path, "a", size=6, train_size=120, test_size=60, seed=3)
    second = maze.build_maze_dataset(
        {"out_dir": tmp_path / "b", "size": 6, "train_size": 120, "test_size": 60, "seed": 3, "workers": 2}
    )
    other = build(tmp_path, "c", size=6, train_size=120, test_size=60, seed=4)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert len(files) == 2 * 6 + 3  # two splits of six files, identifiers, build record, ownership marker
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert (first / "train/all__inputs.npy").read_bytes() != (other / "train/all__inputs.npy").read_bytes()


def test_train_and_test_are_disjoint_up_to_symmetry(tmp_path):
    out = build(tmp_path, "small", size=5, train_size=150, test_size=150, min_path_length=15, seed=2)
    keys = {}
    for split in ("train", "test"):
        inputs = load_split(out, split)[1].inputs.reshape(-1, 5, 5)
        keys[split] = [builder._dihedral_key(m) for m in inputs]
        assert len(set(keys[split])) == len(keys[split])
    assert not set(keys["train"]) & set(keys["test"])
    info = json.loads((out / "build.json").read_text())
    assert info["generation"]["duplicates_dropped"] > 0  # this tiny space forces the deduplication to act
    assert info["splits"]["test"]["path_length"]["min"] >= 15


def test_builder_gives_up_when_too_few_distinct_mazes_exist(tmp_path, monkeypatch):
    one = maze.generate_mazes(1, 5, np.random.default_rng(0))

    def same_maze(job):
        count = job[-1]
        return np.repeat(one[0], count, 0), np.repeat(one[1], count, 0), maze.GenerationStats(count, count)

    monkeypatch.setattr(builder, "_generate_chunk", same_maze)
    with pytest.raises(DatasetError, match="found only 1 distinct 5×5 mazes .* too few such mazes exist"):
        build(tmp_path, "stuck", size=5, train_size=10, test_size=10)
    assert not (tmp_path / "stuck").exists()


def test_csv_source_rebuilds_the_generated_dataset(tmp_path):
    generated = build(tmp_path, "gen", size=7, train_size=25, test_size=15, aug=True, seed=5)
    train, test = load_split(generated, "train")[1], load_split(generated, "test")[1]
    maze.write_maze_csv(
        tmp_path / "train.csv", train.inputs[::8].reshape(-1, 7, 7), train.labels[::8].reshape(-1, 7, 7)
    )
    maze.write_maze_csv(tmp_path / "test.csv", test.inputs.reshape(-1, 7, 7), test.labels.reshape(-1, 7, 7))
    fields = dict(source="csv", train_csv=tmp_path / "train.csv", test_csv=tmp_path / "test.csv", aug=True)
    rebuilt = build(tmp_path, "csv", train_size=25, test_size=None, **fields)
    for split in ("train", "test"):
        (meta_a, a), (meta_b, b) = load_split(generated, split), load_split(rebuilt, split)
        assert meta_a == meta_b
        for field in ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices"):
            assert np.array_equal(getattr(a, field), getattr(b, field)), (split, field)
    info = json.loads((rebuilt / "build.json").read_text())
    assert info["csv"] == {"train_test_overlap": 0} and info["min_path_length"] is None

    subsample = build(tmp_path, "sub", train_size=10, test_size=None, seed=1, **fields)
    sub_inputs = load_split(subsample, "train")[1].inputs[::8]
    assert len(sub_inputs) == 10 and all(any((row == train.inputs[::8]).all(axis=1)) for row in sub_inputs)
    with pytest.raises(DatasetError, match="holds 25 mazes, fewer than train_size=26"):
        build(tmp_path, "big", train_size=26, test_size=None, **fields)
    with pytest.raises(DatasetError, match=r"the mazes are 7×7 but size=30"):
        build(tmp_path, "sized", size=30, train_size=None, test_size=None, **fields)


def test_config_defaults_and_errors(tmp_path):
    config = maze.MazeBuildConfig(out_dir=tmp_path / "x")
    assert (config.side, config.resolved_min_path_length, config.train_size, config.test_size) == (30, 111, 1000, 1000)
    assert config.aug is False and config.source == "generate"
    assert maze.MazeBuildConfig(out_dir=tmp_path / "x", size=20).resolved_min_path_length == 20
    bad = [
        ({"source": "csv"}, "source 'csv' needs train_csv and test_csv"),
        ({"train_csv": "t.csv"}, "train_csv are read only with source 'csv'"),
        ({"source": "csv", "train_csv": "a", "test_csv": "b", "min_path_length": 50}, "filters generated mazes only"),
        ({"size": 4}, r"maze sides must lie in \[5, 64\]"),
        ({"size": 8, "min_path_length": 60}, r"min_path_length must lie in \[2, 46\]"),
        ({"train_size": 0}, "train_size"),
        ({"test_size": None}, "needs train_size and test_size"),
        ({"sauce": "csv"}, "sauce"),
    ]
    for fields, message in bad:
        with pytest.raises(ConfigError, match=message):
            maze.build_maze_dataset({"out_dir": tmp_path / "x", **fields})
    (tmp_path / "exists").mkdir()
    with pytest.raises(DatasetError, match="already exists"):
        maze.build_maze_dataset({"out_dir": tmp_path / "exists", "size": 5, "train_size": 1, "test_size": 1})


def test_cli_options_are_the_config_fields():
    """``reasonlens data maze`` is derived from MazeBuildConfig: its parameters are the model's fields, in order,
    with their descriptions as help, so the two cannot drift."""
    command = typer.main.get_command(data_app).commands["maze"]
    assert [param.name for param in command.params] == list(maze.MazeBuildConfig.model_fields)
    for param, field in zip(command.params, maze.MazeBuildConfig.model_fields.values()):
        assert field.description and param.help.startswith(field.description), param.name
    result = CliRunner().invoke(data_app, ["maze", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "[generate|csv]" in result.output and "[default: 1000]" in result.output


def test_cli_builds_what_the_config_builds(tmp_path):
    fields = dict(size=6, train_size=4, test_size=2, min_path_length=7, aug=True, seed=3, workers=1)
    args = [
        f"--{key.replace('_', '-')}" if value is True else f"--{key.replace('_', '-')}={value}"
        for key, value in fields.items()
    ]
    result = CliRunner().invoke(data_app, ["maze", str(tmp_path / "cli"), *args])
    assert result.exit_code == 0, result.output
    direct = build(tmp_path, "direct", **fields)
    for path in direct.rglob("*.*"):
        assert path.read_bytes() == (tmp_path / "cli" / path.relative_to(direct)).read_bytes()
    result = CliRunner().invoke(data_app, ["maze", str(tmp_path / "x"), "--source", "zip"])
    assert result.exit_code == 2 and "source: Input should be 'generate' or 'csv'" in result.output
