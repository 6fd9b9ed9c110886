"""Attribution patching (:mod:`reasonlens.interp.attribution`): the estimate is exact where the metric is
linear in the patched site (every op, position and unit selection, a module called twice), only an
approximation before a nonlinearity; the HRM's gradient reaches every ACT step and equals finite
differences; the agreement scores; sweeps pause the garbage collector and turn it back on."""

import pytest
import torch
from conftest import build_sorting_dataset, tiny_hrm_config
from torch import nn

from reasonlens.hrm import HRMACTv1
from reasonlens.hrm.analysis.adapter import HRMAdapter
from reasonlens.hrm.models.study_variants import HRMACTv1Study
from reasonlens.interp import Experiment, InterpError, Intervention, capture, run_sweep
from reasonlens.interp.attribution import agreement, attribution_sweep


class Chain(nn.Module):
    """tanh(embed(x)) then ``mid`` twice (linear) then a linear head: the metric is linear in every
    call of ``mid`` and in ``head``, not in ``embed``."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(3, 8)
        self.mid = nn.Linear(8, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.mid(self.mid(torch.tanh(self.embed(x)))))


class ChainAdapter:
    def __init__(self, n=8, seq=5):
        torch.manual_seed(0)
        self.model, self.aliases = Chain().eval(), {}
        self.inputs = 2 * torch.randn(n, seq, 3)

    def batch(self, indices):
        return {"x": self.inputs[list(indices)]}

    def run(self, batch):
        return self.model(batch["x"])

    def score(self, outputs, batch):
        return {"margin": (outputs[..., 0] - outputs[..., 1]).sum(1), "out": outputs}


def specs():
    yield Intervention("mid", calls=(0,))
    yield Intervention("mid", positions=(1, 3), calls=(1,), units=(0, 5, 6))
    yield Intervention("mid", positions=(4,), calls=(1,))
    yield Intervention("head", units=(1,))
    yield Intervention("mid", calls=(1,), op="zero")
    yield Intervention("mid", positions=(0, 2), calls=(0,), op="mean")


def test_attribution_is_exact_where_the_metric_is_linear_in_the_site():
    adapter = ChainAdapter()
    with torch.inference_mode(), capture(adapter.model, ["mid", "embed"]) as reference:
        adapter.run(adapter.batch(range(8)))
    experiments = [Experiment(t, s, (i,)) for i in specs() for s, t in ((0, 1), (2, 3), (4, 5))]
    two_sites = (Intervention("mid", positions=(0,), calls=(0,)), Intervention("head", positions=(2,)))
    experiments.append(Experiment(6, 7, two_sites))  # on separate paths: the first-order terms add up exactly
    exact_base, exact = run_sweep(adapter, experiments, reference=reference)
    estimated_base, estimated = attribution_sweep(adapter, experiments, "margin", reference=reference)
    for target, scores in exact_base.items():  # the baselines carry every score, as run_sweep's do
        assert estimated_base[target]["margin"] == pytest.approx(scores["margin"], abs=1e-5)
        assert estimated_base[target].keys() == scores.keys()
    for experiment, a, b in zip(experiments, exact, estimated):
        assert b["margin"] == pytest.approx(a["margin"], abs=1e-4), experiment.interventions
    assert len({round(b["margin"], 3) for b in estimated}) > 10  # the patches do different things

    before_tanh = [Experiment(t, s, (Intervention("embed", positions=(p,)),)) for p in range(5) for s, t in ((0, 1),)]
    _, exact = run_sweep(adapter, before_tanh)
    _, estimated = attribution_sweep(adapter, before_tanh, "margin")
    gaps = [abs(a["margin"] - b["margin"]) for a, b in zip(exact, estimated)]
    assert max(gaps) > 1e-3  # before a nonlinearity it is only a first-order estimate
    on_one_path = [Experiment(1, 0, (Intervention("mid", positions=(4,)),))]  # call 1 overwrites what call 0 fed it
    (exact,) = run_sweep(adapter, on_one_path)[1]
    (estimated,) = attribution_sweep(adapter, on_one_path, "margin")[1]
    assert abs(exact["margin"] - estimated["margin"]) > 1e-3  # the estimate counts both terms


def test_attribution_bad_input():
    adapter = ChainAdapter()
    with pytest.raises(InterpError, match="unknown metric 'nope'"):
        attribution_sweep(adapter, [Experiment(1, 0, (Intervention("mid"),))], "nope")
    with pytest.raises(InterpError, match="one real number per row"):
        attribution_sweep(adapter, [Experiment(1, 0, (Intervention("mid"),))], "out")
    with pytest.raises(InterpError, match="not 'scale'"):
        attribution_sweep(adapter, [Experiment(1, 0, (Intervention("mid", op="scale", value=2.0),))], "margin")


def test_hrm_attribution_reaches_every_act_step(tmp_path):
    data = build_sorting_dataset(tmp_path / "sorting", n_train=16, n_test=8)
    torch.manual_seed(0)
    config = tiny_hrm_config(seq_len=6, vocab_size=11, num_puzzle_identifiers=3)
    adapter = HRMAdapter(HRMACTv1(config), data, "test", device="cpu")
    batch = adapter.batch([0, 1])
    with torch.inference_mode():
        assert torch.equal(adapter.run_with_grad(batch), adapter.run(batch))

    def logit_sum(scores):  # a smooth metric of the last step's answer
        return scores["logits"].sum((1, 2))

    adapter_score = adapter.score
    adapter.score = lambda logits, batch: {**adapter_score(logits, batch), "logits": logits}
    experiments = [
        Experiment(1, 0, (Intervention(site, calls=(step,)),)) for site in ("z_H", "z_L") for step in range(3)
    ]
    base, estimated = attribution_sweep(adapter, experiments, logit_sum)
    changes = [e["metric"] - base[1]["metric"] for e in estimated]
    assert all(abs(c) > 0 for c in changes)  # the model's own forward would give 0 before the last step

    # the gradient it uses is the model's: zeroing one unit is estimated as -a * g, and an exact patch that
    # adds eps to that unit changes the metric by about eps * g (central difference), at every step
    with torch.inference_mode(), capture(adapter.model, ["z_H", "z_L"], adapter.aliases) as cache:
        adapter.run(adapter.batch([1]))
    units = [
        (site, step, adapter.prefix_len + cell, unit)
        for site in ("z_H", "z_L")
        for step in range(3)
        for cell, unit in ((0, 3), (4, 17))
    ]
    zeroed = [
        Experiment(1, 0, (Intervention(s, positions=(p,), calls=(k,), units=(u,), op="zero"),)) for s, k, p, u in units
    ]
    _, estimated = attribution_sweep(adapter, zeroed, logit_sum)
    eps = 1e-2
    nudged = [
        Experiment(1, 1, (Intervention(s, positions=(p,), calls=(k,), units=(u,), op="add", value=sign * eps),))
        for s, k, p, u in units
        for sign in (1, -1)
    ]
    adapter.score = lambda logits, batch: {"metric": logit_sum({"logits": logits})}
    _, exact = run_sweep(adapter, nudged)
    for i, (site, step, position, unit) in enumerate(units):
        value = cache[(site, step)][0, position, unit].item()
        gradient = -(estimated[i]["metric"] - base[1]["metric"]) / value
        difference = (exact[2 * i]["metric"] - exact[2 * i + 1]["metric"]) / (2 * eps)
        assert difference == pytest.approx(gradient, rel=2e-2, abs=1e-3), (site, step, position, unit)
    study = HRMAdapter(HRMACTv1Study({**config, "state_noise": 0.1}), data, "test", device="cpu")
    with pytest.raises(InterpError, match="known recursion"):
        attribution_sweep(study, experiments, "accuracy")


def test_agreement_scores():
    perfect = agreement([3.0, -1.0, 2.0, 0.5], [30.0, -10.0, 20.0, 5.0], k=2)
    assert perfect["spearman"] == pytest.approx(1.0) and perfect["top_k_overlap"] == 1.0
    reversed_ = agreement([1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0], k=1)
    assert reversed_["spearman"] == pytest.approx(-1.0) and reversed_["top_k_overlap"] == 0.0
    ties = agreement([1.0, 1.0, 2.0], [5.0, 5.0, 9.0])
    assert ties["spearman"] == pytest.approx(1.0)
    with pytest.raises(InterpError):
        agreement([1.0], [1.0])


def test_sweeps_pause_the_garbage_collector_and_turn_it_back_on():
    import gc

    adapter = ChainAdapter()
    experiments = [Experiment(1, 0, (Intervention("mid", calls=(0,)),))]
    seen = []
    score = adapter.score
    adapter.score = lambda outputs, batch: seen.append(gc.isenabled()) or score(outputs, batch)
    run_sweep(adapter, experiments)
    attribution_sweep(adapter, experiments, "margin")
    assert seen and not any(seen) and gc.isenabled()  # paused while sweeping, on again after
    with pytest.raises(InterpError):
        run_sweep(adapter, [Experiment(1, None, (Intervention("mid"),))])  # a patch without a source
    assert gc.isenabled()
