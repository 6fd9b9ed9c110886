"""The intervention engine's invariants (docs/interp.md): identity patch is a no-op, a full patch reproduces
the source, causality, batched == looped, one cache entry per call, hooks removed; ``apply`` agrees with
hand-written hooks and with the sweep; spec parsing, validation and fuzzing; cache and result round trips."""

import json
import math
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from reasonlens.interp import (
    ActivationCache,
    Alias,
    Experiment,
    InterpError,
    Intervention,
    PatchResult,
    apply,
    capture,
    format_spec,
    intervene,
    load_results,
    parse_spec,
    probe_sites,
    run_sweep,
    save_results,
    validate,
)
from reasonlens.interp.hooks import SitePatch
from reasonlens.interp.rows import row_masks, single_row_patch
from reasonlens.interp.spec import from_mapping
from reasonlens.interp.sweep import run_looped


class Step(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.mix = nn.Linear(width, width)

    def forward(self, h):
        return h + torch.tanh(self.mix(h))  # the whole new state: patching it at every call is complete


class Loop(nn.Module):
    """A module that runs 4 times per forward on a (B, S, D) state, then a head."""

    def __init__(self, width=8, steps=4):
        super().__init__()
        self.embed = nn.Linear(3, width)
        self.step = Step(width)
        self.head = nn.Linear(width, 2)
        self.steps = steps

    def forward(self, x):
        h = self.embed(x)
        for _ in range(self.steps):
            h = self.step(h)
        return self.head(h)


class ToyAdapter:
    def __init__(self, n=6, seq=5):
        torch.manual_seed(0)
        self.model = Loop().eval()
        self.inputs = torch.randn(n, seq, 3)
        self.aliases = {"state": Alias("step", stride=2, offset=1, description="every second step")}

    def batch(self, indices):
        return {"x": self.inputs[list(indices)]}

    def run(self, batch):
        return self.model(batch["x"])

    def score(self, outputs, batch):
        return {"total": outputs.sum((1, 2)), "out": outputs}


def sites(adapter):
    return probe_sites(adapter.model, lambda: adapter.run(adapter.batch([0])), adapter.aliases)


def test_probe_counts_calls_and_shapes():
    info = sites(ToyAdapter())
    assert info["step"].calls == 4 and info["step"].shape == (1, 5, 8) and info["step"].positions == 5
    assert info["state"].calls == 2 and info["state"].alias
    assert info["head"].calls == 1 and info["head"].units == 2


def test_identity_patch_is_a_no_op_and_full_patch_reproduces_the_source():
    adapter = ToyAdapter()
    identity = [Experiment(t, t, parse_spec("step;embed")) for t in range(3)]
    baselines, patched = run_sweep(adapter, identity)
    for e, p in zip(identity, patched):
        assert p["out"] == baselines[e.target]["out"]
    full = [Experiment(0, s, parse_spec("embed;step")) for s in (1, 2)]
    _, patched = run_sweep(adapter, full)
    source_out = adapter.run(adapter.batch([1, 2]))
    for row, p in enumerate(patched):
        torch.testing.assert_close(torch.tensor(p["out"]), source_out[row])


def test_causality_a_patch_at_call_k_leaves_earlier_calls_unchanged():
    adapter = ToyAdapter()
    batch = adapter.batch([0])
    with torch.inference_mode(), capture(adapter.model, ["step"]) as clean:
        adapter.run(batch)
    patch = SitePatch("step", (2,), lambda out, k: torch.zeros_like(out))
    with torch.inference_mode(), intervene(adapter.model, [patch]), capture(adapter.model, ["step"]) as patched:
        adapter.run(batch)
    for k in (0, 1):
        assert torch.equal(patched[("step", k)], clean[("step", k)])
    assert torch.all(patched[("step", 2)] == 0) and not torch.equal(patched[("step", 3)], clean[("step", 3)])


def test_one_cache_entry_per_call_and_aliases_pick_their_calls():
    adapter = ToyAdapter()
    with torch.inference_mode(), capture(adapter.model, ["step", "state"], adapter.aliases) as cache:
        adapter.run(adapter.batch([0, 1]))
    assert cache.calls("step") == [0, 1, 2, 3] and cache.calls("state") == [0, 1]
    assert not torch.equal(cache[("step", 0)], cache[("step", 1)])
    assert torch.equal(cache[("state", 0)], cache[("step", 1)]) and torch.equal(cache[("state", 1)], cache[("step", 3)])


MIXED = [
    ("step[0,2]@1:0-3", "patch", None),
    ("state@0;head:1", "patch", None),
    ("embed[1-3]", "zero", None),
    ("step@2:5,6", "mean", None),
    ("step:2", "add", 0.5),
    ("embed[4]@0", "scale", -2.0),
]


@pytest.mark.parametrize(("spec", "op", "value"), MIXED)
def test_batched_equals_looped(spec, op, value):
    adapter = ToyAdapter()
    with torch.inference_mode(), capture(adapter.model, ["step", "embed", "head"]) as reference:
        adapter.run(adapter.batch(range(6)))
    interventions = parse_spec(spec, op=op, value=value)
    validate(interventions, sites(adapter))
    experiments = [Experiment(t, s, interventions) for t in range(4) for s in range(4) if s != t]
    batched_base, batched = run_sweep(adapter, experiments, chunk_size=5, reference=reference)
    looped_base, looped = run_looped(adapter, experiments, reference=reference)
    assert batched_base.keys() == looped_base.keys()
    changed = 0
    for b, loop, e in zip(batched, looped, experiments):
        torch.testing.assert_close(torch.tensor(b["out"]), torch.tensor(loop["out"]), rtol=1e-5, atol=1e-6)
        changed += b["out"] != batched_base[e.target]["out"]
    assert changed > 0  # the interventions did something


def test_several_interventions_on_one_row_and_call_combine():
    adapter = ToyAdapter()
    experiments = [Experiment(0, 1, parse_spec("step[0-1]@1;step[3]@1"))]
    _, batched = run_sweep(adapter, experiments)
    _, looped = run_looped(adapter, experiments)
    torch.testing.assert_close(torch.tensor(batched[0]["out"]), torch.tensor(looped[0]["out"]))


def test_hooks_are_removed_on_exit_and_on_error():
    adapter = ToyAdapter()
    patch = SitePatch("step", None, lambda out, k: out)
    with intervene(adapter.model, [patch]), capture(adapter.model, ["embed"]):
        assert adapter.model.step._forward_hooks and adapter.model.embed._forward_hooks
    assert not adapter.model.step._forward_hooks and not adapter.model.embed._forward_hooks
    with pytest.raises(RuntimeError, match="boom"), intervene(adapter.model, [patch]):
        raise RuntimeError("boom")
    assert not adapter.model.step._forward_hooks


def test_a_call_that_never_happens_is_an_error():
    adapter = ToyAdapter()
    with (
        pytest.raises(InterpError, match="ran 4 time.*call 6 was requested"),
        intervene(adapter.model, [SitePatch("step", (6,), lambda out, k: out)]),
    ):
        adapter.run(adapter.batch([0]))


def test_spec_grammar_round_trips():
    for text in [
        "q_net.0:5,6,7;q_net.2:10,11",
        "q_net.2:all",
        "z_H@2",
        "z_H[0-8]@0,1,2",
        "blocks.1.hook_resid_post[4]",
        "inner.L_level@5:0-63",
    ]:
        parsed = parse_spec(text)
        assert parse_spec(format_spec(parsed)) == parsed
        assert [Intervention.from_dict(json.loads(json.dumps(i.to_dict()))) for i in parsed] == list(parsed)
    assert str(parse_spec("q_net.2:all")[0]) == "q_net.2"  # 'all' is the default
    (first,) = parse_spec("z_H[8,0-3,2]@1")
    assert first.positions == (0, 1, 2, 3, 8) and first.calls == (1,) and first.units is None
    assert from_mapping({"q_net.0": [5, 10, 15], "q_net.2": "all"}) == parse_spec("q_net.0:5,10,15;q_net.2")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty entry"),
        ("z_H;;z_L", "empty entry"),
        ("z_H[]", "empty position selection"),
        ("z_H@3-1", "empty range"),
        ("z_H@x", "bad call index"),
        ("q net:1", "malformed spec entry"),
        ("z_H@-1", "bad call index"),
        ("[0]", "malformed"),
    ],
)
def test_malformed_specs(text, message):
    with pytest.raises(InterpError, match=message):
        parse_spec(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abz_H.0129[]@:;,-all q")), max_size=30))
def test_fuzzed_specs_raise_only_engine_errors(text):
    try:
        parsed = parse_spec(text)
    except InterpError:
        return
    assert parse_spec(format_spec(parsed)) == parsed  # whatever parses, round-trips


def test_validation_names_what_is_wrong():
    info = sites(ToyAdapter())
    with pytest.raises(InterpError, match=r"unknown site 'stepp'; valid sites \(closest first\): step"):
        validate(parse_spec("stepp"), info)
    with pytest.raises(InterpError, match="index 4 is out of range for the 4 calls of step"):
        validate(parse_spec("step@4"), info)
    with pytest.raises(InterpError, match="index 2 is out of range for the 2 steps of state"):
        validate(parse_spec("state@2"), info)
    with pytest.raises(InterpError, match="index 9 is out of range for the 8 units of step"):
        validate(parse_spec("step:9"), info)
    with pytest.raises(InterpError, match="index 5 is out of range for the 5 positions"):
        validate(parse_spec("step[5]"), info)
    with pytest.raises(InterpError, match="op 'add' needs a value"):
        parse_spec("step", op="add")


def test_cache_round_trips_and_exports(tmp_path):
    adapter = ToyAdapter()
    with torch.inference_mode(), capture(adapter.model, ["step", "head"]) as cache:
        adapter.run(adapter.batch([0, 1, 2]))
    cache.meta["inputs"] = [0, 1, 2]
    cache.save(tmp_path / "cache")
    loaded = ActivationCache.load(tmp_path / "cache")
    assert loaded.keys() == cache.keys() and loaded.meta == {"inputs": [0, 1, 2]}
    assert loaded._data == {}  # lazy: nothing read yet
    assert torch.equal(loaded[("step", 3)], cache[("step", 3)])
    payload = torch.load(cache.to_pt(tmp_path / "acts.pt"), weights_only=True)
    assert payload["activations"]["step"].shape == (4, 3, 5, 8) and payload["calls"]["step"] == [0, 1, 2, 3]
    arrays = np.load(cache.to_npz(tmp_path / "acts.npz"))
    assert arrays["head@0"].shape == (3, 5, 2)
    readable = json.loads(cache.to_json(tmp_path / "acts.json", ["a", "b", "c"]).read_text())
    assert set(readable) == {"a", "b", "c"} and set(readable["a"]) == {"step@0", "step@1", "step@2", "step@3", "head"}
    with pytest.raises(InterpError, match="no cached activation for site 'step' call 9; cached calls"):
        loaded[("step", 9)]


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".csv"])
def test_results_round_trip(tmp_path, suffix):
    results = [
        PatchResult(
            1,
            0,
            "z_H@2",
            {"accuracy": 0.75, "correct": [True, False]},
            {"accuracy": 0.5, "correct": [False, False]},
            {"level": "H", "steps": "2"},
        ),
        PatchResult(2, None, "z_L", {"accuracy": 1.0}, {"accuracy": 1.0}, {"level": "L", "steps": "all"}),
    ]
    path = save_results(results, tmp_path / f"results{suffix}")
    loaded = load_results(path)
    assert [(r.target, r.source, r.spec, r.tags) for r in loaded] == [
        (r.target, r.source, r.spec, r.tags) for r in results
    ]
    assert loaded[0].change("accuracy") == pytest.approx(-0.25)
    assert loaded[0].baseline["correct"] == [True, False]
    with pytest.raises(InterpError, match="use .json, .yaml or .csv"):
        save_results(results, tmp_path / "results.txt")


