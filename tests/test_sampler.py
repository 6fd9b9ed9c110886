"""The official sampler semantics (sapientinc/HRM ``puzzle_dataset.py::PuzzleDataset``): group order and member
choice from Philox(seed + iteration), full global batches only, rank slices, sequential padded test batches,
label mapping, and exact resumption."""

import numpy as np
import pytest
import torch

from reasonlens.hrm import IGNORE_LABEL_ID
from reasonlens.hrm.data.format import DatasetError, load_split
from reasonlens.hrm.data.sampler import PuzzleBatches


def official_first_batches(dataset_dir, seed, global_batch, epochs_per_iter):
    """The official algorithm written out for one-example puzzles (where it uses no other randomness)."""
    _, arrays = load_split(dataset_dir, "train")
    rng = np.random.Generator(np.random.Philox(seed=seed + 1))
    order = np.concatenate([rng.permutation(arrays.num_groups) for _ in range(epochs_per_iter)])
    puzzles = [rng.integers(arrays.group_indices[g], arrays.group_indices[g + 1]) for g in order]
    rows = [arrays.puzzle_indices[p] for p in puzzles]
    n_batches = len(rows) // global_batch
    return [np.array(rows[i * global_batch : (i + 1) * global_batch]) for i in range(n_batches)]


def test_train_batches_follow_the_official_algorithm(sorting_dataset):
    batches = PuzzleBatches(sorting_dataset, "train", 48, seed=3, epochs_per_iter=2)
    ours = list(batches.train_iteration())
    expected = official_first_batches(sorting_dataset, seed=3, global_batch=48, epochs_per_iter=2)
    _, arrays = load_split(sorting_dataset, "train")
    assert len(ours) == len(expected) == (2 * 256) // 48  # the incomplete last batch is dropped
    for batch, rows in zip(ours, expected):
        assert torch.equal(batch["inputs"], torch.from_numpy(arrays.inputs[rows].astype(np.int32)))
        assert batch["inputs"].dtype == torch.int32
    # the next iteration draws from Philox(seed + 2): a different order
    assert not torch.equal(next(iter(batches.train_iteration()))["inputs"], ours[0]["inputs"])


def test_one_member_per_group_visit_and_every_group_each_epoch(grouped_dataset):
    _, arrays = load_split(grouped_dataset, "train")
    batches = PuzzleBatches(grouped_dataset, "train", 8, seed=0, epochs_per_iter=3)
    puzzle_of_id = {int(i): p for p, i in enumerate(arrays.puzzle_identifiers)}
    group_of_puzzle = np.repeat(np.arange(arrays.num_groups), np.diff(arrays.group_indices))
    seen_groups = []
    for batch in batches.train_iteration():
        assert batch["inputs"].shape == (8, 4)
        ids = batch["puzzle_identifiers"].tolist()
        seen_groups += [group_of_puzzle[puzzle_of_id[i]] for i in ids]
    counts = np.bincount(seen_groups, minlength=arrays.num_groups)
    assert counts.min() >= 1  # every group was visited in the iteration (up to the dropped tail)


def test_examples_of_a_puzzle_are_drawn_without_replacement(grouped_dataset):
    batches = PuzzleBatches(grouped_dataset, "train", 8, seed=1)
    _, arrays = load_split(grouped_dataset, "train")
    for batch in batches.train_iteration():
        rows = [tuple(r) for r in batch["inputs"].tolist()]
        ids = batch["puzzle_identifiers"].tolist()
        for pid in set(ids):
            members = [r for r, i in zip(rows, ids) if i == pid]
            p = int(np.nonzero(arrays.puzzle_identifiers == pid)[0][0])
            size = arrays.puzzle_indices[p + 1] - arrays.puzzle_indices[p]
            assert len(members) <= size


def test_rank_slices_tile_the_global_batch(sorting_dataset):
    whole = list(PuzzleBatches(sorting_dataset, "train", 32, seed=5).train_iteration())
    parts = [
        list(PuzzleBatches(sorting_dataset, "train", 32, seed=5, rank=r, world_size=2).train_iteration())
        for r in range(2)
    ]
    for full, first, second in zip(whole, *parts):
        assert first["inputs"].shape[0] == 16
        assert torch.equal(torch.cat([first["inputs"], second["inputs"]]), full["inputs"])


