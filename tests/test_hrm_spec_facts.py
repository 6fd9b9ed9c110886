"""Facts of the official HRM / TRM code (sapientinc/HRM, TinyRecursiveModels) checked on our models:
parameter counts, state-dict layout, the per-segment call schedule and gradient flags, O(1) training
memory in the number of cycles, initialisation, and the loss sanity values of a random model."""

import math

import pytest
import torch
from conftest import tiny_hrm_config

from reasonlens.hrm import TRM, ACTLossHead, HRMACTv1, TransformerACT
from reasonlens.utils.memory import count_saved_bytes

SUDOKU = dict(seq_len=81, vocab_size=11, puzzle_emb_ndim=512)
MAZE = dict(seq_len=900, vocab_size=6, puzzle_emb_ndim=512)
ARC = dict(seq_len=900, vocab_size=12, puzzle_emb_ndim=512, num_puzzle_identifiers=3)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("cls", "data", "extra", "expected"),
    [
        (HRMACTv1, SUDOKU, {}, 27_275_266),
        (HRMACTv1, MAZE, {}, 27_270_146),
        (HRMACTv1, ARC, {}, 27_276_290),
        (TRM, SUDOKU, {}, 6_828_034),
        (TRM, MAZE, {}, 6_822_914),
        (TRM, ARC, {}, 6_829_058),
        (TRM, SUDOKU, dict(mlp_t=True, pos_encodings="none"), 5_028_866),
        (TRM, MAZE, dict(mlp_t=True, pos_encodings="none"), 18_795_522),
        (TRM, ARC, dict(mlp_t=True, pos_encodings="none"), 18_801_666),
        (TransformerACT, SUDOKU, {}, 27_275_266),  # 8 blocks = HRM's 4 + 4
    ],
)
def test_parameter_counts_match_official(cls, data, extra, expected):
    assert n_params(cls({**data, **extra})) == expected


def test_state_dict_layout_of_the_sudoku_model():
    state = HRMACTv1(SUDOKU).state_dict()
    assert len(state) == 39
    expected = {
        "inner.H_init": ((512,), torch.bfloat16),
        "inner.L_init": ((512,), torch.bfloat16),
        "inner.embed_tokens.embedding_weight": ((11, 512), torch.float32),
        "inner.lm_head.weight": ((11, 512), torch.float32),
        "inner.q_head.weight": ((2, 512), torch.float32),
        "inner.q_head.bias": ((2,), torch.float32),
        "inner.puzzle_emb.weights": ((1, 512), torch.float32),
    }
    for level in ("H_level", "L_level"):
        for i in range(4):
            prefix = f"inner.{level}.layers.{i}."
            expected[prefix + "self_attn.qkv_proj.weight"] = ((1536, 512), torch.float32)
            expected[prefix + "self_attn.o_proj.weight"] = ((512, 512), torch.float32)
            expected[prefix + "mlp.gate_up_proj.weight"] = ((3072, 512), torch.float32)
            expected[prefix + "mlp.down_proj.weight"] = ((512, 1536), torch.float32)
    assert {k: (tuple(v.shape), v.dtype) for k, v in state.items()} == expected
    block = HRMACTv1(SUDOKU).inner.H_level.layers[0]
    assert sum(p.numel() for p in block.parameters()) == 3_407_872


def tiny(**overrides):
    return tiny_hrm_config(**overrides)


def make_batch(config, batch_size=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "inputs": torch.randint(0, config["vocab_size"], (batch_size, config["seq_len"]), generator=g),
        "labels": torch.randint(1, config["vocab_size"], (batch_size, config["seq_len"]), generator=g),
        "puzzle_identifiers": torch.zeros(batch_size, dtype=torch.int32),
    }


def record_calls(model, names):
    """Hook the named submodules; return a list that fills with (name, output requires grad)."""
    calls = []
    for name in names:
        module = model.get_submodule(name)
        module.register_forward_hook(lambda m, i, o, name=name: calls.append((name.split(".")[-1], o.requires_grad)))
    return calls


