"""Weight-update statistics (issue [K]): known ranks and changed shares on hand-made updates."""

from __future__ import annotations

import copy

import pytest
import torch

from reasonlens.lm.analysis.weight_updates import update_rank, weight_updates
from reasonlens.lm.errors import LMError


def two_layers() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Linear(8, 4))


def test_a_rank_one_update_of_one_matrix():
    before = two_layers()
    after = copy.deepcopy(before)
    with torch.no_grad():
        u, v = torch.zeros(8), torch.zeros(6)
        u[:2], v[:3] = 1.0, 0.5
        after[0].weight += torch.outer(u, v)  # 2 × 3 entries move by 0.5; rank 1
    report = weight_updates(before, after)
    rows = {row["name"]: row for row in report["tensors"]}
    assert rows["0.weight"]["rank"] == 1 and rows["0.weight"]["full_rank"] == 6
    assert rows["0.weight"]["changed"]["1e-05"] == pytest.approx(6 / 48)
    assert rows["1.weight"]["rank"] == 0 and rows["1.weight"]["changed"]["1e-05"] == 0
    assert "rank" not in rows["0.bias"]  # vectors have no rank
    assert report["changed"]["1e-05"] == pytest.approx(6 / report["parameters"])
    assert report["changed"]["0.001"] == report["changed"]["1e-05"]  # 0.5 is above every tolerance


def test_rank_of_full_and_tiny_updates():
    torch.manual_seed(1)
    assert update_rank(torch.randn(5, 7)) == 5
    assert update_rank(torch.zeros(3, 3)) == 0
    before = two_layers()
    after = copy.deepcopy(before)
    with torch.no_grad():
        for p in after.parameters():
            p += 1e-5 * torch.randn_like(p)  # everything moves a little, as under Adam
    report = weight_updates(before, after)
    assert report["changed"]["1e-06"] > 0.8 and report["changed"]["0.001"] == 0
    assert report["mean_rank_fraction"] == 1.0


def test_different_models_are_refused():
    with pytest.raises(LMError, match="different parameters"):
        weight_updates(two_layers(), torch.nn.Sequential(torch.nn.Linear(6, 8)))