@pytest.mark.parametrize("pad_last", [False, True])
def test_test_batches_are_sequential_and_padded_only_when_asked(grouped_dataset, pad_last):
    meta, arrays = load_split(grouped_dataset, "test")
    assert arrays.num_examples % 5  # a short last batch
    batches = PuzzleBatches(grouped_dataset, "test", 5)
    collected, real_total = [], 0
    for batch, real in batches.test_batches(pad_last=pad_last):
        assert batch["inputs"].shape == ((5 if pad_last else real), 4)
        collected.append(batch["inputs"][:real])
        if real < batch["inputs"].shape[0]:  # padding: pad id, ignored labels, blank puzzle id
            assert torch.all(batch["inputs"][real:] == meta.pad_id)
            assert torch.all(batch["labels"][real:] == IGNORE_LABEL_ID)
            assert torch.all(batch["puzzle_identifiers"][real:] == meta.blank_identifier_id)
        real_total += real
    assert real_total == arrays.num_examples
    assert torch.equal(torch.cat(collected), torch.from_numpy(np.asarray(arrays.inputs).astype(np.int32)))


@pytest.mark.parametrize("pad_last", [False, True])
def test_test_batches_never_pad_past_the_split(grouped_dataset, pad_last):
    _, arrays = load_split(grouped_dataset, "test")
    rows = arrays.num_examples
    (batch, real), *rest = PuzzleBatches(grouped_dataset, "test", 100_000).test_batches(pad_last=pad_last)
    assert not rest and real == rows and batch["inputs"].shape[0] == rows
    # two ranks: each takes half the split (rounded up), however large the batch asked for
    for rank in range(2):
        ranked = PuzzleBatches(grouped_dataset, "test", 100_000, rank=rank, world_size=2)
        assert ranked.test_batch_rows() == -(-rows // 2)
        (batch, real), *rest = ranked.test_batches(pad_last=pad_last)
        assert not rest and batch["inputs"].shape[0] <= -(-rows // 2)
        assert real == (-(-rows // 2) if rank == 0 else rows // 2)


def test_ignore_label_becomes_minus_100(grouped_dataset):
    _, arrays = load_split(grouped_dataset, "test")
    batch, real = next(PuzzleBatches(grouped_dataset, "test", 64).test_batches())
    raw = torch.from_numpy(np.asarray(arrays.labels).astype(np.int64))
    assert torch.equal(batch["labels"][:real] == IGNORE_LABEL_ID, raw == 0)


@pytest.mark.parametrize("stop_after", [0, 1, 3])
def test_resume_replays_the_rest_of_an_interrupted_iteration(grouped_dataset, stop_after):
    reference = PuzzleBatches(grouped_dataset, "train", 4, seed=2, epochs_per_iter=2)
    first = list(reference.train_iteration())
    second = list(reference.train_iteration())
    interrupted = PuzzleBatches(grouped_dataset, "train", 4, seed=2, epochs_per_iter=2)
    iterator = interrupted.train_iteration()
    for _ in range(stop_after):
        next(iterator)
    state = interrupted.state_dict()
    resumed = PuzzleBatches(grouped_dataset, "train", 4, seed=2, epochs_per_iter=2)
    resumed.load_state_dict(state)
    rest = list(resumed.train_iteration())
    expected = first[stop_after:]  # with nothing consumed, the whole first iteration
    assert len(rest) == len(expected) > 0
    assert all(torch.equal(a["inputs"], b["inputs"]) for a, b in zip(rest, expected))
    following = list(resumed.train_iteration())
    assert all(torch.equal(a["inputs"], b["inputs"]) for a, b in zip(following, second))


def test_bad_arguments_and_missing_data(tmp_path, sorting_dataset):
    with pytest.raises(DatasetError, match="multiple of the world size"):
        PuzzleBatches(sorting_dataset, "train", 33, world_size=2)
    with pytest.raises(DatasetError, match="dataset.json not found"):
        PuzzleBatches(tmp_path / "nothing", "train", 8)
    (sorting_dataset / "train" / "all__labels.npy").unlink()
    with pytest.raises(DatasetError, match="all__labels.npy not found"):
        PuzzleBatches(sorting_dataset, "train", 8)
    (sorting_dataset / "test" / "dataset.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid dataset metadata"):
        PuzzleBatches(sorting_dataset, "test", 8)