def test_hrm_segment_schedule_and_one_step_gradient():
    """H=2, L=2: L, L, H, L without grad, then L, H with grad; training adds the 6-call target-Q pass."""
    config = tiny()
    model = HRMACTv1(config)
    calls = record_calls(model, ["inner.L_level", "inner.H_level"])
    batch = make_batch(config)
    model.eval()
    model(model.initial_carry(batch), batch)
    assert calls == [
        ("L_level", False),
        ("L_level", False),
        ("H_level", False),
        ("L_level", False),
        ("L_level", True),
        ("H_level", True),
    ]
    calls.clear()
    model.train()
    model(model.initial_carry(batch), batch)
    assert len(calls) == 12 and [g for _, g in calls] == [False] * 4 + [True] * 2 + [False] * 6


@pytest.mark.parametrize(("h_cycles", "l_cycles"), [(1, 1), (3, 2), (2, 4)])
def test_hrm_call_counts_for_other_schedules(h_cycles, l_cycles):
    config = tiny(H_cycles=h_cycles, L_cycles=l_cycles)
    model = HRMACTv1(config).eval()
    calls = record_calls(model, ["inner.L_level", "inner.H_level"])
    batch = make_batch(config)
    model(model.initial_carry(batch), batch)
    assert [n for n, _ in calls].count("L_level") == h_cycles * l_cycles
    assert [n for n, _ in calls].count("H_level") == h_cycles
    assert [g for _, g in calls] == [False] * (h_cycles * l_cycles + h_cycles - 2) + [True, True]


def test_gradient_reaches_parameters_only_through_the_last_calls():
    """Recompute the segment by hand: no-grad states from the model's own no-grad part, then only the
    last L and H calls with autograd. The parameter gradients must be identical."""
    config = tiny()
    torch.manual_seed(0)
    model = HRMACTv1(config).eval()
    inner = model.inner
    batch = make_batch(config)
    carry = model.initial_carry(batch)
    carry.halted[:] = False
    carry.current_data = dict(batch)
    carry.inner_carry = inner.reset_carry(torch.ones(4, dtype=torch.bool), carry.inner_carry)
    _, outputs = model(carry, batch)
    outputs["logits"].float().square().sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert set(grads) == {n for n, _ in model.named_parameters() if "q_head" not in n}
    model.zero_grad()

    x = inner.input_embeddings(batch["inputs"], batch["puzzle_identifiers"])
    cos_sin = inner.cos_sin()
    with torch.no_grad():
        z_H, z_L = carry.inner_carry.z_H, carry.inner_carry.z_L
        z_L = inner.L_level(z_L, z_H + x, cos_sin)
        z_L = inner.L_level(z_L, z_H + x, cos_sin)
        z_H = inner.H_level(z_H, z_L, cos_sin)
        z_L = inner.L_level(z_L, z_H + x, cos_sin)
    z_L = inner.L_level(z_L, z_H + x, cos_sin)
    z_H = inner.H_level(z_H, z_L, cos_sin)
    inner.lm_head(z_H)[:, inner.puzzle_emb_len :].float().square().sum().backward()
    for name, param in model.named_parameters():
        if "q_head" in name:
            continue  # the logits do not depend on the Q head
        torch.testing.assert_close(param.grad, grads[name], rtol=1e-5, atol=1e-7, msg=name)


def saved_tensor_bytes(model, config):
    """Bytes autograd keeps for backward during one training segment (what scales activation memory)."""
    head = ACTLossHead(model)
    batch = make_batch(config)
    with count_saved_bytes() as saved:
        _, loss, *_ = head(head.initial_carry(batch), batch)
    loss.backward()
    return saved.total


def test_training_memory_does_not_grow_with_cycles():
    """The 1-step gradient keeps O(1) activations in the recursion depth (seed 003 success metric)."""
    sizes = []
    for h_cycles in (2, 4, 8):
        config = tiny(H_cycles=h_cycles, L_cycles=h_cycles)
        torch.manual_seed(0)
        sizes.append(saved_tensor_bytes(HRMACTv1(config).train(), config))
    assert sizes[0] == sizes[1] == sizes[2] > 0


