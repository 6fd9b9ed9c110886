"""ARC data: the token layout and crop, the augmentation and its name-based inverse, dedup, the official
split logic and translation, identifiers, reproducibility, input validation (reasonlens.hrm.data.arc),
and the synthetic ARC families and builder (reasonlens.hrm.data.arc_synthetic)."""

import json

import numpy as np
import pytest
import typer
from pydantic import ValidationError
from typer.testing import CliRunner

from reasonlens.cli.data import app as data_app
from reasonlens.hrm.data.arc import (
    CONCEPT_ARC_GROUPS,
    ARCBuildConfig,
    augment_grid,
    augmentation_name,
    build_arc_dataset,
    crop_sizes,
    crop_tokens,
    draw_augmentations,
    grid_to_tokens,
    parse_augmentation_name,
    resolve_sources,
    unaugment_grid,
)
from reasonlens.hrm.data.arc_synthetic import (
    FAMILIES,
    SyntheticARCConfig,
    _enclosed,
    build_synthetic_arc_dataset,
    make_task,
)
from reasonlens.hrm.data.format import DatasetError, dihedral_transform, load_identifiers, load_split
from reasonlens.utils.paths import data_root

# ----------------------------------------------------------------------------------------------------
# helpers


def random_grid(rng, height, width, colours=10):
    return rng.integers(0, colours, size=(height, width)).astype(np.uint8)


def write_task(folder, task_id, train, test):
    folder.mkdir(parents=True, exist_ok=True)

    def pairs(items):
        return [{"input": np.asarray(i).tolist(), "output": np.asarray(o).tolist()} for i, o in items]

    (folder / f"{task_id}.json").write_text(json.dumps({"train": pairs(train), "test": pairs(test)}))


def make_sources(root, seed=0):
    """Two training tasks, two evaluation tasks (one with 2 test inputs); returns their pairs by id."""
    rng = np.random.default_rng(seed)
    tasks = {}
    layout = {"training": {"tr1": (3, 1), "tr2": (2, 1)}, "evaluation": {"ev1": (3, 1), "ev2": (2, 2)}}
    for folder, specs in layout.items():
        for task_id, (n_train, n_test) in specs.items():
            pairs = []
            for _ in range(n_train + n_test):
                h, w = rng.integers(2, 9, size=2)
                pairs.append((random_grid(rng, h, w), random_grid(rng, *rng.integers(2, 9, size=2))))
            tasks[task_id] = (pairs[:n_train], pairs[n_train:])
            write_task(root / folder, task_id, *tasks[task_id])
    return [(str(root / "training"), "train"), (str(root / "evaluation"), "evaluation")], tasks


def decode_row(tokens, name, side=30):
    """Undo the translation (first non-PAD cell) and the augmentation of one encoded grid."""
    grid = np.asarray(tokens).reshape(side, side)
    rows, cols = np.nonzero(grid)
    shifted = np.zeros_like(grid)
    top, left = rows.min(), cols.min()
    shifted[: side - top, : side - left] = grid[top:, left:]
    _, tid, mapping = parse_augmentation_name(name)
    return unaugment_grid(crop_tokens(shifted.reshape(-1)), tid, mapping), (top, left)


def puzzles_of(dataset, split):
    """[(name, [(input tokens, label tokens), ...]), ...] of a split, and the per-group name lists."""
    identifiers = load_identifiers(dataset)
    _, arrays = load_split(dataset, split)
    puzzles = []
    for p, identifier in enumerate(arrays.puzzle_identifiers):
        rows = range(arrays.puzzle_indices[p], arrays.puzzle_indices[p + 1])
        puzzles.append((identifiers[identifier], [(arrays.inputs[r], arrays.labels[r]) for r in rows]))
    groups = [
        [puzzles[p][0] for p in range(arrays.group_indices[g], arrays.group_indices[g + 1])]
        for g in range(arrays.num_groups)
    ]
    return puzzles, groups


def official_crop_size(tokens, side=30):
    """The official crop loop (TRM evaluators/arc.py::_crop), as the reference."""
    grid = np.asarray(tokens).reshape(side, side)
    max_area, max_size, num_c = 0, (0, 0), side
    for num_r in range(1, side + 1):
        for c in range(1, num_c + 1):
            x = grid[num_r - 1, c - 1]
            if x < 2 or x > 11:
                num_c = c - 1
                break
        if num_r * num_c > max_area:
            max_area, max_size = num_r * num_c, (num_r, num_c)
    return max_size


