"""Parity with the official HRM code: golden numbers recorded from sapientinc/HRM (see
fixtures/official_hrm/README.md) must be reproduced by HRMACTv1, the ACT loss head and the sparse
optimizer: init draws, per-segment logits / Q / carry in eval, and in training the halting decisions
(with exploration), target Q, losses, metrics, every gradient and the puzzle-embedding update.

Tolerances. float32: 1e-5 relative (the math is the same op for op; on this machine kind the match is
in fact bit-exact). bfloat16: 1.6e-2 relative / 1e-2 absolute, i.e. about four bf16 ulps (2^-8 each):
a legitimate re-ordering of one reduction flips last bits, and ~20 chained bf16 layers can grow that by
a few ulps; anything structural (a wrong cast, a missing scale) is off by far more. Discrete outputs
(halted, steps, which data a slot holds) must match exactly.
"""

import json
from pathlib import Path

import pytest
import torch
from conftest import native_bf16_cpu
from safetensors.torch import load_file

from reasonlens.hrm import ACTLossHead, CastedSparseEmbeddingSignSGD_Distributed, HRMACTv1

FIXTURES = Path(__file__).parent / "fixtures" / "official_hrm"
VARIANTS = ["fp32_rope", "bf16_learned"]


ROLLOUT_VARIANTS = [
    "fp32_rope",
    pytest.param(
        "bf16_learned",
        marks=pytest.mark.skipif(not native_bf16_cpu(), reason="recorded with native bf16 (AVX512-BF16)"),
    ),
]
TOLERANCE = {"float32": dict(rtol=1e-5, atol=1e-6), "bfloat16": dict(rtol=1.6e-2, atol=1e-2)}


def load_variant(name):
    tensors = load_file(FIXTURES / f"{name}.safetensors")
    meta = json.loads((FIXTURES / f"{name}.json").read_text())
    return tensors, meta


def section(tensors, prefix):
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def batches(tensors):
    return [section(tensors, f"batch{i}.") for i in range(3)]


def close(actual, expected, meta, **override):
    tol = {**TOLERANCE[meta["config"]["forward_dtype"]], **override}
    torch.testing.assert_close(actual.float(), expected.float(), **tol)


@pytest.mark.parametrize("name", VARIANTS)
def test_init_draws_match_official(name):
    tensors, meta = load_variant(name)
    torch.manual_seed(meta["seed"])
    model = HRMACTv1(meta["config"])
    reference = section(tensors, "init.")
    ours = model.state_dict()
    assert set(ours) == set(reference)
    for key, value in reference.items():
        assert ours[key].dtype == value.dtype, key
        torch.testing.assert_close(ours[key], value, rtol=1e-6, atol=0, msg=key)


@pytest.mark.parametrize("name", ROLLOUT_VARIANTS)
def test_eval_rollout_matches_official(name):
    tensors, meta = load_variant(name)
    model = HRMACTv1(meta["config"])
    model.load_state_dict(section(tensors, "start."))
    model.eval()
    batch = batches(tensors)[0]
    with torch.no_grad():
        carry = model.initial_carry(batch)
        for step in range(meta["eval_steps"]):
            carry, outputs = model(carry, batch)
            ref = section(tensors, f"eval{step}.")
            assert outputs["logits"].dtype == ref["logits"].dtype
            for key in ("logits", "q_halt_logits", "q_continue_logits"):
                close(outputs[key], ref[key], meta)
            close(carry.inner_carry.z_H, ref["z_H"], meta)
            close(carry.inner_carry.z_L, ref["z_L"], meta)
            assert torch.equal(carry.halted, ref["halted"]) and torch.equal(carry.steps, ref["steps"])
    assert carry.halted.all()  # eval always runs exactly halt_max_steps segments


@pytest.mark.parametrize("name", ROLLOUT_VARIANTS)
def test_train_rollout_matches_official(name):
    tensors, meta = load_variant(name)
    config = meta["config"]
    model = HRMACTv1(config)
    model.load_state_dict(section(tensors, "start."))
    model.train()
    head = ACTLossHead(model, meta["loss_type"])
    sparse = CastedSparseEmbeddingSignSGD_Distributed(
        model.puzzle_emb.buffers(), world_size=1, lr=meta["sparse_lr"], weight_decay=meta["sparse_wd"]
    )
    data = batches(tensors)
    torch.manual_seed(meta["train_seed"])  # exploration draws come from the global generator, as upstream
    carry = head.initial_carry(data[0])
    halting_patterns = set()
    for step in range(meta["train_steps"]):
        carry, loss, metrics, outputs, _ = head(carry, data[step % 3], return_keys=["logits", "target_q_continue"])
        (loss / config["batch_size"]).backward()
        ref = section(tensors, f"train{step}.")
        scalars = {k[len(f"train{step}.") :]: v for k, v in meta["scalars"].items() if k.startswith(f"train{step}.")}

        assert torch.equal(carry.halted, ref["halted"]) and torch.equal(carry.steps, ref["steps"])
        for key in ("inputs", "labels", "puzzle_identifiers"):
            assert torch.equal(carry.current_data[key], ref[f"current.{key}"]), key
        halting_patterns.add(tuple(ref["halted"].tolist()))
        close(outputs["logits"], ref["logits"], meta)
        close(outputs["target_q_continue"], ref["target_q_continue"], meta)
        assert str(loss.dtype) == scalars["loss_dtype"]
        close(loss.detach(), torch.tensor(scalars["loss"]), meta)
        for key, value in metrics.items():
            close(value.detach(), torch.tensor(scalars[f"metric.{key}"]), meta, msg=key)
        for param_name, param in model.named_parameters():
            close(param.grad, ref[f"grad.{param_name}"], meta, msg=param_name)
        close(model.puzzle_emb.local_weights.grad, ref["grad.puzzle_local"], meta)

        sparse.step()
        sparse.zero_grad()
        model.zero_grad(set_to_none=True)
        close(model.puzzle_emb.weights, ref["puzzle_weights_after"], meta)
    assert len(halting_patterns) > 1  # the fixture really exercises per-slot halting and resets
