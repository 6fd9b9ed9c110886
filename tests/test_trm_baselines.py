"""TRM's recursion, EMA, the direct-prediction baseline and the paper-notation HRM of seed 003."""

import pytest
import torch
from conftest import tiny_hrm_config

from reasonlens.hrm import EMA, HRM, TRM, HRMACTv1, TransformerACT


def trm_config(**overrides):
    small = dict(seq_len=6, vocab_size=5, hidden_size=16, L_layers=2, H_cycles=3, L_cycles=6, halt_max_steps=4)
    return tiny_hrm_config(**{**small, "puzzle_emb_ndim": 16, "puzzle_emb_len": 4, **overrides})


def batch(n=2, seq_len=6, vocab=5):
    return {"inputs": torch.randint(0, vocab, (n, seq_len)), "puzzle_identifiers": torch.zeros(n, dtype=torch.int32)}


def test_trm_recursion_schedule():
    """T=3, n=6: (T-1)·(n+1) calls without grad, then n+1 with grad: 21 calls, 7 differentiated."""
    model = TRM(trm_config()).eval()
    calls = []
    model.inner.L_level.register_forward_hook(lambda m, i, o: calls.append(o.requires_grad))
    data = batch()
    model(model.initial_carry(data), data)
    assert calls == [False] * 14 + [True] * 7
    assert not hasattr(model.inner, "H_level")
    assert {k.split(".")[1] for k in model.state_dict()} >= {"L_level", "embed_tokens", "q_head"}


def test_trm_prefix_and_sequence_mlp():
    model = TRM(trm_config(mlp_t=True, pos_encodings="none"))
    assert model.inner.puzzle_emb_len == 4 and not hasattr(model.inner, "rotary_emb")
    assert model.inner.L_level.layers[0].mlp_t.gate_up_proj.weight.shape[1] == 10  # seq 6 + prefix 4
    data = batch()
    carry, outputs = model(model.initial_carry(data), data)
    assert carry.inner_carry.z_H.shape == (2, 10, 16) and outputs["logits"].shape == (2, 6, 5)


def test_ema_averages_parameters_not_the_puzzle_table():
    torch.manual_seed(0)
    model = TRM(trm_config())
    ema = EMA(model, rate=0.9)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model.puzzle_emb.weights.fill_(3.0)
    ema.update(model)
    for name, value in ema.shadow.items():
        torch.testing.assert_close(value, 0.9 * start[name] + 0.1 * (start[name] + 1.0))
    assert "inner.puzzle_emb.weights" not in ema.shadow
    averaged = ema.averaged_copy(model)
    torch.testing.assert_close(averaged.inner.lm_head.weight, ema.shadow["inner.lm_head.weight"])
    assert torch.all(averaged.puzzle_emb.weights == 3.0)  # buffers copied as they are
    assert not torch.equal(model.inner.lm_head.weight, averaged.inner.lm_head.weight)
    restored = EMA(model, rate=0.5)
    restored.load_state_dict(ema.state_dict())
    assert restored.rate == 0.9 and torch.equal(
        restored.shadow["inner.lm_head.weight"], ema.shadow["inner.lm_head.weight"]
    )


def test_direct_prediction_baseline_has_hrms_size_and_one_differentiated_pass():
    hrm = HRMACTv1(dict(seq_len=6, vocab_size=5, hidden_size=32, num_heads=2, H_layers=2, L_layers=2))
    direct = TransformerACT(dict(seq_len=6, vocab_size=5, hidden_size=32, num_heads=2, H_layers=4))
    assert sum(p.numel() for p in direct.parameters()) == sum(p.numel() for p in hrm.parameters())
    calls = []
    direct.inner.H_level.register_forward_hook(lambda m, i, o: calls.append(o.requires_grad))
    data = batch()
    direct.eval()(direct.initial_carry(data), data)
    assert calls == [True]


def test_seed_003_minimal_hrm():
    # "Create a minimal test" of seed 003, verbatim
    model = HRM(input_dim=10, hidden_dim=64, output_dim=10, N=2, T=3)
    x = torch.randn(1, 10)
    output = model(x)
    # Verify shape and gradient flow
    assert output.shape == (1, 10)
    output.sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_paper_hrm_updates_h_every_t_steps_with_one_step_gradient():
    model = HRM(input_dim=4, hidden_dim=32, output_dim=3, N=2, T=3, num_layers=1)
    order = []
    model.L_net.register_forward_hook(lambda m, i, o: order.append(("L", o.requires_grad)))
    model.H_net.register_forward_hook(lambda m, i, o: order.append(("H", o.requires_grad)))
    model(torch.randn(5, 4))
    assert order == [("L", False)] * 3 + [("H", False)] + [("L", False)] * 2 + [("L", True), ("H", True)]


def test_paper_hrm_deep_supervision_loop_learns():
    """Seed 003's train_with_deep_supervision pattern on a toy regression: z carried and detached."""
    torch.manual_seed(0)
    model = HRM(input_dim=6, hidden_dim=32, output_dim=2, N=2, T=2, num_layers=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = torch.randn(64, 6)
    y = torch.stack([x[:, :3].sum(-1), x[:, 3:].prod(-1)], -1)
    losses = []
    for _ in range(40):
        z = None  # initial state
        for _segment in range(2):
            z, y_hat = model(z, x)
            loss = torch.nn.functional.mse_loss(y_hat, y)
            z = z.detach()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_paper_hrm_sequences_and_bad_shapes():
    model = HRM(input_dim=3, hidden_dim=16, output_dim=2, seq_len=5)
    assert model(torch.randn(2, 5, 3)).shape == (2, 5, 2)
    with pytest.raises(ValueError, match=r"expects input \(B, 3\) or \(B, 5, 3\)"):
        model(torch.randn(2, 4, 3))
    with pytest.raises(ValueError, match="hidden_dim"):
        HRM(input_dim=3, hidden_dim=30, output_dim=2, num_heads=4)