# ----------------------------------------------------------------------------------------------------
# token layout and crop


def test_token_layout_of_a_hand_checked_grid():
    grid = np.array([[0, 1, 2], [9, 8, 7]])
    canvas = grid_to_tokens(grid, offset=(1, 2)).reshape(30, 30)
    assert canvas.dtype == np.uint8 and canvas.shape == (30, 30)
    assert canvas[1:3, 2:5].tolist() == [[2, 3, 4], [11, 10, 9]]  # colours + 2 at the offset
    assert canvas[3, 2:5].tolist() == [1, 1, 1]  # EOS row just below, under the grid's columns only
    assert canvas[1:3, 5].tolist() == [1, 1]  # EOS column just right, beside the grid's rows only
    assert canvas[3, 5] == 0  # the diagonal corner stays PAD
    assert np.count_nonzero(canvas) == 6 + 3 + 2  # nothing else is written
    at_origin = grid_to_tokens(grid).reshape(30, 30)
    assert at_origin[0, :4].tolist() == [2, 3, 4, 1] and at_origin[2, :4].tolist() == [1, 1, 1, 0]


def test_eos_is_dropped_where_it_would_leave_the_canvas():
    wide = grid_to_tokens(np.ones((2, 30), dtype=np.uint8)).reshape(30, 30)
    assert (wide[:2] == 3).all() and (wide[2] == 1).all() and np.count_nonzero(wide) == 90
    tall = grid_to_tokens(np.ones((30, 3), dtype=np.uint8)).reshape(30, 30)
    assert (tall[:, 3] == 1).all() and np.count_nonzero(tall) == 120
    corner = grid_to_tokens(np.ones((4, 5), dtype=np.uint8), offset=(26, 25)).reshape(30, 30)
    assert np.count_nonzero(corner == 1) == 0 and np.count_nonzero(corner) == 20
    with pytest.raises(ValueError, match="does not fit"):
        grid_to_tokens(np.ones((4, 5), dtype=np.uint8), offset=(27, 0))
    with pytest.raises(ValueError, match="colours 0..9"):
        grid_to_tokens(np.full((2, 2), 10))


def test_crop_inverts_encoding_for_every_grid_size():
    rng = np.random.default_rng(0)
    grids = [random_grid(rng, h, w) for h in range(1, 31) for w in range(1, 31)]
    tokens = np.stack([grid_to_tokens(g) for g in grids])
    heights, widths = crop_sizes(tokens)
    assert heights.tolist() == [g.shape[0] for g in grids] and widths.tolist() == [g.shape[1] for g in grids]
    for grid, row in zip(grids, tokens):
        assert np.array_equal(crop_tokens(row), grid)


def test_crop_matches_the_official_loop_on_noisy_rows():
    rng = np.random.default_rng(1)
    rows = []
    for _ in range(600):
        row = grid_to_tokens(random_grid(rng, *rng.integers(1, 31, size=2))).copy()
        flips = rng.integers(0, 900, size=rng.integers(0, 6))
        row[flips] = rng.integers(0, 12, size=flips.size)  # PAD/EOS holes and colours past the EOS
        rows.append(row)
    rows.append(np.zeros(900, dtype=np.uint8))  # nothing predicted: 0×0
    rows.append(np.full(900, 5, dtype=np.uint8))  # all colour: 30×30
    heights, widths = crop_sizes(np.stack(rows))
    assert list(zip(heights.tolist(), widths.tolist())) == [official_crop_size(r) for r in rows]
    assert crop_tokens(rows[-2]).shape == (0, 0) and crop_tokens(rows[-1]).shape == (30, 30)