def test_single_row_patch_selects_positions_and_units():
    source = {("step", 1): torch.ones(5, 8)}
    apply = single_row_patch(parse_spec("step[1,3]:2,4")[0], source)
    out = apply(torch.zeros(1, 5, 8), 1)
    assert out.sum() == 4 and out[0, 1, 2] == 1 and out[0, 3, 4] == 1 and out[0, 0].sum() == 0


def test_sequential_children_are_sites():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    info = probe_sites(model, lambda: model(torch.randn(2, 4)))
    (zero,) = validate(parse_spec("0:1,2", op="zero"), info)
    with torch.inference_mode(), capture(model, ["0"]) as cache:
        model(torch.randn(2, 4))
    assert zero.site == "0" and cache[("0", 0)].shape == (2, 8)


# -- apply: spec strings and records as hooks in a with block ------------------------------------


def run_captured(adapter, rows, sites=("step", "state", "embed", "head")):
    """The clean outputs of ``rows`` and a cache of every call of ``sites``."""
    with torch.inference_mode(), capture(adapter.model, sites, adapter.aliases) as cache:
        out = adapter.run(adapter.batch(rows))
    return out, cache


def run_applied(adapter, rows, interventions, **kwargs):
    with torch.inference_mode(), apply(adapter.model, interventions, adapter.aliases, **kwargs):
        return adapter.run(adapter.batch(rows))


