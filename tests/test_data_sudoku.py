"""Sudoku data module: solver, rating, generator, official encoding/augmentation, loaders and the builder."""

import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from reasonlens.cli.data import app as data_app
from reasonlens.hrm.data.format import DatasetError, load_identifiers, load_split
from reasonlens.hrm.data.sudoku import (
    BANK_LEVELS,
    SudokuBuildConfig,
    apply_transform,
    build_sudoku_dataset,
    decode_board,
    encode_board,
    load_bank,
    load_puzzle_file,
    random_transform,
    shuffle_sudoku,
    symmetry_key,
)
from reasonlens.hrm.data.sudoku_solver import (
    box_shape,
    candidates,
    count_solutions,
    difficulty_bucket,
    find_conflict,
    generate_puzzle,
    is_valid_solution,
    rate,
    solve,
)
from reasonlens.utils.config import ConfigError
from reasonlens.utils.paths import data_root

SIZES = (4, 6, 9)


def board_from(text: str) -> np.ndarray:
    size = {16: 4, 36: 6, 81: 9}[len(text)]
    return np.array([0 if ch in ".0" else int(ch) for ch in text]).reshape(size, size)


def text_of(board) -> str:
    return "".join(str(v) if v else "." for v in np.asarray(board).reshape(-1))


@pytest.fixture(scope="module")
def easy_bank():
    return load_bank("se_easy")


# ---------------------------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("bad_size", [3, 5, 8, 16])
def test_other_sizes_are_refused_with_the_allowed_ones_named(bad_size):
    for call in (lambda: box_shape(bad_size), lambda: generate_puzzle(bad_size, 0)):
        with pytest.raises(ValueError, match=r"Sudoku size must be 4, 6 or 9 \(boxes 2×2, 2×3, 3×3\)"):
            call()
    with pytest.raises(ConfigError, match="Sudoku size must be 4, 6 or 9"):
        SudokuBuildConfig.from_dict(dict(out_dir="x", size=bad_size, train_size=1, test_size=1))


def test_encode_decode_roundtrip_and_token_values():
    board = board_from(".1.2.4...3...2....3.4......56......2")
    tokens = encode_board(board)
    assert tokens.dtype == np.uint8 and tokens.shape == (36,)
    assert tokens[0] == 1 and tokens[1] == 2 and tokens.max() == 7  # blank 1, digit d -> d + 1
    assert np.array_equal(decode_board(tokens, 6), board)
    with pytest.raises(ValueError, match="0 is PAD"):
        decode_board(np.zeros(36, dtype=np.uint8), 6)
    with pytest.raises(ValueError, match="has 36 tokens, got 81"):
        decode_board(np.ones(81), 6)


def test_is_valid_solution(easy_bank):
    solution = easy_bank[1][0]
    assert is_valid_solution(solution)
    swapped = solution.copy()
    swapped[0, [0, 1]] = swapped[0, [1, 0]]  # rows still hold 1..9, two columns do not
    assert not is_valid_solution(swapped)
    blanked = solution.copy()
    blanked[4, 4] = 0
    assert not is_valid_solution(blanked)
    with pytest.raises(ValueError, match="cells must be 0"):
        is_valid_solution(solution + 1)


# ---------------------------------------------------------------------------------------------- solver


def test_solver_matches_the_shipped_solutions_of_every_bank():
    for level in BANK_LEVELS:
        puzzles, solutions = load_bank(level)
        count = 3 if "forum" in level else 10
        for puzzle, solution in zip(puzzles[:count], solutions[:count]):
            result = solve(puzzle, limit=2)
            assert result.num_solutions == 1
            assert np.array_equal(result.solution, solution)


def test_hardest_bank_puzzle_takes_a_fixed_search_effort():
    """The solver's work on the bank's hardest puzzle is deterministic and pinned: more guesses would mean weaker
    propagation or a worse branch order (its speed is measured in benchmarks/, not here)."""
    puzzles, solutions = load_bank("tdoku_forum_hardest_1106")
    result = solve(puzzles[255], limit=2)  # line 256: the most backtracks of the bank
    assert np.array_equal(result.solution, solutions[255]) and result.num_solutions == 1
    assert (result.backtracks, result.guesses) == (3738, 3742)
    again = solve(puzzles[255], limit=2)
    assert (again.backtracks, again.guesses) == (result.backtracks, result.guesses)