def test_crop_staircase_prefers_the_larger_area_and_fewer_rows_on_ties():
    canvas = np.zeros((30, 30), dtype=np.uint8)
    canvas[0, :6] = 2  # row 0: 6 colours; row 1: 2 colours -> 1×6 (area 6) beats 2×2 (area 4)
    canvas[1, :2] = 2
    assert crop_tokens(canvas.reshape(-1)).shape == (1, 6)
    canvas[2:4, :2] = 2  # now 4×2 (area 8) wins
    assert crop_tokens(canvas.reshape(-1)).shape == (4, 2)
    canvas[:] = 0
    canvas[0, :4], canvas[1, :2] = 2, 2  # 1×4 and 2×2 tie at area 4: the official '>' keeps 1×4
    assert crop_tokens(canvas.reshape(-1)).shape == (1, 4)


# ----------------------------------------------------------------------------------------------------
# augmentation


def test_augmentation_is_inverted_exactly_by_its_name():
    rng = np.random.default_rng(2)
    for tid in range(8):
        grid = random_grid(rng, 3, 5)
        mapping = np.concatenate([[0], rng.permutation(np.arange(1, 10))]).astype(np.uint8)
        augmented = augment_grid(grid, tid, mapping)
        assert np.array_equal(augmented, dihedral_transform(mapping[grid], tid))
        name = augmentation_name("0a1b2c3d", tid, mapping)
        assert name == f"0a1b2c3d_t{tid}_" + "".join(map(str, mapping))
        task_id, parsed_tid, parsed_mapping = parse_augmentation_name(name)
        assert (task_id, parsed_tid) == ("0a1b2c3d", tid) and np.array_equal(parsed_mapping, mapping)
        assert np.array_equal(unaugment_grid(augmented, parsed_tid, parsed_mapping), grid)
    assert parse_augmentation_name("AboveBelow1")[:2] == ("AboveBelow1", 0)
    assert parse_augmentation_name("a_b_t3_0591243786")[:2] == ("a_b", 3)
    with pytest.raises(DatasetError, match="permutation of 0..9 keeping 0 first"):
        parse_augmentation_name("abc_t1_1123456789")


def test_augmentations_are_distinct_and_keep_black():
    rng = np.random.default_rng(3)
    pairs = [(random_grid(rng, 3, 4), random_grid(rng, 4, 4)) for _ in range(3)]
    group = draw_augmentations(pairs, 40, rng)
    assert len(group) == 41 and group[0][0] == 0 and np.array_equal(group[0][1], np.arange(10))
    contents = set()
    for tid, mapping in group:
        assert mapping[0] == 0 and sorted(mapping) == list(range(10))
        contents.add(tuple(augment_grid(g, tid, mapping).tobytes() for pair in pairs for g in pair))
    assert len(contents) == 41


def test_dedup_gives_a_symmetric_task_fewer_augmentations():
    rng = np.random.default_rng(4)
    plus = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=np.uint8)  # one colour, all 8 symmetries
    assert len(draw_augmentations([(plus, plus)], 50, rng)) == 1 + 8  # only the colour of '1' can change
    tee = np.array([[1, 0], [1, 1], [1, 0]], dtype=np.uint8)  # one colour, one mirror symmetry: 4 × 9 puzzles
    assert len(draw_augmentations([(tee, tee)], 100, rng, retries_factor=20)) == 36
    ell = np.array([[1, 0], [1, 0], [1, 1]], dtype=np.uint8)  # one colour, no symmetry: 8 × 9 puzzles
    assert len(draw_augmentations([(ell, ell)], 100, rng, retries_factor=20)) == 72
    assert len(draw_augmentations([(ell, ell)], 0, rng)) == 1


# ----------------------------------------------------------------------------------------------------
# the builder on small task folders


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("arc")
    sources, tasks = make_sources(root / "raw")
    config = ARCBuildConfig(out_dir=root / "out", dataset=sources, num_aug=5, seed=7)
    return build_arc_dataset(config), tasks, config


def test_split_logic_follows_the_official_builder(built):
    dataset, tasks, _ = built
    train, _ = puzzles_of(dataset, "train")
    test, _ = puzzles_of(dataset, "test")
    expected_train = {t: demos + (tests if t.startswith("tr") else []) for t, (demos, tests) in tasks.items()}
    expected_test = {t: tests for t, (_, tests) in tasks.items() if t.startswith("ev")}
    for puzzles, expected in ((train, expected_train), (test, expected_test)):
        seen_tasks = set()
        for name, examples in puzzles:
            task_id = parse_augmentation_name(name)[0]
            seen_tasks.add(task_id)
            assert len(examples) == len(expected[task_id])
            for (inp, lab), (want_in, want_out) in zip(examples, expected[task_id]):
                assert np.array_equal(decode_row(inp, name)[0], want_in)
                assert np.array_equal(decode_row(lab, name)[0], want_out)
        assert seen_tasks == set(expected)
    test_puzzles = json.loads((dataset / "test_puzzles.json").read_text())
    assert sorted(test_puzzles) == ["ev1", "ev2"]
    assert test_puzzles["ev2"]["test"][1]["output"] == tasks["ev2"][1][1][1].tolist()