def test_apply_identity_patch_changes_nothing():
    adapter = ToyAdapter()
    clean, cache = run_captured(adapter, [0, 1, 2])
    patched = run_applied(adapter, [0, 1, 2], ["step", "embed[1-3]:0-4", "state@1"], source=cache)
    assert torch.equal(patched, clean)


def test_apply_equals_hand_written_site_patches():
    adapter = ToyAdapter()
    rows = [0, 1, 2]
    _, source = run_captured(adapter, [3, 4, 5])

    def patch_from_source(out, k):  # positions 0 and 2, units 0-3
        new = out.clone()
        new[:, [0, 2], :4] = source[("step", k)][:, [0, 2], :4]
        return new

    def zero_units_5_6(out, k):
        return out.index_fill(-1, torch.tensor([5, 6]), 0)

    def add_at_position_4(out, k):
        new = out.clone()
        new[:, 4] += 0.5
        return new

    def scale(out, k):
        return out * -2.0

    cases = [
        ("step[0,2]@1:0-3", dict(source=source), SitePatch("step", (1,), patch_from_source)),
        ("step@2:5,6", dict(op="zero"), SitePatch("step", (2,), zero_units_5_6)),
        ("embed[4]", dict(op="add", value=0.5), SitePatch("embed", None, add_at_position_4)),
        ("state@0", dict(op="scale", value=-2.0), SitePatch("step", (1,), scale)),  # state@0 is step@1
    ]
    for spec, kwargs, hand_written in cases:
        with torch.inference_mode(), intervene(adapter.model, [hand_written]):
            expected = adapter.run(adapter.batch(rows))
        assert torch.equal(run_applied(adapter, rows, spec, **kwargs), expected), spec