def test_trm_memory_grows_with_n_because_it_backpropagates_a_full_recursion():
    sizes = []
    for l_cycles in (2, 4):
        config = tiny(L_cycles=l_cycles, H_cycles=3, L_layers=1)
        sizes.append(saved_tensor_bytes(TRM(config).train(), config))
    assert sizes[1] > sizes[0]


def test_initialisation_facts():
    torch.manual_seed(0)
    model = HRMACTv1(SUDOKU)
    inner = model.inner
    assert torch.all(inner.q_head.weight == 0) and inner.q_head.bias.tolist() == [-5.0, -5.0]
    assert torch.count_nonzero(inner.puzzle_emb.weights) == 0
    # H_init / L_init: fixed bf16 buffers with std 1, not parameters
    assert "inner.H_init" not in dict(model.named_parameters())
    assert inner.H_init.dtype == torch.bfloat16 and not inner.H_init.requires_grad
    comp_std = 1.0 / math.sqrt(1 - 4 * math.exp(-2) / math.sqrt(2 * math.pi) / math.erf(2 / math.sqrt(2)))
    for name, param in model.named_parameters():
        if param.ndim != 2 or "q_head" in name:
            continue
        fan_in = param.shape[1]
        target = 1 / math.sqrt(fan_in) if "embed" not in name else 1 / math.sqrt(512)
        assert abs(param.std().item() / target - 1) < 0.03, name  # the *actual* std is the target
        assert param.abs().max().item() <= 2 * comp_std * target * 1.0001, name  # truncated at 2 comp_std
    assert 2.2 < comp_std * 2 < 2.3  # max |w| ≈ 2.27 std (sapientinc/HRM models/common.py::trunc_normal_init_)
    assert inner.rotary_emb.cos_cached.shape == (82, 64) and inner.rotary_emb.cos_cached.dtype == torch.float32


def test_random_model_loss_sanity_values():
    """As measured on the official code (CPU): 4 Sudoku rows at random init give lm_loss ≈ 2.49 per
    sequence and q_halt_loss = 4·log(1 + e^-5)."""
    torch.manual_seed(0)
    model = HRMACTv1({**SUDOKU, "forward_dtype": "float32"})
    batch = make_batch(dict(seq_len=81, vocab_size=11), batch_size=4)
    head = ACTLossHead(model)
    _, loss, metrics, _, _ = head(head.initial_carry(batch), batch)
    assert 2.3 < metrics["lm_loss"].item() / 4 < 2.7
    assert metrics["q_halt_loss"].item() == pytest.approx(4 * math.log1p(math.exp(-5)), rel=2e-5)  # fp32 BCE
    assert loss.dtype == torch.float64  # stablemax runs in float64


def test_input_embedding_scaling_and_prefix():
    torch.manual_seed(0)
    config = tiny(puzzle_emb_ndim=48, hidden_size=32)  # 48 dims → 2 prefix positions, zero padded
    model = HRMACTv1(config).eval()
    inner = model.inner
    with torch.no_grad():
        inner.puzzle_emb.weights.normal_()
    batch = make_batch(config)
    x = inner.input_embeddings(batch["inputs"], batch["puzzle_identifiers"])
    assert inner.puzzle_emb_len == 2 and x.shape == (4, 10, 32)
    scale = math.sqrt(32)
    torch.testing.assert_close(x[:, 2:], scale * inner.embed_tokens.embedding_weight[batch["inputs"]])
    torch.testing.assert_close(x[:, 0], scale * inner.puzzle_emb.weights[0, :32].expand(4, 32))
    torch.testing.assert_close(x[:, 1, :16], scale * inner.puzzle_emb.weights[0, 32:].expand(4, 16))
    assert torch.all(x[:, 1, 16:] == 0)

    learned = HRMACTv1(tiny(pos_encodings="learned")).eval()
    x = learned.inner.input_embeddings(batch["inputs"], batch["puzzle_identifiers"])
    tokens = learned.inner.embed_tokens.embedding_weight[batch["inputs"]]
    positions = learned.inner.embed_pos.embedding_weight
    torch.testing.assert_close(x[:, 1:], scale * 0.707106781 * (tokens + positions[1:]))
