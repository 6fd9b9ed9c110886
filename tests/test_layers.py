"""Components against their definitions: RMSNorm, RoPE, attention layout, SwiGLU, post-norm block,
input injection, casted layers and the truncated-normal init."""

import math

import pytest
import torch
import torch.nn.functional as F

from reasonlens.hrm.models.layers import (
    Attention,
    Block,
    CastedLinear,
    ReasoningModule,
    RotaryEmbedding,
    SwiGLU,
    apply_rotary_pos_emb,
    rms_norm,
    swiglu_intermediate_size,
    trunc_normal_init_,
)


def test_rms_norm_is_weightless_fp32_and_keeps_dtype():
    x = torch.randn(3, 5, 64) * 7
    out = rms_norm(x, 1e-5)
    torch.testing.assert_close(out.square().mean(-1), torch.ones(3, 5), rtol=1e-4, atol=1e-4)
    xb = x.to(torch.bfloat16)
    outb = rms_norm(xb, 1e-5)
    assert outb.dtype == torch.bfloat16
    expected = (xb.float() * torch.rsqrt(xb.float().square().mean(-1, keepdim=True) + 1e-5)).to(torch.bfloat16)
    assert torch.equal(outb, expected)  # statistics in fp32, one rounding at the end


def test_rope_scores_depend_only_on_relative_position():
    rope = RotaryEmbedding(dim=16, max_position_embeddings=12, base=10000.0)
    cos, sin = rope()
    q = torch.randn(1, 1, 1, 16).expand(1, 12, 1, 16)
    k = torch.randn(1, 1, 1, 16).expand(1, 12, 1, 16)
    qr, kr = apply_rotary_pos_emb(q, k, cos, sin)
    scores = torch.einsum("bshd,bthd->st", qr, kr)
    for offset in range(-3, 4):
        diagonal = torch.diagonal(scores, offset)
        torch.testing.assert_close(diagonal, diagonal[0].expand_as(diagonal), rtol=1e-4, atol=1e-4)
    # position 0 is the identity rotation; the rotation preserves norms
    torch.testing.assert_close(qr[:, 0], q[:, 0])
    torch.testing.assert_close(qr.norm(dim=-1), q.norm(dim=-1))


def test_rope_rotates_in_fp32_and_returns_input_dtype():
    rope = RotaryEmbedding(dim=8, max_position_embeddings=4, base=10000.0)
    q = torch.randn(2, 4, 3, 8, dtype=torch.bfloat16)
    qr, _ = apply_rotary_pos_emb(q, q, *rope())
    assert qr.dtype == torch.bfloat16
    cos, sin = rope()
    half = torch.cat((-q.float()[..., 4:], q.float()[..., :4]), -1)
    expected = (q.float() * cos.unsqueeze(-2) + half * sin.unsqueeze(-2)).to(torch.bfloat16)
    assert torch.equal(qr, expected)


def test_attention_layout_and_math():
    torch.manual_seed(0)
    attn = Attention(hidden_size=32, head_dim=8, num_heads=4)
    x = torch.randn(2, 5, 32)
    qkv = x @ attn.qkv_proj.weight.T  # (B, S, 96): [Q heads | K heads | V heads]
    q, k, v = (qkv[..., i * 32 : (i + 1) * 32].view(2, 5, 4, 8).transpose(1, 2) for i in range(3))
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), dim=-1)  # bidirectional, no mask
    expected = (weights @ v).transpose(1, 2).reshape(2, 5, 32) @ attn.o_proj.weight.T
    torch.testing.assert_close(attn(x, None), expected, rtol=1e-5, atol=1e-5)


def test_swiglu_rounding_and_gate_first():
    assert swiglu_intermediate_size(512, 4) == 1536
    assert swiglu_intermediate_size(97, 4) == 512  # TRM's sequence MLP on Sudoku (81 + 16 positions)
    assert swiglu_intermediate_size(64, 2.6667) == 256
    torch.manual_seed(0)
    mlp = SwiGLU(16, 4)
    x = torch.randn(3, 16)
    hidden = x @ mlp.gate_up_proj.weight.T
    gate, up = hidden[:, :256], hidden[:, 256:]
    torch.testing.assert_close(mlp(x), (F.silu(gate) * up) @ mlp.down_proj.weight.T)


def test_block_is_post_norm_and_module_injects_first():
    torch.manual_seed(0)
    block = Block(hidden_size=32, num_heads=4, expansion=2, norm_eps=1e-5)
    out = block(torch.randn(2, 6, 32) * 10)
    torch.testing.assert_close(out.square().mean(-1), torch.ones(2, 6), rtol=1e-3, atol=1e-3)
    module = ReasoningModule([block])
    state, injection = torch.randn(2, 6, 32), torch.randn(2, 6, 32)
    torch.testing.assert_close(module(state, injection), block(state + injection))


def test_sequence_mlp_block_mixes_positions_and_normalises_over_the_sequence_first():
    torch.manual_seed(0)
    block = Block(hidden_size=8, num_heads=2, expansion=2, norm_eps=1e-5, sequence_mlp_len=6)
    assert not hasattr(block, "self_attn") and block.mlp_t.gate_up_proj.weight.shape[1] == 6
    x = torch.randn(2, 6, 8)
    h = x.transpose(1, 2)
    h = rms_norm(h + block.mlp_t(h), 1e-5).transpose(1, 2)
    torch.testing.assert_close(block(x), rms_norm(h + block.mlp(h), 1e-5))


def test_casted_linear_keeps_fp32_master_weights():
    layer = CastedLinear(8, 4, bias=True)
    x = torch.randn(2, 8, dtype=torch.bfloat16, requires_grad=True)
    y = layer(x)
    assert y.dtype == torch.bfloat16 and layer.weight.dtype == torch.float32
    y.float().sum().backward()
    assert layer.weight.grad.dtype == torch.float32
    assert torch.all(layer.bias == 0)


@pytest.mark.parametrize("std", [1.0, 0.02])
def test_truncated_normal_has_the_requested_std(std):
    torch.manual_seed(0)
    t = trunc_normal_init_(torch.empty(200_000), std=std)
    assert t.std().item() == pytest.approx(std, rel=0.01)
    assert t.abs().max().item() <= 2.28 * std and t.abs().max().item() >= 2.2 * std
    assert torch.count_nonzero(trunc_normal_init_(torch.ones(10), std=0)) == 0
