"""Prefix reuse (:mod:`reasonlens.interp.prefix`): a sweep that resumes every patched row from the latest
point before its first patched call gives exactly what full re-runs give, on every family — HRM-ACT-v1
(every ACT step, level and single call, the first and the last), TRM, the transformer baseline and a
study variant, a TransformerLens GPT-2 (every layer, site kind and position) and a Q-network — and the
resumed runs really start late (else the check would prove nothing)."""

import itertools

import pytest
import torch
from conftest import build_sorting_dataset, tiny_hrm_config
from transformer_lens import HookedTransformer, HookedTransformerConfig

from reasonlens.hrm import TRM, HRMACTv1
from reasonlens.hrm.analysis.adapter import HRMAdapter, latent_updates
from reasonlens.hrm.models.baselines import TransformerACT
from reasonlens.hrm.models.study_variants import HRMACTv1Study
from reasonlens.interp import Experiment, Intervention, run_sweep
from reasonlens.interp.prefix import Prefixes, first_calls, probe_points
from reasonlens.lm.analysis.hooks import LMAdapter, PromptSet


def assert_same_sweeps(adapter, experiments, chunk_size=7):
    """Resumed == full re-run; returns the points the experiments resumed from. A resumed row shares its
    prefix with its target's batch, a re-run row with its chunk, and a matrix product may round a row
    differently in batches of other sizes: metrics agree to float32 rounding, decisions exactly (the
    replay test above is the bit-for-bit check on one batch)."""
    reused_base, reused = run_sweep(adapter, experiments, chunk_size=chunk_size)
    full_base, full = run_sweep(adapter, experiments, chunk_size=chunk_size, reuse_prefix=False)
    assert reused_base == full_base
    for experiment, a, b in zip(experiments, reused, full):
        assert a.keys() == b.keys()
        for name in a:
            if isinstance(a[name], float) or (isinstance(a[name], list) and isinstance(a[name][0], float)):
                torch.testing.assert_close(torch.tensor(a[name]), torch.tensor(b[name]), rtol=1e-5, atol=1e-6)
            else:
                assert a[name] == b[name], (experiment.interventions, name)
    calls_before = probe_points(adapter, experiments[0].target, {p for e in experiments for p in _paths(adapter, e)})
    prefixes = Prefixes(calls_before)
    return [prefixes.point_for(first_calls(e.interventions, adapter.model, adapter.aliases, {})) for e in experiments]


def _paths(adapter, experiment):
    return first_calls(experiment.interventions, adapter.model, adapter.aliases, {}).keys()


def assert_points_replay_the_run(adapter, rows):
    """run_points gives run's outputs bit for bit, and resuming at any point with its state does too."""
    batch = adapter.batch(rows)
    states = []
    with torch.inference_mode():
        expected = adapter.run(batch)
        assert torch.equal(adapter.run_points(batch, states.append), expected)
        for point, state in enumerate(states):
            assert torch.equal(adapter.run_from(batch, point, state), expected), point
    return len(states)


# -- HRM family ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sorting(tmp_path_factory):
    return build_sorting_dataset(tmp_path_factory.mktemp("prefix") / "sorting", n_train=16, n_test=8)


def hrm_adapter(model_class, sorting, **overrides):
    torch.manual_seed(0)
    config = tiny_hrm_config(seq_len=6, vocab_size=11, num_puzzle_identifiers=3, **overrides)
    return HRMAdapter(model_class(config), sorting, "test", device="cpu")


def hrm_experiments(adapter, pairs=((0, 1), (2, 3), (4, 5))):
    """Every level at every single ACT step, all steps, the first and the last single module call."""
    sites = ["z_H", "z_L"] if "z_L" in adapter.aliases else ["z_H"]
    modules = sorted({adapter.aliases[s].module for s in sites})
    specs = [(Intervention(site, calls=(step,)),) for site in sites for step in range(adapter.max_steps)]
    specs += [tuple(Intervention(site) for site in sites)]  # every step of both levels
    calls = adapter.sites()
    for module in modules:  # the very first and the very last call of each reasoning module
        specs += [(Intervention(module, calls=(0,)),), (Intervention(module, calls=(calls[module].calls - 1,)),)]
    specs += [(Intervention("z_H", positions=(1, 4), calls=(1,), units=(0, 5)),)]
    specs += [(Intervention("z_H", calls=(2,), op="zero"),)]
    return [Experiment(t, s, spec) for spec in specs for s, t in pairs]


