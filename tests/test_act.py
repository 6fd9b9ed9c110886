"""The ACT wrapper's carry semantics and halting rules (sapientinc/HRM
``HierarchicalReasoningModel_ACTV1.forward``), for HRM and TRM."""

import pytest
import torch
from conftest import tiny_hrm_config

from reasonlens.hrm import TRM, HRMACTv1, TransformerACT


def config(**overrides):
    small = dict(seq_len=6, vocab_size=5, hidden_size=16, H_cycles=1, halt_max_steps=4, puzzle_emb_ndim=16)
    small.update(halt_exploration_prob=0.0, num_puzzle_identifiers=3, batch_size=3)
    return tiny_hrm_config(**{**small, **overrides})


def batch(seed, n=3):
    g = torch.Generator().manual_seed(seed)
    return {
        "inputs": torch.randint(0, 5, (n, 6), generator=g),
        "puzzle_identifiers": torch.randint(0, 3, (n,), generator=g, dtype=torch.int32),
    }


def test_initial_carry_has_every_slot_halted():
    model = HRMACTv1(config())
    carry = model.initial_carry(batch(0))
    assert carry.halted.all() and carry.steps.tolist() == [0, 0, 0]
    assert carry.steps.dtype == torch.int32 and set(carry.current_data) == {"inputs", "puzzle_identifiers"}


def test_halted_slots_reset_and_take_new_data_others_keep_theirs():
    torch.manual_seed(0)
    model = HRMACTv1(config()).eval()
    first, second = batch(1), batch(2)
    with torch.no_grad():
        carry, _ = model(model.initial_carry(first), first)
        carry.halted = torch.tensor([True, False, False])
        new_carry, outputs = model(carry, second)
        # slot 0 restarted on row 0 of the new batch; slots 1, 2 kept working on the first batch
        assert torch.equal(new_carry.current_data["inputs"][0], second["inputs"][0])
        assert torch.equal(new_carry.current_data["inputs"][1:], first["inputs"][1:])
        assert new_carry.steps.tolist() == [1, 2, 2]
        # slot 0 equals a fresh start on the new row; slot 1 equals continuing the old one
        fresh, fresh_out = model(model.initial_carry(second), second)
        torch.testing.assert_close(outputs["logits"][0], fresh_out["logits"][0])
        torch.testing.assert_close(new_carry.inner_carry.z_H[0], fresh.inner_carry.z_H[0])
        assert not torch.allclose(outputs["logits"][1], fresh_out["logits"][1])


def test_eval_runs_exactly_halt_max_steps_whatever_q_says():
    model = HRMACTv1(config()).eval()
    with torch.no_grad():
        model.inner.q_head.bias.copy_(torch.tensor([10.0, -10.0]))  # "halt now" everywhere
        carry = model.initial_carry(batch(0))
        for step in range(1, 5):
            carry, outputs = model(carry, batch(0))
            assert carry.halted.all() == (step == 4)
    assert "target_q_continue" not in outputs


def test_training_halts_on_q_and_exploration_delays_it():
    model = HRMACTv1(config()).train()
    with torch.no_grad():
        model.inner.q_head.bias.copy_(torch.tensor([10.0, -10.0]))
    carry, outputs = model(model.initial_carry(batch(0)), batch(0))
    assert carry.halted.all() and carry.steps.tolist() == [1, 1, 1]
    model.config.halt_exploration_prob = 1.0  # every slot draws a minimum of 2..max steps
    torch.manual_seed(0)
    carry, _ = model(model.initial_carry(batch(0)), batch(0))
    assert not carry.halted.any()


def test_target_q_is_the_next_segments_q():
    torch.manual_seed(0)
    model = HRMACTv1(config(halt_max_steps=2)).train()
    with torch.no_grad():
        model.inner.q_head.weight.normal_()
    data = batch(0)
    carry0 = model.initial_carry(data)
    carry1, out1 = model(carry0, data)
    # target = sigmoid(max(next q_halt, next q_continue)) computed from the new carry on the same data
    following = model.inner(carry1.inner_carry, carry1.current_data)
    next_halt, next_cont = following.q_halt, following.q_continue
    torch.testing.assert_close(out1["target_q_continue"], torch.sigmoid(torch.maximum(next_halt, next_cont)))
    carry2, out2 = model(carry1, data)  # last step: the target uses q_halt only
    next_halt = model.inner(carry2.inner_carry, carry2.current_data).q_halt
    assert carry2.halted.all()
    torch.testing.assert_close(out2["target_q_continue"], torch.sigmoid(next_halt))


def test_single_step_models_skip_act_in_training():
    model = HRMACTv1(config(halt_max_steps=1)).train()
    carry, outputs = model(model.initial_carry(batch(0)), batch(0))
    assert carry.halted.all() and "target_q_continue" not in outputs


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_forward_dtypes(dtype):
    model = HRMACTv1(config(forward_dtype=dtype))
    carry, outputs = model(model.initial_carry(batch(0)), batch(0))
    assert outputs["logits"].dtype == getattr(torch, dtype)
    assert carry.inner_carry.z_H.dtype == getattr(torch, dtype)
    assert outputs["q_halt_logits"].dtype == torch.float32 and outputs["target_q_continue"].dtype == torch.float32


def test_batch_size_other_than_configured_works_in_training():
    model = HRMACTv1(config(batch_size=3)).train()
    data = batch(0, n=5)
    carry, outputs = model(model.initial_carry(data), data)
    outputs["logits"].sum().backward()
    assert model.puzzle_emb.local_weights.grad.shape == (5, 16)


def test_trm_halts_on_q_halt_alone_and_has_no_target_by_default():
    model = TRM(config(H_cycles=2, L_cycles=2, puzzle_emb_len=2)).train()
    with torch.no_grad():
        model.inner.q_head.bias.copy_(torch.tensor([0.5, 3.0]))  # q_halt > 0 but < q_continue
    carry, outputs = model(model.initial_carry(batch(0)), batch(0))
    assert carry.halted.all() and "target_q_continue" not in outputs
    model = TRM(config(H_cycles=2, L_cycles=2, no_ACT_continue=False)).train()
    with torch.no_grad():
        model.inner.q_head.bias.copy_(torch.tensor([0.5, 3.0]))
    carry, outputs = model(model.initial_carry(batch(0)), batch(0))
    assert not carry.halted.any() and "target_q_continue" in outputs


def test_transformer_baseline_act_switch():
    model = TransformerACT(config(H_layers=2)).train()
    with torch.no_grad():
        model.inner.q_head.bias.copy_(torch.tensor([10.0, -10.0]))
    carry, outputs = model(model.initial_carry(batch(0)), batch(0))
    assert carry.halted.all() and "target_q_continue" in outputs and carry.inner_carry.z_L is None
    model.config.act_enabled = False
    carry, outputs = model(model.initial_carry(batch(0)), batch(0))
    assert not carry.halted.any() and "target_q_continue" not in outputs


def test_model_without_puzzle_embedding_says_so():
    model = HRMACTv1(config(puzzle_emb_ndim=0))
    with pytest.raises(AttributeError, match="puzzle_emb_ndim is 0"):
        _ = model.puzzle_emb