def test_multi_solution_board(easy_bank):
    # a "deadly rectangle": rows 1 and 3 (one band), columns 1 and 5 (two stacks) hold a b / b a in the
    # solution, so blanking those four cells of the full grid leaves exactly two solutions
    solution = easy_bank[1][0]
    assert solution[0, 0] == solution[2, 4] and solution[0, 4] == solution[2, 0]
    board = solution.copy()
    board[np.ix_([0, 2], [0, 4])] = 0
    result = solve(board, limit=5)
    assert result.num_solutions == 2
    assert all(is_valid_solution(s) and np.all((board == 0) | (board == s)) for s in result.solutions)
    assert not np.array_equal(result.solutions[0], result.solutions[1])
    assert count_solutions(board, limit=2) == 2 and count_solutions(np.zeros((4, 4), int), limit=10) == 10
    with pytest.raises(ValueError, match="more than one solution"):
        rate(board)


def test_unsolvable_board_without_clashing_givens():
    # row 1 is 1 2 _ _ ; column 3 holds 3 and 4 further down, so cell (1, 3) has no digit left
    board = board_from("12..." + "..." + "..3." + "..4.")
    assert find_conflict(board) is None
    assert solve(board, limit=2).num_solutions == 0
    assert candidates(board) is None
    clash = board_from("1..1" + "." * 12)
    assert find_conflict(clash) == "digit 1 appears twice in row 1"
    assert solve(clash).num_solutions == 0


def test_backtracks_on_a_hand_checkable_puzzle():
    puzzle = board_from(".1.2.4...3...2....3.4......56......2")
    masks = candidates(puzzle)
    digits = [[{d + 1 for d in range(6) if m >> d & 1} for m in row] for row in masks]
    # singles stall; the first cell with the fewest candidates (two) is row 2, column 2: {4, 5}
    assert any(len(c) > 1 for row in digits for c in row)
    first_pair = next((r, c) for r in range(6) for c in range(6) if len(digits[r][c]) == 2)
    assert first_pair == (1, 1) and digits[1][1] == {4, 5}
    with_five, with_four = puzzle.copy(), puzzle.copy()
    with_five[1, 1], with_four[1, 1] = 5, 4
    assert candidates(with_five) is None  # 5 dies by singles alone: one wrong guess
    assert all(bin(m).count("1") == 1 for m in candidates(with_four).reshape(-1))  # 4 solves it by singles
    result = solve(puzzle, limit=2)
    assert (result.num_solutions, result.guesses, result.backtracks) == (1, 2, 1)
    assert rate(puzzle) == 1 and difficulty_bucket(1) == "moderate"


def test_rating_is_zero_exactly_when_singles_solve_and_ignores_digit_names():
    easy_puzzles, _ = load_bank("se_easy")
    assert all(rate(p) == 0 for p in easy_puzzles[:30])
    hard_puzzles, _ = load_bank("se_hard")
    rng = np.random.default_rng(0)
    for puzzle in hard_puzzles[:15]:
        stalled = candidates(puzzle)
        assert any(bin(m).count("1") > 1 for m in stalled.reshape(-1))
        relabelled = np.pad(rng.permutation(np.arange(1, 10)), (1, 0))[puzzle]
        assert rate(puzzle) >= 1 and rate(relabelled) == rate(puzzle)


def test_difficulty_buckets():
    assert [difficulty_bucket(b) for b in (0, 1, 19, 20, 5000)] == ["easy", "moderate", "moderate", "hard", "hard"]
    with pytest.raises(ValueError):
        difficulty_bucket(-1)


# ---------------------------------------------------------------------------------------------- generator


@pytest.mark.parametrize(("size", "count"), [(4, 20), (6, 10), (9, 4)])
def test_generated_puzzles_have_exactly_one_solution_and_are_minimal(size, count):
    rng = np.random.default_rng(size)
    for _ in range(count):
        puzzle, solution, backtracks = generate_puzzle(size, rng)
        assert puzzle.shape == (size, size) and is_valid_solution(solution)
        assert np.all((puzzle == 0) | (puzzle == solution))
        result = solve(puzzle, limit=2)
        assert result.num_solutions == 1 and np.array_equal(result.solution, solution)
        assert backtracks == result.backtracks
        for cell in np.flatnonzero(puzzle)[:12]:  # no given can be removed
            weaker = puzzle.copy().reshape(-1)
            weaker[cell] = 0
            assert count_solutions(weaker.reshape(size, size), limit=2) == 2


def test_generator_is_seeded():
    for size in SIZES:
        first, again, other = generate_puzzle(size, 7), generate_puzzle(size, 7), generate_puzzle(size, 8)
        assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
        assert not np.array_equal(first[0], other[0])


