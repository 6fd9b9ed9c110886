"""``torch.compile`` of the ACT loss head gives the eager numbers (the official trainer compiles)."""

import torch
from conftest import tiny_hrm_config

from reasonlens.hrm import ACTLossHead, HRMACTv1


def test_compiled_train_segment_matches_eager():
    config = tiny_hrm_config(vocab_size=11, num_puzzle_identifiers=2, halt_exploration_prob=0.0)
    torch.manual_seed(0)
    model = HRMACTv1(config).train()
    head = ACTLossHead(model)
    compiled = torch.compile(head, dynamic=False)
    g = torch.Generator().manual_seed(0)
    batch = {
        "inputs": torch.randint(1, 11, (4, 8), generator=g),
        "labels": torch.randint(1, 11, (4, 8), generator=g),
        "puzzle_identifiers": torch.tensor([0, 1, 1, 0], dtype=torch.int32),
    }
    results = []
    for fn in (head, compiled):
        carry = head.initial_carry(batch)
        losses, grads = [], []
        for _ in range(3):  # persistent carry: segments 1..3, the last one halts every row
            carry, loss, _, outputs, _ = fn(carry, batch, return_keys=["logits"])
            loss.backward()
            losses.append(loss.detach())
            grads.append(model.inner.L_level.layers[0].mlp.down_proj.weight.grad.clone())
            model.zero_grad()
        results.append((torch.stack(losses), torch.stack(grads), carry.halted))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-4, atol=1e-6)
    assert torch.equal(results[1][2], results[0][2]) and results[0][2].all()