@pytest.mark.parametrize(("spec", "op", "value"), MIXED)
def test_apply_equals_the_sweep(spec, op, value):
    adapter = ToyAdapter()
    targets, sources = [0, 1, 2], [3, 4, 5]
    _, reference = run_captured(adapter, range(6))
    _, source = run_captured(adapter, sources)
    interventions = parse_spec(spec, op=op, value=value)
    experiments = [Experiment(t, s, interventions) for t, s in zip(targets, sources)]
    _, swept = run_sweep(adapter, experiments, chunk_size=len(experiments), reference=reference)
    applied = run_applied(adapter, targets, spec, op=op, value=value, source=source, reference=reference)
    for row, result in enumerate(swept):
        assert torch.equal(applied[row], torch.tensor(result["out"])), (spec, row)


def test_apply_takes_spec_strings_and_records_alike():
    adapter = ToyAdapter()
    clean, _ = run_captured(adapter, [0, 1])
    record = Intervention("step", positions=(0, 2), calls=(1,), units=(0, 1, 2, 3), op="zero")
    from_string = run_applied(adapter, [0, 1], "step[0,2]@1:0-3", op="zero")
    from_record = run_applied(adapter, [0, 1], record)
    mixed = run_applied(adapter, [0, 1], [record, "embed[4]@0"], op="scale", value=-2.0)
    mixed_records = run_applied(adapter, [0, 1], [record, Intervention("embed", (4,), (0,), op="scale", value=-2.0)])
    assert torch.equal(from_string, from_record) and torch.equal(mixed, mixed_records)
    assert not torch.equal(from_string, clean)  # a zero ablation does something
    assert not torch.equal(mixed, from_record)
    with torch.inference_mode(), apply(adapter.model, "step@1;head:0", op="zero") as records:
        adapter.run(adapter.batch([0]))
    assert records == parse_spec("step@1;head:0", op="zero")


def test_apply_one_source_row_serves_every_row_and_mean_reads_the_reference():
    adapter = ToyAdapter()
    _, three_sources = run_captured(adapter, [5, 5, 5])
    one_source = three_sources.select_rows([0])  # the same values (a batch of one may round differently)
    patched_one = run_applied(adapter, [0, 1, 2], "step@3", source=one_source)
    patched_three = run_applied(adapter, [0, 1, 2], "step@3", source=three_sources)
    assert torch.equal(patched_one, patched_three)
    torch.testing.assert_close(patched_one[0], run_captured(adapter, [5])[0][0])  # step@3 is the whole last state
    _, reference = run_captured(adapter, range(6))
    by_hand = SitePatch("head", None, lambda out, k: reference[("head", 0)].float().mean(0).expand_as(out))
    with torch.inference_mode(), intervene(adapter.model, [by_hand]):
        expected = adapter.run(adapter.batch([0, 1]))
    assert torch.equal(run_applied(adapter, [0, 1], "head", op="mean", reference=reference), expected)


def test_apply_hooks_are_removed_after_the_block():
    adapter = ToyAdapter()
    clean, _ = run_captured(adapter, [0, 1])
    assert not torch.equal(run_applied(adapter, [0, 1], "step", op="zero"), clean)
    assert not adapter.model.step._forward_hooks
    assert torch.equal(adapter.run(adapter.batch([0, 1])), clean)
    with pytest.raises(RuntimeError, match="boom"), apply(adapter.model, "step", op="zero"):
        raise RuntimeError("boom")
    assert not adapter.model.step._forward_hooks
    assert torch.equal(adapter.run(adapter.batch([0, 1])), clean)