def test_generator_target_clues_and_difficulty():
    puzzle, solution, _ = generate_puzzle(9, 3, target_clues=35)
    assert np.count_nonzero(puzzle) == 35 and count_solutions(puzzle) == 1
    puzzle, _, backtracks = generate_puzzle(9, 4, difficulty="moderate")
    assert 1 <= backtracks <= 19 and rate(puzzle) == backtracks
    with pytest.raises(ValueError, match="no 4×4 puzzle of difficulty"):
        generate_puzzle(4, 0, difficulty="hard", max_tries=20)
    with pytest.raises(ValueError, match="difficulty must be one or more of easy, moderate, hard"):
        generate_puzzle(4, 0, difficulty="medium")


# ---------------------------------------------------------------------------------------------- augmentation


def official_shuffle_sudoku(board, solution, rng):
    """sapientinc/HRM dataset/build_sudoku_dataset.py::shuffle_sudoku, with np.random.X replaced by rng.X."""
    digit_map = np.pad(rng.permutation(np.arange(1, 10)), (1, 0))
    transpose_flag = rng.random() < 0.5
    bands = rng.permutation(3)
    row_perm = np.concatenate([b * 3 + rng.permutation(3) for b in bands])
    stacks = rng.permutation(3)
    col_perm = np.concatenate([s * 3 + rng.permutation(3) for s in stacks])
    mapping = np.array([row_perm[i // 9] * 9 + col_perm[i % 9] for i in range(81)])

    def apply_transformation(x):
        if transpose_flag:
            x = x.T
        new_board = x.flatten()[mapping].reshape(9, 9).copy()
        return digit_map[new_board]

    return apply_transformation(board), apply_transformation(solution)


def test_9x9_augmentation_is_the_official_one(easy_bank):
    puzzles, solutions = easy_bank
    for seed in range(30):
        ours = shuffle_sudoku(puzzles[seed], solutions[seed], np.random.default_rng(seed))
        official = official_shuffle_sudoku(puzzles[seed], solutions[seed], np.random.default_rng(seed))
        assert np.array_equal(ours[0], official[0]) and np.array_equal(ours[1], official[1])


def positions_only(transform):
    return dataclasses.replace(transform, digit_map=np.arange(len(transform.digit_map)))


@pytest.mark.parametrize("size", SIZES)
def test_transform_family_preserves_rows_columns_and_boxes(size):
    box_rows, box_cols = box_shape(size)
    rows, cols = np.indices((size, size))
    box_id = (rows // box_rows) * (size // box_cols) + cols // box_cols
    rng = np.random.default_rng(size)
    transposes = 0
    for _ in range(200):
        transform = random_transform(size, rng)
        transposes += transform.transpose
        assert sorted(transform.digit_map) == list(range(size + 1)) and transform.digit_map[0] == 0
        assert sorted(transform.row_perm) == list(range(size)) and sorted(transform.col_perm) == list(range(size))
        # bands go to bands and stacks to stacks
        assert all(len(set(band // box_rows)) == 1 for band in transform.row_perm.reshape(-1, box_rows))
        assert all(len(set(stack // box_cols)) == 1 for stack in transform.col_perm.reshape(-1, box_cols))
        moved_boxes = apply_transform(box_id, positions_only(transform))
        new_boxes = moved_boxes.reshape(size // box_rows, box_rows, size // box_cols, box_cols).transpose(0, 2, 1, 3)
        assert all(len(np.unique(box)) == 1 for box in new_boxes.reshape(size, -1))
        assert len(np.unique(moved_boxes)) == size
    if size == 6:
        assert transposes == 0  # a transpose would turn 2×3 boxes into 3×2
    else:
        assert 60 < transposes < 140


@pytest.mark.parametrize("size", SIZES)
def test_augmented_pairs_stay_consistent(size):
    rng = np.random.default_rng(100 + size)
    puzzle, solution, _ = generate_puzzle(size, rng)
    for _ in range(20):
        transform = random_transform(size, rng)
        new_puzzle, new_solution = apply_transform(puzzle, transform), apply_transform(solution, transform)
        assert is_valid_solution(new_solution) and np.all((new_puzzle == 0) | (new_puzzle == new_solution))
        assert count_solutions(new_puzzle) == 1
        moved = apply_transform(solution, positions_only(transform))
        relabel = {}
        for old, new in zip(moved.reshape(-1), new_solution.reshape(-1)):
            assert relabel.setdefault(int(old), int(new)) == new  # one new name per digit, everywhere
        assert sorted(relabel.values()) == list(range(1, size + 1))
        assert np.array_equal(apply_transform(puzzle, positions_only(transform)) == 0, new_puzzle == 0)
    aug_puzzle, aug_solution = shuffle_sudoku(puzzle, solution, np.random.default_rng(1))
    assert np.count_nonzero(aug_puzzle) == np.count_nonzero(puzzle) and is_valid_solution(aug_solution)


# ---------------------------------------------------------------------------------------------- loaders


def write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_load_bank_shapes(easy_bank):
    puzzles, solutions = easy_bank
    assert puzzles.shape == solutions.shape == (500, 9, 9) and puzzles.dtype == np.uint8
    assert text_of(puzzles[0]) == (data_root() / "sudoku" / "se_easy.puzzles.txt").read_text().split()[0]
    with pytest.raises(DatasetError, match="unknown Sudoku bank 'se_nightmare'; the banks are: se_easy"):
        load_bank("se_nightmare")


def short_line(text):
    return text[:80]


def x_first(text):
    return "x" + text[1:]


def zero_first(text):
    return "0" + text[1:]


@pytest.mark.parametrize(
    ("which", "line", "edit", "fragments"),
    [
        ("puzzles", 1, short_line, ["se_easy.puzzles.txt:2:", "80 characters, expected 81"]),
        ("puzzles", 1, x_first, ["puzzles.txt:2:", "invalid character 'x' at position 1"]),
        ("solutions", 2, zero_first, ["solutions.txt:3:", "invalid character '0'", "digits 1..9"]),
        ("solutions", 2, None, ["has 3 lines but", "has 2"]),
    ],
)
def test_load_bank_names_file_and_line(tmp_path, which, line, edit, fragments):
    root = data_root() / "sudoku"
    files = {name: (root / f"se_easy.{name}.txt").read_text().split()[:3] for name in ("puzzles", "solutions")}
    if edit is None:
        del files[which][line]
    else:
        files[which][line] = edit(files[which][line])
    for name, lines in files.items():
        write(tmp_path, f"se_easy.{name}.txt", lines)
    with pytest.raises(DatasetError) as info:
        load_bank("se_easy", root=tmp_path)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_load_bank_checks_solutions_against_givens(tmp_path, easy_bank):
    puzzles, solutions = easy_bank
    bad = solutions[1].copy()
    bad[0] = np.roll(bad[0], 1)  # row 1 still holds 1..9, but its columns and boxes break
    write(tmp_path, "se_easy.puzzles.txt", [text_of(puzzles[0]), text_of(puzzles[1])])
    write(tmp_path, "se_easy.solutions.txt", [text_of(solutions[0]), text_of(bad)])
    with pytest.raises(DatasetError, match=r"se_easy.solutions.txt:2: the solution is not a valid Sudoku grid: digit"):
        load_bank("se_easy", root=tmp_path)
    relabelled = np.array([0, 2, 1, 3, 4, 5, 6, 7, 8, 9])[solutions[1]]  # a valid grid, but not this puzzle's
    assert np.any(np.isin(puzzles[1], [1, 2]))
    write(tmp_path, "se_easy.solutions.txt", [text_of(solutions[0]), text_of(relabelled)])
    with pytest.raises(
        DatasetError, match=r"solutions.txt:2: the solution does not match the givens: row \d, column \d"
    ):
        load_bank("se_easy", root=tmp_path)


PUZZLE_4, SOLUTION_4 = ".2.1.3.........4", "4231134224133124"  # unique (checked in test_user_file_formats)


def test_user_file_formats(tmp_path, easy_bank):
    puzzles, solutions = easy_bank
    csv_path = write(
        tmp_path,
        "train.csv",
        ["source,q,a,rating"]
        + [f"bank,{text_of(p)},{''.join(map(str, s.reshape(-1)))},0" for p, s in zip(puzzles[:3], solutions[:3])],
    )
    got_puzzles, got_solutions, backtracks = load_puzzle_file(csv_path)
    assert np.array_equal(got_puzzles, puzzles[:3]) and np.array_equal(got_solutions, solutions[:3])
    assert backtracks.tolist() == [0, 0, 0]
    bom_csv = tmp_path / "bom.csv"
    bom_csv.write_bytes(b"\xef\xbb\xbf" + csv_path.read_bytes())  # a spreadsheet's byte-order mark
    assert np.array_equal(load_puzzle_file(bom_csv)[0], puzzles[:3])
    puzzle, solution = PUZZLE_4, SOLUTION_4
    plain = write(tmp_path, "plain.txt", ["# a comment", puzzle.replace(".", "0"), "", f"{puzzle},{solution}"])
    got_puzzles, got_solutions, _ = load_puzzle_file(plain)
    assert count_solutions(board_from(puzzle), limit=2) == 1
    assert got_puzzles.shape == (2, 4, 4) and text_of(got_puzzles[0]) == puzzle
    assert "".join(map(str, got_solutions[0].reshape(-1))) == solution  # solved when no solution is given


WRONG_SOLUTION_4 = SOLUTION_4.translate(str.maketrans("12", "21"))  # a valid grid, not this puzzle's
BROKEN_SOLUTION_4 = SOLUTION_4[1] + SOLUTION_4[0] + SOLUTION_4[2:]  # columns 1 and 2 break
BAD_FILE_CASES = {
    "length": ([PUZZLE_4, PUZZLE_4[:15]], ["f.txt:2:", "15 characters, expected 16 for a 4×4 board"]),
    "size": ([PUZZLE_4 + "."], ["f.txt:1:", "17 characters; a Sudoku line has 16 (4×4), 36 (6×6) or 81 (9×9)"]),
    "character": (["x" * 16], ["f.txt:1:", "invalid character 'x' at position 1 of the puzzle", "'.' or '0' for a"]),
    "digit": (["7" + PUZZLE_4[1:]], ["f.txt:1:", "digit 7 at position 1", "not allowed in a 4×4 Sudoku (digits 1..4)"]),
    "clash": (["11" + "." * 14], ["f.txt:1:", "the givens break the rules: digit 1 appears twice in row 1"]),
    "unsolvable": (["12......" + "..3...4."], ["f.txt:1:", "the puzzle has no solution"]),
    "several": (["." * 16], ["f.txt:1:", "more than one solution"]),
    "mismatch": ([f"{PUZZLE_4},{WRONG_SOLUTION_4}"], ["f.txt:1:", "the solution does not match the givens: row 1"]),
    "invalid": ([f"{PUZZLE_4},{BROKEN_SOLUTION_4}"], ["f.txt:1:", "the solution is not a valid Sudoku grid"]),
    "fields": ([f"{PUZZLE_4},{SOLUTION_4},9"], ["f.txt:1:", "expected 'puzzle' or 'puzzle,solution', got 3"]),
    "csv": (["source,q,a,rating", f"x,{PUZZLE_4}"], ["f.txt:2:", "expected 4 comma-separated fields"]),
    "empty": (["# only a comment"], ["holds no puzzles"]),
}


@pytest.mark.parametrize("case", BAD_FILE_CASES)
def test_user_file_errors_name_file_line_and_problem(tmp_path, case):
    lines, fragments = BAD_FILE_CASES[case]
    path = write(tmp_path, "f.txt", lines)
    with pytest.raises(DatasetError) as info:
        load_puzzle_file(path)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match=r"nope.csv not found"):
        load_puzzle_file(tmp_path / "nope.csv")


LINE_ALPHABET = ".0123456789,#abx \t\x00é"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    header=st.booleans(),
    lines=st.lists(
        st.one_of(
            st.text(alphabet=LINE_ALPHABET, max_size=40),
            st.text(alphabet=".1234", min_size=16, max_size=16),
            st.text(alphabet=".123456789", min_size=81, max_size=81),
        ),
        max_size=4,
    ),
    raw=st.binary(max_size=20),
)
def test_loader_raises_only_dataset_errors_on_arbitrary_lines(header, lines, raw):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "puzzles.txt"
        text = "\n".join((["source,q,a,rating"] if header else []) + lines).encode("utf-8")
        path.write_bytes(text + raw)
        try:
            puzzles, solutions, _ = load_puzzle_file(path)
        except DatasetError:
            return
        assert all(is_valid_solution(s) for s in solutions) and np.all((puzzles == 0) | (puzzles == solutions))


# ---------------------------------------------------------------------------------------------- builder


def build(tmp_path, name="ds", **fields):
    return build_sudoku_dataset(dict(out_dir=tmp_path / name, **fields))


@pytest.mark.parametrize("size", SIZES)
def test_generated_dataset_loads_back_with_the_official_metadata(tmp_path, size):
    folder = build(tmp_path, source="generate", size=size, train_size=4, test_size=2, seed=1)
    assert load_identifiers(folder) == ["<blank>"]
    for split, count in (("train", 4), ("test", 2)):
        metadata, arrays = load_split(folder, split)
        assert metadata.vocab_size == size + 2 and metadata.seq_len == size * size
        assert (metadata.pad_id, metadata.ignore_label_id, metadata.blank_identifier_id) == (0, 0, 0)
        assert metadata.num_puzzle_identifiers == 1 and metadata.mean_puzzle_examples == 1
        assert metadata.total_groups == count and metadata.sets == ["all"]
        assert arrays.inputs.dtype == np.uint8 and arrays.labels.dtype == np.uint8
        assert np.all(arrays.puzzle_identifiers == 0)
        for tokens, label in zip(arrays.inputs, arrays.labels):
            puzzle, solution = decode_board(tokens, size), decode_board(label, size)
            assert count_solutions(puzzle) == 1 and is_valid_solution(solution)
            assert np.array_equal(solve(puzzle).solution, solution)
    info = json.loads((folder / "build.json").read_text())
    assert info["splits"]["train"]["groups"] == 4 and info["vocab_size"] == size + 2
    assert "out_dir" not in info["config"] and info["config"]["size"] == size


def test_bank_dataset_has_the_official_9x9_values_and_groups_with_num_aug(tmp_path, easy_bank):
    folder = build(tmp_path, source="se_easy", train_size=6, test_size=3, num_aug=4, seed=0)
    metadata, train = load_split(folder, "train")
    assert (metadata.vocab_size, metadata.seq_len, metadata.total_groups) == (11, 81, 6)
    assert train.group_indices.tolist() == [0, 5, 10, 15, 20, 25, 30]
    assert train.puzzle_indices.tolist() == list(range(31)) and train.num_examples == 30
    bank_texts = {text_of(p) for p in easy_bank[0]}
    for group in range(6):
        members = range(train.group_indices[group], train.group_indices[group + 1])
        boards = [decode_board(train.inputs[m], 9) for m in members]
        answers = [decode_board(train.labels[m], 9) for m in members]
        assert text_of(boards[0]) in bank_texts  # the original comes first
        assert len({np.count_nonzero(b) for b in boards}) == 1
        assert len({text_of(b) for b in boards}) == 5
        for board, answer in zip(boards, answers):
            assert is_valid_solution(answer) and np.all((board == 0) | (board == answer))
    test_metadata, test = load_split(folder, "test")
    assert test.group_indices.tolist() == [0, 1, 2, 3] and test_metadata.total_groups == 3  # never augmented
    assert all(text_of(decode_board(t, 9)) in bank_texts for t in test.inputs)


def file_bytes(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    fields = dict(source="generate", size=6, train_size=5, test_size=2, num_aug=2)
    first = file_bytes(build(tmp_path, "a", seed=3, **fields))
    again = file_bytes(build(tmp_path, "b", seed=3, **fields))
    other = file_bytes(build(tmp_path, "c", seed=4, **fields))
    assert first == again and "build.json" in first and "train/all__inputs.npy" in first
    assert first["train/all__inputs.npy"] != other["train/all__inputs.npy"]
    banks = dict(source="se_medium", train_size=5, test_fraction=0.1, num_aug=1)
    assert file_bytes(build(tmp_path, "d", seed=1, **banks)) == file_bytes(build(tmp_path, "e", seed=1, **banks))


def split_texts(folder, split, size=9):
    _, arrays = load_split(folder, split)
    return [text_of(decode_board(t, size)) for t in arrays.inputs]


def test_train_and_test_are_disjoint(tmp_path):
    folder = build(tmp_path, source="se_easy", test_fraction=0.2, seed=5)
    train, test = split_texts(folder, "train"), split_texts(folder, "test")
    assert (len(train), len(test)) == (400, 100) and not set(train) & set(test)
    assert len(set(train)) == 400
    # a held-out test file: its puzzles never reach train, even those the test split does not draw
    rng = np.random.default_rng(0)
    pairs = [generate_puzzle(6, rng)[:2] for _ in range(12)]
    assert len({text_of(p) for p, _ in pairs}) == 12
    lines = [f"{text_of(p)},{''.join(map(str, s.reshape(-1)))}" for p, s in pairs]
    train_file = write(tmp_path, "train.txt", lines)
    test_file = write(tmp_path, "test.txt", lines[8:])
    folder = build(tmp_path, "f", source="file", train_file=train_file, test_file=test_file, test_size=2, seed=0)
    train, test = split_texts(folder, "train", 6), split_texts(folder, "test", 6)
    assert sorted(train) == sorted(text_of(p) for p, _ in pairs[:8])
    assert len(test) == 2 and set(test) <= {text_of(p) for p, _ in pairs[8:]}


@pytest.mark.parametrize("size", [4, 6, 9])
def test_symmetry_key_is_shared_by_every_augmented_copy_and_separates_puzzles(size):
    rng = np.random.default_rng(size)
    pairs = [generate_puzzle(size, rng)[:2] for _ in range(40)]
    for puzzle, solution in pairs[:10]:
        for _ in range(5):
            assert symmetry_key(shuffle_sudoku(puzzle, solution, rng)[0]) == symmetry_key(puzzle)
    if size == 9:  # different 9×9 puzzles (almost always) get different keys: the check keeps little out
        keys = {symmetry_key(p) for p, _ in pairs}
        assert len(keys) == len(pairs)
        bank = load_bank("se_easy")[0]
        assert len({symmetry_key(p) for p in bank}) >= 0.99 * len(bank)


def test_train_keeps_out_puzzles_equivalent_to_a_test_puzzle(tmp_path):
    rng = np.random.default_rng(3)
    pairs = [generate_puzzle(9, rng, target_clues=30)[:2] for _ in range(10)]
    disguised = [shuffle_sudoku(p, s, rng) for p, s in pairs[:4]]  # the test puzzles, relabelled and permuted
    lines = [f"{text_of(p)},{''.join(map(str, s.reshape(-1)))}" for p, s in [*pairs, *disguised]]
    train_file = write(tmp_path, "train.txt", lines)
    test_file = write(tmp_path, "test.txt", lines[:4])
    folder = build(tmp_path, "f", source="file", train_file=train_file, test_file=test_file, seed=0)
    train = set(split_texts(folder, "train"))
    assert train == {text_of(p) for p, _ in pairs[4:]}  # neither the test puzzles nor their disguised copies
    info = json.loads((folder / "build.json").read_text())
    assert info["excluded_as_possibly_equivalent_to_test"] == 8


def test_held_out_bank_and_the_47_shared_forum_puzzles(tmp_path):
    small, _ = load_bank("tdoku_forum_hardest_1106")
    large, _ = load_bank("tdoku_forum_hardest_1905_11plus")
    shared = {p.tobytes() for p in small} & {p.tobytes() for p in large}
    assert len(shared) == 47
    folder = build(tmp_path, source="se_medium", test_source="se_easy", train_size=4, test_size=3, seed=2)
    assert set(split_texts(folder, "test")) <= {text_of(p) for p in load_bank("se_easy")[0]}
    assert set(split_texts(folder, "train")) <= {text_of(p) for p in load_bank("se_medium")[0]}
    info = json.loads((folder / "build.json").read_text())
    assert info["splits"]["test"]["sources"] == {"se_easy": 3} and info["splits"]["train"]["sources"] == {
        "se_medium": 4
    }


def test_difficulty_filter(tmp_path):
    folder = build(tmp_path, "m", source="se_medium", difficulty="moderate", train_size=5, test_size=3, seed=0)
    for split in ("train", "test"):
        assert all(rate(board_from(t)) >= 1 for t in split_texts(folder, split))
    info = json.loads((folder / "build.json").read_text())
    assert info["splits"]["train"]["difficulty"] == {"easy": 0, "moderate": 5, "hard": 0}
    assert info["splits"]["train"]["backtracks"]["min"] >= 1
    folder = build(tmp_path, "e", source="se_medium", max_backtracks=0, train_size=5, test_size=3, seed=0)
    assert all(rate(board_from(t)) == 0 for t in split_texts(folder, "train") + split_texts(folder, "test"))
    folder = build(tmp_path, "g", source="generate", size=9, difficulty=["moderate"], train_size=2, test_size=1)
    assert all(difficulty_bucket(rate(board_from(t))) == "moderate" for t in split_texts(folder, "train"))
    with pytest.raises(DatasetError, match="asked for 10 test puzzles but only 0"):
        build(tmp_path, "h", source="se_easy", difficulty="hard", test_size=10)
    assert not (tmp_path / "h").exists()


def test_subsample_size_caps_the_train_split_and_train_size_must_be_met(tmp_path):
    folder = build(tmp_path, source="se_easy", test_size=10, subsample_size=7, seed=0)
    assert len(split_texts(folder, "train")) == 7
    folder = build(tmp_path, "all", source="se_easy", test_size=10, subsample_size=5000, seed=0)
    assert len(split_texts(folder, "train")) == 490  # the official subsample keeps everything when asked for more
    with pytest.raises(DatasetError, match="asked for 1000 train puzzles but only 490 are available"):
        build(tmp_path, "big", source="se_easy", test_size=10, train_size=1000)
    with pytest.raises(DatasetError, match="generated 4×4 puzzles passed the difficulty filter"):
        build(tmp_path, "gen", source="generate", size=4, difficulty="hard", train_size=1, test_size=1)


def test_builder_fails_loudly_and_writes_nothing_on_a_bad_puzzle(tmp_path):
    puzzle, solution = PUZZLE_4, SOLUTION_4
    bad = write(tmp_path, "bad.txt", [f"{puzzle},{solution}", "." * 16])
    with pytest.raises(DatasetError, match="bad.txt:2: the puzzle has more than one solution"):
        build(tmp_path, source="file", train_file=bad, test_size=1)
    assert not (tmp_path / "ds").exists()


def test_builder_verifies_every_written_pair(tmp_path, monkeypatch):
    from reasonlens.hrm.data import sudoku

    def broken_shuffle(puzzle, solution, rng):
        solution = solution.copy()
        solution[0, [0, 1]] = solution[0, [1, 0]]
        return puzzle, solution

    monkeypatch.setattr(sudoku, "shuffle_sudoku", broken_shuffle)
    with pytest.raises(DatasetError, match="train puzzle 1 does not agree with a valid solution; nothing was written"):
        build(tmp_path, source="se_easy", train_size=2, test_size=1, num_aug=1)
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        (dict(source="kaggle"), "source ['kaggle'] unknown; allowed: generate, file, se_easy"),
        (dict(source=["se_easy", "nope"]), "source banks ['nope'] unknown"),
        (dict(source="generate", train_size=3), "source 'generate' needs train_size and test_size"),
        (dict(source="se_hard", size=4, test_size=1), "the banks are 9×9"),
        (dict(source="se_hard"), "say how to make the test split"),
        (dict(source="se_hard", test_source="se_hard"), "are both source and test_source"),
        (dict(source="se_hard", test_size=2, test_fraction=0.1), "cannot be combined with test_size"),
        (dict(source="se_hard", test_source="se_easy", test_fraction=0.1), "cannot be combined with test_size"),
        (dict(source=[]), "source banks [] unknown"),
        (dict(source="file", test_size=2), "source 'file' needs train_file"),
        (dict(source="se_hard", test_size=2, difficulty="medium"), "difficulty ['medium'] unknown"),
        (dict(source="se_hard", test_size=2, min_backtracks=5, max_backtracks=1), "is above max_backtracks"),
        (dict(source="generate", size=4, train_size=1, test_size=1, target_clues=20), "exceeds the 16 cells"),
        (dict(source="se_hard", test_size=2, num_aug=-1), "num_aug"),
        (dict(source="se_hard", test_size=2, trian_size=5), "unknown field"),
    ],
)
def test_bad_configs_name_the_problem(fields, fragment):
    with pytest.raises(ConfigError) as info:
        SudokuBuildConfig.from_dict(dict(out_dir="somewhere", **fields))
    assert fragment in str(info.value)


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_options_are_the_config_fields():
    """``reasonlens data sudoku`` is derived from SudokuBuildConfig: its parameters are the model's fields, in
    order, with their descriptions as help, so the two cannot drift."""
    command = typer.main.get_command(data_app).commands["sudoku"]
    assert [param.name for param in command.params] == list(SudokuBuildConfig.model_fields)
    for param, field in zip(command.params, SudokuBuildConfig.model_fields.values()):
        assert field.description and param.help.startswith(field.description), param.name


def test_cli_lists_take_commas_and_bad_values_name_the_field(tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        data_app,
        ["sudoku", str(tmp_path / "s"), "--source", "se_easy,se_medium", "--test-size", "2", "--train-size", "3"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "s" / "build.json").read_text())["config"]["source"] == ["se_easy", "se_medium"]
    result = runner.invoke(data_app, ["sudoku", str(tmp_path / "x"), "--size", "four"])
    assert result.exit_code == 2 and "size: Input should be a valid integer" in result.output
    assert not (tmp_path / "x").exists()


def test_4x4_splits_are_held_out_by_puzzle_and_the_demo_size_builds(tmp_path):
    """A 4×4 board's few givens share symmetry keys across most puzzles: holding out by key would starve the
    train split (the demo's 20,000 + 500 looped for millions of attempts), so 4×4 is held out by puzzle."""
    folder = build(tmp_path, "four", source="generate", size=4, train_size=3000, test_size=300, seed=0)
    train, test = set(split_texts(folder, "train", 4)), set(split_texts(folder, "test", 4))
    assert len(test) == 300 and not train & test
    assert json.loads((folder / "build.json").read_text())["excluded_as_possibly_equivalent_to_test"] == 0