def test_translation_only_on_train_with_one_untranslated_example_per_puzzle(built):
    dataset, _, _ = built
    train, _ = puzzles_of(dataset, "train")
    translated = 0
    for name, examples in train:
        offsets = [decode_row(inp, name)[1] for inp, _ in examples]
        assert offsets == [decode_row(lab, name)[1] for _, lab in examples]  # shared by input and output
        assert (0, 0) in offsets
        translated += sum(offset != (0, 0) for offset in offsets)
    assert translated > len(train)  # the others are translated (random offsets rarely hit (0, 0))
    test, _ = puzzles_of(dataset, "test")
    for name, examples in test:
        assert all(decode_row(inp, name)[1] == (0, 0) for inp, _ in examples)
        assert all(inp.reshape(30, 30)[0, 0] >= 2 for inp, _ in examples)


def test_no_translation_when_disabled(tmp_path):
    sources, _ = make_sources(tmp_path / "raw")
    dataset = build_arc_dataset(ARCBuildConfig(out_dir=tmp_path / "out", dataset=sources, num_aug=2, translate=False))
    train, _ = puzzles_of(dataset, "train")
    assert all(decode_row(inp, name)[1] == (0, 0) for name, examples in train for inp, _ in examples)


def test_identifiers_groups_and_metadata_are_consistent(built):
    dataset, tasks, _ = built
    identifiers = load_identifiers(dataset)
    assert identifiers[0] == "<blank>" and len(set(identifiers)) == len(identifiers)
    train_meta, train_arrays = load_split(dataset, "train")
    test_meta, test_arrays = load_split(dataset, "test")
    assert train_meta.num_puzzle_identifiers == test_meta.num_puzzle_identifiers == len(identifiers) == 1 + 4 * 6
    assert sorted(train_arrays.puzzle_identifiers.tolist()) == list(range(1, len(identifiers)))
    assert set(test_arrays.puzzle_identifiers.tolist()) <= set(train_arrays.puzzle_identifiers.tolist())
    for meta in (train_meta, test_meta):
        assert (meta.vocab_size, meta.seq_len, meta.pad_id, meta.ignore_label_id, meta.blank_identifier_id) == (
            12,
            900,
            0,
            0,
            0,
        )
    assert train_meta.total_groups == 4 and test_meta.total_groups == 2
    assert train_meta.mean_puzzle_examples == train_arrays.num_examples / train_arrays.num_puzzles
    _, train_groups = puzzles_of(dataset, "train")
    _, test_groups = puzzles_of(dataset, "test")
    for group in train_groups + test_groups:
        assert len(group) == 6 and "_t" not in group[0]  # original first, then its 5 augmentations
        assert {parse_augmentation_name(name)[0] for name in group} == {group[0]}
    assert [g for g in train_groups if g[0].startswith("ev")] == test_groups  # same names: same embeddings
    info = json.loads((dataset / "build.json").read_text())
    assert info["splits"]["train"]["examples"] == train_arrays.num_examples
    assert info["num_puzzle_identifiers"] == len(identifiers) and info["evaluation_tasks"] == 2