@pytest.mark.parametrize(
    ("interventions", "kwargs", "message"),
    [
        ("step[0", {}, r"malformed spec entry 'step\[0'; expected site\[positions\]@calls:units"),
        ("stepp", {"op": "zero"}, r"unknown site 'stepp'; valid sites \(closest first\): step"),
        ("step", {"op": "ablate"}, "unknown op 'ablate'; allowed: patch, zero, mean, resample, add, scale"),
        ("step", {"op": "scale"}, "op 'scale' needs a value"),
        ("step", {}, r"step \(op 'patch'\) needs source=<ActivationCache>"),
        ("step@1", {"op": "mean"}, r"step@1 \(op 'mean'\) needs reference=<ActivationCache>"),
        ([], {}, "no interventions given"),
        ([3], {}, "an intervention is a spec string or an Intervention record, got int"),
        ("state@5", {"op": "zero"}, "site state ran 2 time.*call 5 was requested"),
        ("step[9]", {"op": "zero"}, "index 9 is out of range for the 5 positions of step"),
        ("step:8", {"op": "zero"}, "index 8 is out of range for the 8 units of step"),
        ("step[0]:1", {"op": "zero", "sites": True}, None),
        ("step@4", {"op": "zero", "sites": True}, "index 4 is out of range for the 4 calls of step"),
    ],
)
def test_apply_refuses_bad_specs_and_sites_with_a_clear_message(interventions, kwargs, message):
    adapter, kwargs = ToyAdapter(), dict(kwargs)
    if kwargs.pop("sites", False):
        kwargs["sites"] = sites(adapter)
    if message is None:
        run_applied(adapter, [0], interventions, **kwargs)
        return
    with pytest.raises(InterpError, match=message):
        run_applied(adapter, [0], interventions, **kwargs)
    assert not adapter.model.step._forward_hooks


def test_apply_checks_the_source_cache():
    adapter = ToyAdapter()
    _, two_rows = run_captured(adapter, [4, 5], sites=("step",))
    with pytest.raises(InterpError, match=r"the source cache has no site 'embed'; it holds \['step'\]"):
        run_applied(adapter, [0, 1, 2], "embed", source=two_rows)
    with pytest.raises(InterpError, match="source cache lacks call.*\\[7\\]"):
        run_applied(adapter, [0, 1, 2], "step@7", source=two_rows)
    with pytest.raises(InterpError, match="holds 2 rows of step@0 but the patched run has 3"):
        run_applied(adapter, [0, 1, 2], "step", source=two_rows)


def per_row_mask(shape, intervention):
    """The engine's former one-mask-per-row construction (Python per row), the reference for row_masks."""
    if len(shape) < 2:
        mask = torch.zeros(shape, dtype=torch.bool)
        mask[slice(None) if intervention.units is None else list(intervention.units)] = True
        return mask
    mask = torch.zeros((shape[0], math.prod(shape[1:])), dtype=torch.bool)
    positions = slice(None) if intervention.positions is None else torch.tensor(intervention.positions)
    units = slice(None) if intervention.units is None else torch.tensor(intervention.units)
    if isinstance(positions, slice) or isinstance(units, slice):
        mask[positions, units] = True
    else:
        mask[positions[:, None], units] = True
    return mask.reshape(shape)


@pytest.mark.parametrize("shape", [(7, 3, 4), (7, 12), (12,)])
def test_vectorised_row_masks_equal_the_per_row_masks(shape):
    rng = random.Random(0)
    has_sequence = len(shape) >= 2
    units = math.prod(shape[1:]) if has_sequence else shape[0]

    def some(n):
        return None if rng.random() < 0.3 else tuple(sorted(rng.sample(range(n), rng.randint(1, n))))

    selections, expected = [], torch.zeros((10, *shape), dtype=torch.bool)
    for row in range(10):
        for _ in range(rng.randint(1, 3)):  # several interventions on one row are OR-ed
            intervention = Intervention("s", positions=some(shape[0]) if has_sequence else None, units=some(units))
            selections.append((row, intervention))
            expected[row] |= per_row_mask(shape, intervention)
    assert torch.equal(row_masks(shape, selections, 10, "cpu"), expected)
    assert row_masks(shape, [(0, Intervention("s")), (1, Intervention("s"))], 2, "cpu") is None  # whole rows
