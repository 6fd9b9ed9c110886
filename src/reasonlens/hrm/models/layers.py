"""Building blocks of the HRM family, numerically equivalent to the official ``models/layers.py``.

Reads top-down in dependency order: init → norm → casted linear/embedding → positions (RoPE) →
attention → MLPs → block → reasoning module. References: sapientinc/HRM
``models/layers.py`` and ``models/common.py`` (initialisation); TinyRecursiveModels ``models/layers.py``
for the sequence MLP.

Conventions that change numbers and are kept exactly:
- parameters are fp32 master copies cast to the activation dtype at every call ("casted" layers);
- RMSNorm has no weight and runs in fp32; RoPE tables are fp32 and q/k are rotated in fp32;
- the residual stream stays in the forward dtype (bf16 by default).

Attention is ``scaled_dot_product_attention``: no flash-attn or CUDA extension is needed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

CosSin = tuple[torch.Tensor, torch.Tensor]

# --------------------------------------------------------------------------------------------
# Initialisation


def trunc_normal_init_(tensor: torch.Tensor, std: float = 1.0, lower: float = -2.0, upper: float = 2.0):
    """JAX-style truncated normal: samples in [lower, upper] standard deviations whose *actual* std
    equals ``std`` (``torch.nn.init.trunc_normal_`` undershoots it). ``std == 0`` zeroes the tensor.

    Same draws as the official ``trunc_normal_init_`` (one ``uniform_`` per tensor), so a model built
    after the same ``torch.manual_seed`` gets bit-identical weights.
    """
    with torch.no_grad():
        if std == 0:
            return tensor.zero_()
        sqrt2 = math.sqrt(2)
        a, b = math.erf(lower / sqrt2), math.erf(upper / sqrt2)
        z = (b - a) / 2
        c = (2 * math.pi) ** -0.5
        pdf_u, pdf_l = c * math.exp(-0.5 * lower**2), c * math.exp(-0.5 * upper**2)
        # std of a unit normal truncated to [lower, upper]; divide it out so the result has std `std`
        comp_std = std / math.sqrt(1 - (upper * pdf_u - lower * pdf_l) / z - ((pdf_u - pdf_l) / z) ** 2)
        tensor.uniform_(a, b)
        tensor.erfinv_()
        tensor.mul_(sqrt2 * comp_std)
        tensor.clip_(lower * comp_std, upper * comp_std)
    return tensor


# --------------------------------------------------------------------------------------------
# Normalisation


def rms_norm(hidden_states: torch.Tensor, eps: float) -> torch.Tensor:
    """Weightless RMSNorm over the last dim, computed in fp32, returned in the input dtype."""
    input_dtype = hidden_states.dtype
    hidden_states = hidden_states.to(torch.float32)
    variance = hidden_states.square().mean(-1, keepdim=True)
    return (hidden_states * torch.rsqrt(variance + eps)).to(input_dtype)


# --------------------------------------------------------------------------------------------
# Casted layers: fp32 weights, cast to the activation dtype per call


class CastedLinear(nn.Module):
    """Linear layer with truncated-LeCun init (std 1/sqrt(fan_in)); bias (if any) starts at zero."""

    def __init__(self, in_features: int, out_features: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(
            trunc_normal_init_(torch.empty((out_features, in_features)), std=1.0 / math.sqrt(in_features))
        )
        self.bias = nn.Parameter(torch.zeros((out_features,))) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.weight.to(x.dtype), bias=bias)


class CastedEmbedding(nn.Module):
    """Embedding table in fp32, looked up after a cast to ``cast_to``."""

    def __init__(self, num_embeddings: int, embedding_dim: int, init_std: float, cast_to: torch.dtype):
        super().__init__()
        self.cast_to = cast_to
        self.embedding_weight = nn.Parameter(
            trunc_normal_init_(torch.empty((num_embeddings, embedding_dim)), std=init_std)
        )

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.embedding_weight.to(self.cast_to))


# --------------------------------------------------------------------------------------------
# Rotary position embedding (half-rotation / "NeoX" layout, fp32 tables)


class RotaryEmbedding(nn.Module):
    """cos/sin tables of shape (max_positions, head_dim) in fp32; position 0 is the first prefix slot."""

    def __init__(self, dim: int, max_position_embeddings: int, base: float):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))  # (dim/2,)
        t = torch.arange(max_position_embeddings, dtype=torch.float32)
        freqs = torch.outer(t, inv_freq)  # (S, dim/2)
        emb = torch.cat((freqs, freqs), dim=-1)  # (S, dim): both halves share a frequency
        self.cos_cached = nn.Buffer(emb.cos(), persistent=False)
        self.sin_cached = nn.Buffer(emb.sin(), persistent=False)

    def forward(self) -> CosSin:
        return self.cos_cached, self.sin_cached


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary_pos_emb(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """Rotate q, k of shape (B, S, H, D) in the tables' dtype (fp32), return them in their own dtype."""
    orig_dtype = q.dtype
    q, k = q.to(cos.dtype), k.to(cos.dtype)
    cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)  # (S, 1, D): broadcast over heads
    q_embed = (q * cos) + (rotate_half(q) * sin)
    k_embed = (k * cos) + (rotate_half(k) * sin)
    return q_embed.to(orig_dtype), k_embed.to(orig_dtype)