def test_same_config_and_seed_give_identical_bytes(tmp_path, built):
    dataset, _, config = built
    again = build_arc_dataset(config.model_copy(update={"out_dir": tmp_path / "again"}))
    other = build_arc_dataset(config.model_copy(update={"out_dir": tmp_path / "other", "seed": 8}))
    files = sorted(p.relative_to(dataset) for p in dataset.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((dataset / f).read_bytes() == (again / f).read_bytes() for f in files)
    assert (dataset / "train/all__inputs.npy").read_bytes() != (other / "train/all__inputs.npy").read_bytes()


def test_existing_output_needs_overwrite(built):
    _, _, config = built
    with pytest.raises(DatasetError, match="already exists"):
        build_arc_dataset(config)


def test_the_shipped_arc1_and_arc2_sources(tmp_path):
    arc1 = resolve_sources("arc1")
    assert len(arc1) == 18 and [role for _, _, role in arc1].count("evaluation") == 1
    assert {path.name for _, path, _ in arc1} >= set(CONCEPT_ARC_GROUPS)
    assert [folder for folder, _, _ in resolve_sources("arc2")] == ["arc2/training", "arc2/evaluation"]
    dataset = build_arc_dataset(ARCBuildConfig(out_dir=tmp_path / "a1", num_aug=1, subsample_tasks=1))
    info = json.loads((dataset / "build.json").read_text())
    assert info["tasks"] == 18 and info["evaluation_tasks"] == 1
    assert [s["tasks"] for s in info["sources"]] == [1] * 18
    test_puzzles = json.loads((dataset / "test_puzzles.json").read_text())
    (task_id,) = test_puzzles
    assert test_puzzles[task_id] == {
        key: json.loads((data_root() / "arc1/evaluation" / f"{task_id}.json").read_text())[key]
        for key in ("train", "test")
    }


# ----------------------------------------------------------------------------------------------------
# bad input


GOOD_GRID = [[1, 2], [3, 4]]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object with 'train' and 'test'"),
        (json.dumps({"train": [{"input": GOOD_GRID, "output": GOOD_GRID}]}), "'test' must be a non-empty list"),
        (json.dumps({"train": [], "test": [{"input": GOOD_GRID, "output": GOOD_GRID}]}), "'train' must be a non-empty"),
        (json.dumps({"train": [{"input": GOOD_GRID}], "test": []}), "train pair 0 needs 'input' and 'output'"),
        (json.dumps({"train": [{"input": [], "output": GOOD_GRID}]}), "train pair 0 'input' is not a non-empty list"),
        (json.dumps({"train": [{"input": [[1, 2], [3]], "output": GOOD_GRID}]}), "is not rectangular"),
        (json.dumps({"train": [{"input": [[1, 10]], "output": GOOD_GRID}]}), "has 10 at row 0, column 1"),
        (json.dumps({"train": [{"input": GOOD_GRID, "output": [[True]]}]}), "'output' has True at row 0"),
        (json.dumps({"train": [{"input": GOOD_GRID, "output": [["3"]]}]}), "has '3' at row 0"),
        (json.dumps({"train": [{"input": [[1]] * 31, "output": GOOD_GRID}]}), "is 31×1"),
        (json.dumps({"train": [{"input": [[1] * 31], "output": GOOD_GRID}]}), "is 1×31"),
    ],
)
def test_bad_task_files_raise_one_clear_error(tmp_path, content, message):
    folder = tmp_path / "evaluation"
    folder.mkdir()
    path = folder / "badtask.json"
    path.write_text(content)
    config = ARCBuildConfig(out_dir=tmp_path / "out", dataset=[(str(folder), "evaluation")], num_aug=0)
    with pytest.raises(DatasetError, match=message) as err:
        build_arc_dataset(config)
    assert str(path) in str(err.value)
    assert not (tmp_path / "out").exists()