@pytest.mark.parametrize("model_class", [HRMACTv1, TRM, TransformerACT])
def test_hrm_family_resumes_exactly(sorting, model_class):
    adapter = hrm_adapter(model_class, sorting)
    updates = latent_updates(adapter.model)
    points = assert_points_replay_the_run(adapter, [0, 1, 2])
    assert points == adapter.max_steps * (len(updates) + 1)
    experiments = hrm_experiments(adapter)
    chosen = assert_same_sweeps(adapter, experiments)
    assert max(p for p in chosen if p is not None) >= (adapter.max_steps - 1) * (len(updates) + 1)  # late resumes
    last = next(i for i, e in enumerate(experiments) if e.interventions[0].calls == (adapter.max_steps - 1,))
    assert chosen[last] == adapter.max_steps * (len(updates) + 1) - 1  # z_X@last: only the last update reruns


def test_hrm_zh_patch_resumes_before_the_last_high_update(sorting):
    adapter = hrm_adapter(HRMACTv1, sorting, L_cycles=3)
    experiments = [Experiment(1, 0, (Intervention("z_H", calls=(1,)),))]
    (point,) = assert_same_sweeps(adapter, experiments)
    per_step = len(latent_updates(adapter.model)) + 1  # (L, L, L, H) x 2 + the step start
    assert point == per_step + per_step - 1  # step 1, before its last update (the final H)


def test_an_unknown_recursion_resumes_at_act_steps(sorting):
    adapter = hrm_adapter(HRMACTv1Study, sorting, state_noise=0.1)  # training-only noise: eval is plain HRM
    assert latent_updates(adapter.model) is None
    assert assert_points_replay_the_run(adapter, [0, 1]) == adapter.max_steps - 1
    chosen = assert_same_sweeps(adapter, hrm_experiments(adapter))
    assert max(p for p in chosen if p is not None) == adapter.max_steps - 2


# -- GPT-2 under TransformerLens --------------------------------------------------------------


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(0)
    config = HookedTransformerConfig(
        n_layers=3, d_model=32, n_ctx=12, d_head=8, n_heads=4, d_vocab=20, act_fn="gelu", normalization_type="LN"
    )
    model = HookedTransformer(config).eval()
    generator = torch.Generator().manual_seed(1)
    lengths = [12, 9, 12, 7]
    input_ids = torch.randint(1, 20, (4, 12), generator=generator)
    mask = torch.zeros(4, 12, dtype=torch.long)
    for row, length in enumerate(lengths):  # left padding, as PromptSet builds it
        input_ids[row, : 12 - length] = 0
        mask[row, 12 - length :] = 1
    prompts = PromptSet(input_ids, mask, torch.tensor([3, 4, 5, 6]), torch.tensor([7, 8, 9, 10]), {})
    return LMAdapter(model, prompts)


def test_gpt2_resumes_exactly_at_every_layer_site_and_position(gpt):
    assert assert_points_replay_the_run(gpt, [0, 1, 2, 3]) == gpt.model.cfg.n_layers + 1
    kinds = ["hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out", "attn.hook_z"]
    experiments = [
        Experiment(target, source, (Intervention(f"blocks.{layer}.{kind}", positions=(position,)),))
        for layer, kind, position in itertools.product(range(3), kinds, range(12))
        for source, target in ((0, 1), (2, 3))
    ]
    experiments += [Experiment(1, 0, (Intervention("hook_embed", positions=(11,)),))]  # before the first point
    experiments += [Experiment(3, 2, (Intervention("ln_final.hook_normalized", positions=(11,)),))]
    chosen = assert_same_sweeps(gpt, experiments, chunk_size=50)
    assert chosen[-2] is None and chosen[-1] == 3
    for experiment, point in zip(experiments[:-2], chosen):
        assert point == int(experiment.interventions[0].site.split(".")[1])  # block l resumes at block l


# -- Q-network ----------------------------------------------------------------------------------


def test_q_network_resumes_exactly(tmp_path):
    from agents_helpers import make_agent_dir

    from reasonlens.agents.experiment import QNetAdapter

    agent = make_agent_dir(tmp_path / "agent", "MiniGrid-LavaCrossingS9N1-v0", seed=0)
    observations = torch.randint(0, 11, (6, agent.obs_dim), generator=torch.Generator().manual_seed(0)).float()
    adapter = QNetAdapter(agent, observations)
    assert assert_points_replay_the_run(adapter, range(6)) == len(agent.q_net.q_net)
    experiments = [
        Experiment(t, t + 3, (Intervention(layer, units=(unit,)),))
        for layer in agent.hidden_layers()
        for unit in range(0, 128, 9)
        for t in range(3)
    ]
    experiments += [Experiment(0, 3, (Intervention("q_net.q_net.2", units=(1, 2)),))]  # the policy's spelling
    experiments += [Experiment(1, 4, (Intervention("q_net"),))]  # the Sequential itself: runs from the start
    chosen = assert_same_sweeps(adapter, experiments, chunk_size=16)
    by_layer = {e.interventions[0].site: p for e, p in zip(experiments, chosen)}
    assert by_layer == {"q_net.0": 0, "q_net.2": 2, "q_net.q_net.2": 2, "q_net": None}