# --------------------------------------------------------------------------------------------
# Attention and MLPs


class Attention(nn.Module):
    """Bidirectional multi-head attention, no mask (padding positions are attended to, as upstream).

    ``qkv_proj`` output features are laid out [Q heads | K heads | V heads], head-major within each,
    which is the official layout (checkpoints load unchanged).
    """

    def __init__(self, hidden_size: int, head_dim: int, num_heads: int):
        super().__init__()
        self.head_dim = head_dim
        self.num_heads = num_heads
        self.output_size = head_dim * num_heads
        self.qkv_proj = CastedLinear(hidden_size, 3 * num_heads * head_dim, bias=False)
        self.o_proj = CastedLinear(self.output_size, hidden_size, bias=False)

    def forward(self, hidden_states: torch.Tensor, cos_sin: CosSin | None) -> torch.Tensor:
        batch_size, seq_len, _ = hidden_states.shape
        qkv = self.qkv_proj(hidden_states).view(batch_size, seq_len, 3 * self.num_heads, self.head_dim)
        query, key, value = qkv.split(self.num_heads, dim=2)  # each (B, S, nh, hd)
        if cos_sin is not None:
            query, key = apply_rotary_pos_emb(query, key, *cos_sin)
        attn = F.scaled_dot_product_attention(
            query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2)
        )  # (B, nh, S, hd)
        attn = attn.transpose(1, 2).reshape(batch_size, seq_len, self.output_size)  # (B, S, nh*hd)
        return self.o_proj(attn)


def swiglu_intermediate_size(hidden_size: int, expansion: float) -> int:
    """Official rounding: round(expansion * hidden * 2/3) up to a multiple of 256 (512, 4 → 1536)."""
    inter = round(expansion * hidden_size * 2 / 3)
    return -(inter // -256) * 256


class SwiGLU(nn.Module):
    """``down(silu(gate) * up)`` with gate = first half of ``gate_up_proj``'s output."""

    def __init__(self, hidden_size: int, expansion: float):
        super().__init__()
        inter = swiglu_intermediate_size(hidden_size, expansion)
        self.gate_up_proj = CastedLinear(hidden_size, inter * 2, bias=False)
        self.down_proj = CastedLinear(inter, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


# --------------------------------------------------------------------------------------------
# Block and reasoning module


class Block(nn.Module):
    """Post-norm transformer block: ``h = norm(h + mix(h)); h = norm(h + mlp(h))``.

    ``mix`` is self-attention, or (TRM's ``mlp_t``) a SwiGLU across the *sequence* axis; in that case
    the first norm also runs over the sequence axis, before transposing back, as TRM does.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        expansion: float,
        norm_eps: float,
        sequence_mlp_len: int | None = None,
    ):
        super().__init__()
        if sequence_mlp_len is None:
            self.self_attn = Attention(hidden_size, hidden_size // num_heads, num_heads)
        else:
            self.mlp_t = SwiGLU(sequence_mlp_len, expansion)
        self.mlp = SwiGLU(hidden_size, expansion)
        self.norm_eps = norm_eps

    def forward(self, hidden_states: torch.Tensor, cos_sin: CosSin | None = None) -> torch.Tensor:
        if hasattr(self, "mlp_t"):
            hidden_states = hidden_states.transpose(1, 2)  # (B, D, S)
            hidden_states = rms_norm(hidden_states + self.mlp_t(hidden_states), self.norm_eps)
            hidden_states = hidden_states.transpose(1, 2)  # (B, S, D)
        else:
            hidden_states = rms_norm(hidden_states + self.self_attn(hidden_states, cos_sin), self.norm_eps)
        return rms_norm(hidden_states + self.mlp(hidden_states), self.norm_eps)


class ReasoningModule(nn.Module):
    """A stack of blocks whose input is ``state + injection`` (HRM's only input-injection mechanism)."""

    def __init__(self, layers: list[Block]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(
        self, hidden_states: torch.Tensor, input_injection: torch.Tensor, cos_sin: CosSin | None = None
    ) -> torch.Tensor:
        hidden_states = hidden_states + input_injection
        for layer in self.layers:
            hidden_states = layer(hidden_states, cos_sin)
        return hidden_states