def test_bad_sources_raise_one_clear_error(tmp_path):
    def build(sources, out="out"):
        return build_arc_dataset(ARCBuildConfig(out_dir=tmp_path / out, dataset=sources, num_aug=0))

    with pytest.raises(DatasetError, match=r"ARC source folder .*nowhere not found"):
        build([(str(tmp_path / "nowhere"), "train")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no .json task files"):
        build([(str(tmp_path / "empty"), "evaluation")])
    write_task(tmp_path / "a", "same", [(GOOD_GRID, GOOD_GRID)], [(GOOD_GRID, GOOD_GRID)])
    write_task(tmp_path / "b", "same", [(GOOD_GRID, GOOD_GRID)], [(GOOD_GRID, GOOD_GRID)])
    with pytest.raises(DatasetError, match="task id 'same' appears twice"):
        build([(str(tmp_path / "a"), "train"), (str(tmp_path / "b"), "evaluation")])
    with pytest.raises(DatasetError, match="no task has the 'evaluation' role"):
        build([(str(tmp_path / "a"), "train")])
    write_task(tmp_path / "c", "x_t1_0123456789", [(GOOD_GRID, GOOD_GRID)], [(GOOD_GRID, GOOD_GRID)])
    with pytest.raises(DatasetError, match="ends like an augmented name"):
        build([(str(tmp_path / "c"), "evaluation")])
    with pytest.raises(DatasetError, match="unknown ARC dataset 'arc3'"):
        resolve_sources("arc3")
    with pytest.raises(ValidationError):
        ARCBuildConfig(out_dir=tmp_path / "x", dataset=[("arc1/training", "test")])
    with pytest.raises(ValidationError):
        ARCBuildConfig(out_dir=tmp_path / "x", num_aug=-1)


# ----------------------------------------------------------------------------------------------------
# synthetic ARC


def follows_rule(family, task):
    """Each family's rule, checked independently of its generator on every pair of the task."""
    pairs = task.all_pairs
    if family == "colour_map":
        lookup = {}
        for inp, out in pairs:
            if inp.shape != out.shape:
                return False
            for a, b in zip(inp.ravel().tolist(), out.ravel().tolist()):
                if lookup.setdefault(a, b) != b:
                    return False
        return lookup.get(0, 0) == 0 and any(a != b for a, b in lookup.items())
    if family == "mirror_complete":
        horizontal = all(np.array_equal(out, np.fliplr(out)) for _, out in pairs)
        vertical = all(np.array_equal(out, np.flipud(out)) for _, out in pairs)
        if not (horizontal or vertical):
            return False
        for inp, out in pairs:
            grid_in, grid_out = (inp, out) if horizontal else (inp.T, out.T)
            half = (grid_out.shape[1] + 1) // 2
            if not (np.array_equal(grid_in[:, :half], grid_out[:, :half]) and not grid_in[:, half:].any()):
                return False
        return True
    if family == "fill_enclosed":
        fills = set()
        for inp, out in pairs:
            changed = inp != out
            if not changed.any() or not np.array_equal(changed, _enclosed(inp)):
                return False
            fills |= set(out[changed].tolist())
        return len(fills) == 1
    if family == "pattern_extend":
        for inp, out in pairs:
            shown = inp != 0
            if not np.array_equal(inp[shown], out[shown]) or shown.all():
                return False
            periods = [(r, c) for r in range(1, 4) for c in range(1, 4) if periodic(out, r, c)]
            if not periods:
                return False
        return True
    if family == "gravity":
        directions = {"down": 0, "right": 1, "up": 2, "left": 3}
        return any(
            all(np.array_equal(np.rot90(out, k), settle_down(np.rot90(inp, k))) for inp, out in pairs)
            for k in directions.values()
        )
    if family == "shift":
        return any(
            all(np.array_equal(np.roll(inp, (dr, dc), axis=(0, 1)), out) for inp, out in pairs)
            for dr in range(-2, 3)
            for dc in range(-2, 3)
            if (dr, dc) != (0, 0)
        )
    if family == "copy_recolour":
        colours = set()
        for inp, out in pairs:
            if out.shape == (inp.shape[0], 2 * inp.shape[1]) and np.array_equal(out[:, : inp.shape[1]], inp):
                copy = out[:, inp.shape[1] :]
            elif out.shape == (2 * inp.shape[0], inp.shape[1]) and np.array_equal(out[: inp.shape[0]], inp):
                copy = out[inp.shape[0] :]
            else:
                return False
            if not np.array_equal(copy != 0, inp != 0):
                return False
            colours |= set(copy[copy != 0].tolist())
        return len(colours) == 1
    raise AssertionError(family)


def periodic(grid, period_r, period_c):
    height, width = grid.shape
    return all(
        grid[r, c] == grid[r % period_r, c % period_c] for r in range(height) for c in range(width)
    ) and not np.all(grid == grid[0, 0])


def settle_down(grid):
    out = np.zeros_like(grid)
    for c in range(grid.shape[1]):
        column = [v for v in grid[:, c] if v]
        out[grid.shape[0] - len(column) :, c] = column
    return out


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_synthetic_family_follows_its_rule(family, tmp_path):
    rng = np.random.default_rng(5)
    config = SyntheticARCConfig(out_dir=tmp_path, demos_per_task=3, tests_per_task=2)
    for index in range(15):
        task = make_task(rng, family, f"{family}-{index}", "train", config)
        assert len(task.train_pairs) == 3 and len(task.test_pairs) == 2
        assert all(max(i.shape + o.shape) <= config.canvas_size and min(i.shape) >= 3 for i, o in task.all_pairs)
        assert all(not np.array_equal(i, o) if i.shape == o.shape else True for i, o in task.all_pairs)
        assert len({i.tobytes() + bytes(i.shape) for i, _ in task.all_pairs}) == 5  # distinct inputs
        assert follows_rule(family, task), task


def test_synthetic_dataset_is_in_the_official_format(tmp_path):
    config = SyntheticARCConfig(out_dir=tmp_path / "syn", num_tasks=21, num_aug=3, seed=1, tests_per_task=2)
    dataset = build_synthetic_arc_dataset(config)
    train_meta, train_arrays = load_split(dataset, "train")
    test_meta, test_arrays = load_split(dataset, "test")
    assert train_meta.seq_len == 100 and train_meta.vocab_size == 12 and train_meta.total_groups == 21
    info = json.loads((dataset / "build.json").read_text())
    assert info["families"] == dict.fromkeys(FAMILIES, 3) and info["evaluation_tasks"] == round(0.5 * 21)
    assert test_meta.total_groups == info["evaluation_tasks"]
    assert test_arrays.num_examples == test_meta.total_groups * 4 * 2  # 4 group members × 2 test pairs
    assert len(load_identifiers(dataset)) == train_meta.num_puzzle_identifiers == 1 + 21 * 4
    test_puzzles = json.loads((dataset / "test_puzzles.json").read_text())
    test, _ = puzzles_of(dataset, "test")
    for name, examples in test:
        expected = test_puzzles[parse_augmentation_name(name)[0]]["test"]
        decoded = [decode_row(lab, name, side=10)[0].tolist() for _, lab in examples]
        assert decoded == [pair["output"] for pair in expected]
    again = build_synthetic_arc_dataset(config.model_copy(update={"out_dir": tmp_path / "again"}))
    for path in dataset.rglob("*.*"):
        assert path.read_bytes() == (again / path.relative_to(dataset)).read_bytes()


def test_synthetic_config_rejects_impossible_sizes(tmp_path):
    with pytest.raises(ValidationError, match="min_grid_size <= max_grid_size <= canvas_size"):
        SyntheticARCConfig(out_dir=tmp_path, max_grid_size=12, canvas_size=10)
    with pytest.raises(ValidationError, match="copy_recolour doubles a side"):
        SyntheticARCConfig(out_dir=tmp_path, canvas_size=5, min_grid_size=3, max_grid_size=5)
    assert SyntheticARCConfig(out_dir=tmp_path, canvas_size=5, max_grid_size=5, families=["gravity"])
    with pytest.raises(ValidationError):
        SyntheticARCConfig(out_dir=tmp_path, families=["rotate"])


@pytest.mark.parametrize(("name", "model"), [("arc", ARCBuildConfig), ("arc-synthetic", SyntheticARCConfig)])
def test_cli_options_are_the_config_fields(name, model):
    """``reasonlens data arc`` and ``arc-synthetic`` are derived from their build configs: their parameters are
    the model's fields, in order, with their descriptions as help, so the two cannot drift."""
    command = typer.main.get_command(data_app).commands[name]
    assert [param.name for param in command.params] == list(model.model_fields)
    for param, field in zip(command.params, model.model_fields.values()):
        assert field.description and param.help.startswith(field.description), param.name


def test_synthetic_cli_takes_families_comma_separated(tmp_path):
    args = ["arc-synthetic", str(tmp_path / "a"), "--num-tasks", "4", "--families", "gravity,shift", "--no-translate"]
    result = CliRunner().invoke(data_app, args)
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "a" / "build.json").read_text())["config"]
    assert config["families"] == ["gravity", "shift"] and config["translate"] is False
    result = CliRunner().invoke(data_app, ["arc-synthetic", str(tmp_path / "b"), "--families", "gravity,rotate"])
    assert result.exit_code == 2 and "families.1: Input should be" in result.output
