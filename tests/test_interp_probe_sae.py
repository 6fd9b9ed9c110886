"""Linear probes (separable → ~1, shuffled control → chance, noise → chance, ridge R², determinism,
bad input) and SAEs on SAELens (explained variance on planted sparse directions, the on-disk round
trip, dead fraction, feature statistics and classification by hand, missing sae_lens, bad input)."""

import importlib.util
import json
import sys

import pytest
import torch

from reasonlens.interp import InterpError
from reasonlens.interp.probe import _split, probe_sweep, train_probe
from reasonlens.interp.sae import (
    SAETrainingSettings,
    classify_features,
    dead_fraction,
    encode_features,
    evaluate_sae,
    feature_statistics,
    load_sae,
    save_sae,
    train_sae,
)
from reasonlens.utils.io import OWNER_FILE, FolderError

needs_sae_lens = pytest.mark.skipif(importlib.util.find_spec("sae_lens") is None, reason="sae_lens not installed")


def separable(n=400, d=16, seed=0, margin=0.5):
    """Two classes split by a random hyperplane, rows within ``margin`` of it dropped."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3 * n, d, generator=g)
    w = torch.randn(d, generator=g)
    score = x @ w / w.norm()
    keep = (score.abs() > margin).nonzero().flatten()[:n]
    return x[keep], (score[keep] > 0).long()


# -- probes -------------------------------------------------------------------------------------


def test_separable_classes_probe_near_one_control_near_chance():
    x, y = separable()
    result, weights = train_probe(x, y)
    assert result.test_score >= 0.97 and result.train_score >= 0.99
    assert abs(result.control_score - 0.5) < 0.15
    assert result.selectivity == pytest.approx(result.test_score - result.control_score)
    assert result.selectivity > 0.3
    assert result.n_classes == 2 and result.n_train + result.n_test == len(x) and result.n_test == 100
    assert 0.3 < result.majority_baseline < 0.7
    # the returned weights act on the raw features and reproduce the probe's predictions
    predictions = (x @ weights["weight"].T + weights["bias"]).argmax(1)
    assert (weights["classes"][predictions] == y).float().mean() >= 0.97
    assert json.loads(json.dumps(result.to_dict()))["test_score"] == result.test_score


def test_ridge_probe_recovers_linear_target_and_shuffled_control_fails():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1000, 12, generator=g) * torch.linspace(0.1, 5, 12)  # unequal scales: standardisation
    w = torch.randn(12, generator=g)
    y = x @ w + 0.1 * torch.randn(1000, generator=g)
    result, weights = train_probe(x, y, task="regression")
    assert result.test_score > 0.95
    # one shuffle's chance correlation c with the real labels gives a control R² near 2c, c ~ 1/√n_train
    assert result.control_score < 0.15
    controls = [train_probe(x, y, task="regression", seed=s)[0].control_score for s in range(5)]
    assert sum(controls) / 5 < 0.05
    assert result.majority_baseline <= 0.05 and result.n_classes is None
    assert torch.allclose(weights["weight"], w, atol=0.05)


def test_noise_features_score_near_chance():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(400, 16, generator=g), torch.randint(0, 2, (400,), generator=g)
    result, _ = train_probe(x, y)
    assert abs(result.test_score - 0.5) < 0.15
    assert abs(result.test_score - result.majority_baseline) < 0.15
    assert abs(result.random_direction_score - 0.5) < 0.15


def test_probe_is_deterministic_given_seed():
    x, y = separable(n=200, seed=3)
    y = y + 2 * (x[:, 0] > 0).long()  # four classes, partly separable
    (a, wa), (b, wb) = train_probe(x, y, seed=5), train_probe(x, y, seed=5)
    assert a.to_dict() == b.to_dict()
    assert torch.equal(wa["weight"], wb["weight"]) and torch.equal(wa["bias"], wb["bias"])
    assert train_probe(x, y, seed=6)[0].to_dict() != a.to_dict()


def test_label_seen_only_in_test_counts_as_wrong():
    x, y = separable(n=200, seed=4, margin=1.0)
    train_rows, test_rows = _split(len(x), 0.25, seed=0)
    y = y.clone()
    y[test_rows[0]] = 7  # a class the probe never sees in training
    result, weights = train_probe(x, y, seed=0)
    assert result.n_classes == 2 and 7 not in weights["classes"].tolist()
    assert result.test_score <= 1 - 1 / result.n_test + 1e-12
    assert result.test_score >= 0.95


def test_probe_sweep_rows_per_site_and_label():
    x, y_class = separable(n=200, seed=5)
    noise = torch.randn(200, 16, generator=torch.Generator().manual_seed(6))
    target = x[:, :3].sum(1)
    rows = probe_sweep({"layer0": noise, "layer1": x}, {"side": y_class, "sum": target}, {"side": "classification"})
    assert [(r["site"], r["label"], r["task"]) for r in rows] == [
        ("layer0", "side", "classification"),
        ("layer0", "sum", "regression"),  # float labels default to regression
        ("layer1", "side", "classification"),
        ("layer1", "sum", "regression"),
    ]
    score = {(r["site"], r["label"]): r["test_score"] for r in rows}
    assert score["layer1", "side"] > score["layer0", "side"] + 0.3
    assert score["layer1", "sum"] > 0.95 > score["layer0", "sum"]
    json.dumps(rows)
    with pytest.raises(InterpError, match="'layer0', label 'side'"):
        probe_sweep({"layer0": noise}, {"side": torch.zeros(200, dtype=torch.long)})
    with pytest.raises(InterpError, match="not given"):
        probe_sweep({"layer0": noise}, {"side": y_class}, {"other": "regression"})


@pytest.mark.parametrize(
    ("features", "labels", "kwargs", "match"),
    [
        (torch.randn(40), torch.zeros(40, dtype=torch.long), {}, "2-D float"),
        (torch.ones(40, 4, dtype=torch.long), torch.arange(40) % 2, {}, "2-D float"),
        (torch.randn(40, 4), torch.arange(39) % 2, {}, "one entry per feature row"),
        (torch.randn(40, 4), torch.zeros(40, dtype=torch.long), {}, "at least 2 distinct"),
        (torch.randn(40, 4), (torch.arange(40) % 2).float(), {}, "integer class ids"),
        (torch.randn(40, 4), torch.arange(40) % 2, {"test_fraction": 1.0}, r"test_fraction must be in \(0, 1\)"),
        (torch.randn(40, 4), torch.arange(40) % 2, {"test_fraction": 0.0}, r"test_fraction must be in \(0, 1\)"),
        (torch.randn(2, 4), torch.tensor([0, 1]), {}, "too few rows"),
        (torch.randn(40, 4), torch.arange(40) % 2, {"task": "ranking"}, "unknown probe task"),
        (torch.full((40, 4), float("nan")), torch.arange(40) % 2, {}, "NaN"),
        (torch.randn(40, 4), torch.arange(40) % 2, {"l2": -1.0}, "l2 must be"),
    ],
)
def test_probe_bad_input(features, labels, kwargs, match):
    with pytest.raises(InterpError, match=match):
        train_probe(features, labels, **kwargs)


# -- SAEs ---------------------------------------------------------------------------------------


def planted_sparse(n=2000, d=32, k=16, p=0.15, seed=0):
    """Rows that are sparse non-negative combinations of k unit directions in d dims."""
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(k, d, generator=g)
    directions /= directions.norm(dim=1, keepdim=True)
    coefficients = (torch.rand(n, k, generator=g) < p).float() * torch.rand(n, k, generator=g) * 2
    return coefficients @ directions


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    pytest.importorskip("sae_lens")
    out = tmp_path_factory.mktemp("sae") / "layer0"
    x = planted_sparse()
    settings = SAETrainingSettings(d_sae=64, steps=500, l1_coefficient=0.3, seed=0)
    sae, stats = train_sae(x, settings, hook_name="blocks.0.hook_resid_post", out_dir=out)
    return x, sae, stats, out


def test_sae_learns_planted_sparse_directions(trained):
    x, sae, stats, _ = trained
    assert stats["explained_variance"] > 0.8
    assert (stats["n_train"], stats["n_eval"], stats["d_in"], stats["d_sae"]) == (1800, 200, 32, 64)
    # the statistics recomputed by hand on the held-out rows (the seeded split's first 200 of a permutation)
    held_out = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:200]]
    with torch.no_grad():
        features = sae.encode(held_out)
        error = (sae.decode(features) - held_out).pow(2)
    assert stats["mse"] == pytest.approx(float(error.mean()), rel=1e-5)
    assert stats["l0"] == pytest.approx(float((features > 0).sum(1).float().mean()), rel=1e-6)
    assert stats["dead_fraction"] == float((features.amax(0) <= 0).float().mean())
    assert 0 < stats["l0"] < 64


def test_dead_fraction_of_planted_features():
    features = torch.rand(10, 5) + 0.1
    features[:, [1, 3]] = 0.0  # two features never fire
    features[4, 3] = -1.0  # a negative pre-activation is not firing either
    assert dead_fraction(features) == pytest.approx(0.4)
    assert dead_fraction(features, threshold=2.0) == 1.0
    with pytest.raises(InterpError, match="2-D"):
        dead_fraction(torch.zeros(3))


def test_sae_round_trip_through_disk(trained):
    x, sae, stats, out = trained
    assert sorted(p.name for p in out.iterdir()) == [OWNER_FILE, "cfg.json", "sae_weights.safetensors", "stats.json"]
    assert [p.name for p in out.parent.iterdir()] == ["layer0"]  # no temporary folder left behind
    cfg = json.loads((out / "cfg.json").read_text())
    assert (cfg["d_in"], cfg["d_sae"], cfg["architecture"]) == (32, 64, "standard")
    assert cfg["metadata"]["hook_name"] == "blocks.0.hook_resid_post"
    saved = json.loads((out / "stats.json").read_text())
    assert saved["explained_variance"] == stats["explained_variance"] and saved["settings"]["d_sae"] == 64

    import sae_lens

    loaded = load_sae(out)
    assert isinstance(loaded, sae_lens.SAE)
    assert torch.equal(encode_features(loaded, x), encode_features(sae, x))
    assert torch.allclose(encode_features(loaded, x, batch_size=7), encode_features(loaded, x), atol=1e-6)
    assert torch.equal(sae_lens.SAE.load_from_disk(out).W_enc, sae.W_enc)  # SAELens's own loader agrees
    assert evaluate_sae(loaded, x[:50]) == evaluate_sae(sae, x[:50])

    save_sae(loaded, out)  # replacing an SAE folder is allowed
    assert torch.equal(load_sae(out).W_dec, sae.W_dec)


def test_dead_fraction_matches_hand_count(trained):
    x, sae, _, _ = trained
    features = torch.tensor([[0.0, 1.0, 0.0, 0.0, 2.0], [0.5, 0.0, 0.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0, 0.0]])
    assert dead_fraction(features) == pytest.approx(2 / 5)
    assert dead_fraction(features, threshold=0.75) == pytest.approx(3 / 5)

    import copy

    forced = copy.deepcopy(sae)
    with torch.no_grad():
        forced.b_enc[:10] = -1e6  # these 10 features can never fire
    encoded = encode_features(forced, x[:200])
    assert (encoded[:, :10] == 0).all()
    hand = int(((encoded > 0).sum(0) == 0).sum()) / 64
    assert hand >= 10 / 64
    assert evaluate_sae(forced, x[:200])["dead_fraction"] == pytest.approx(hand)


@needs_sae_lens
def test_sae_training_is_deterministic():
    x = planted_sparse(n=200, seed=1)
    settings = SAETrainingSettings(d_sae=16, steps=20, batch_size=32)
    (a, sa), (b, sb) = train_sae(x, settings), train_sae(x, settings)
    assert sa == sb and torch.equal(a.W_enc, b.W_enc)


def test_feature_statistics_and_classification_by_hand():
    # rows 0-2 are group "id", rows 3-5 group "ood"
    features = torch.tensor(
        [
            [1.0, 0.5, 0.0, 0.0],
            [2.0, 0.5, 0.0, 0.0],
            [3.0, 0.5, 0.0, 0.4],
            [0.0, 0.5, 0.0, 1.0],
            [0.0, 0.7, 0.0, 1.0],
            [0.0, 0.5, 0.0, 1.0],
        ]
    )
    masks = {"id": torch.tensor([True] * 3 + [False] * 3), "ood": torch.tensor([False] * 3 + [True] * 3)}
    stats = feature_statistics(features, masks, top_k=2)
    assert stats["groups"] == ["id", "ood"] and stats["n_rows"] == {"id": 3, "ood": 3}
    assert torch.allclose(stats["frequency"]["id"], torch.tensor([1.0, 1.0, 0.0, 1 / 3]))
    assert torch.allclose(stats["frequency"]["ood"], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    assert torch.allclose(stats["mean_activation"]["id"], torch.tensor([2.0, 0.5, 0.0, 0.4 / 3]))
    assert torch.allclose(stats["frequency_all"], torch.tensor([0.5, 1.0, 0.0, 4 / 6]))
    assert stats["top_rows"][0].tolist() == [2, 1] and stats["top_rows"][1, 0] == 4
    assert stats["top_values"][0].tolist() == [3.0, 2.0]

    # the same groups given as one label per row
    by_label = feature_statistics(features, ["id", "id", "id", "ood", "ood", "ood"], top_k=2)
    assert by_label["groups"] == ["id", "ood"]
    assert all(torch.equal(by_label["frequency"][g], stats["frequency"][g]) for g in masks)

    classes = classify_features(stats)
    # 0 fires only in id; 1 everywhere at the same rate; 2 never; 3 at 1/3 vs 1 (> 2x apart, not exclusive)
    assert classes["specific"] == {"id": [0], "ood": []}
    assert (classes["stable"], classes["dead"], classes["mixed"]) == ([1], [2], [3])
    assert classes["counts"] == {
        "specific": 1,
        "stable": 1,
        "mixed": 1,
        "dead": 1,
        "specific_per_group": {"id": 1, "ood": 0},
    }
    assert classify_features(stats, stable_ratio=3.0)["stable"] == [1, 3]
    json.dumps(classes)


def test_missing_sae_lens_raises_interp_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sae_lens", None)  # makes `import sae_lens` fail
    with pytest.raises(InterpError, match=r'pip install -e "\.\[sae\]"'):
        train_sae(planted_sparse(n=64), SAETrainingSettings(steps=1))


@pytest.mark.parametrize(
    ("activations", "match"),
    [
        (torch.randn(100), "2-D float tensor"),
        (torch.ones(100, 8, dtype=torch.long), "2-D float tensor"),
        (torch.randn(10, 8), "too few rows"),
        (torch.full((100, 8), float("inf")), "NaN or inf"),
    ],
)
def test_sae_bad_activations(activations, match):
    pytest.importorskip("sae_lens")
    with pytest.raises(InterpError, match=match):
        train_sae(activations, SAETrainingSettings(steps=1))


def test_sae_bad_settings_and_arguments(tmp_path):
    with pytest.raises(InterpError, match="unknown normalise"):
        SAETrainingSettings(normalise="l2")
    with pytest.raises(InterpError, match="eval_fraction"):
        SAETrainingSettings(eval_fraction=1.5)
    with pytest.raises(InterpError, match="steps must be >= 1"):
        SAETrainingSettings(steps=0)
    with pytest.raises(InterpError, match="not an SAE folder"):
        load_sae(tmp_path)
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FolderError, match="refusing to replace"):
        save_sae(object(), tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    with pytest.raises(InterpError, match="at least 2 groups"):
        classify_features(feature_statistics(torch.ones(4, 2), {"all": torch.ones(4, dtype=torch.bool)}))
    with pytest.raises(InterpError, match="selects no rows"):
        feature_statistics(torch.ones(4, 2), {"none": torch.zeros(4, dtype=torch.bool)})
    with pytest.raises(InterpError, match="one label per row"):
        feature_statistics(torch.ones(4, 2), [0, 1, 0])


def test_encode_features_checks_width(trained):
    _, sae, _, _ = trained
    with pytest.raises(InterpError, match="d_in=32"):
        encode_features(sae, torch.randn(5, 31))
