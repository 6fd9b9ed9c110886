"""Per-puzzle embeddings and the sparse SignSGD optimizer that trains them
(sapientinc/HRM ``models/sparse_embedding.py``).

The table is large (ARC: ~961k ids × 512) and a batch touches few rows, so it is not a Parameter:
``weights`` is a persistent fp32 buffer that the dense optimizer never sees, and training goes through
a per-batch copy ``local_weights`` (requires grad) plus the ids it came from. The optimizer then sums
the gradients of duplicate ids (across ranks when distributed) and applies
``w ← w·(1 − lr·wd) − lr·sign(g)`` to the touched rows only.

Why not ``torch.nn.Embedding(sparse=True)`` + ``torch.optim.SparseAdam``: the official update is
SignSGD with decoupled decay restricted to touched rows, which no torch optimizer implements, and the
state-dict layout (``puzzle_emb.weights``) must match official checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.optim.optimizer import Optimizer

from reasonlens.hrm.models.layers import trunc_normal_init_


class CastedSparseEmbedding(nn.Module):
    """Embedding table trained sparsely. Train mode returns the (grad-tracking) local copy of the
    looked-up rows; eval mode reads the table directly."""

    def __init__(self, num_embeddings: int, embedding_dim: int, batch_size: int, init_std: float, cast_to: torch.dtype):
        super().__init__()
        self.cast_to = cast_to
        self.weights = nn.Buffer(
            trunc_normal_init_(torch.empty((num_embeddings, embedding_dim)), std=init_std), persistent=True
        )
        self.local_weights = nn.Buffer(torch.zeros(batch_size, embedding_dim, requires_grad=True), persistent=False)
        self.local_ids = nn.Buffer(torch.zeros(batch_size, dtype=torch.int32), persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.weights[ids].to(self.cast_to)
        with torch.no_grad():
            if self.local_weights.shape[0] != ids.shape[0]:
                # Another batch size than configured: resize in place (``.data``) so that the tensors
                # an optimizer already holds stay the ones that receive the gradient.
                self.local_weights.data = self.local_weights.new_zeros(ids.shape[0], self.local_weights.shape[1])
                self.local_ids.data = self.local_ids.new_zeros(ids.shape[0])
            self.local_weights.copy_(self.weights[ids])
            self.local_ids.copy_(ids)
        return self.local_weights.to(self.cast_to)

    def parameters(self, recurse: bool = True) -> Iterator[torch.Tensor]:
        """The three tensors the sparse optimizer updates: ``weights``, ``local_weights``, ``local_ids``.

        They are buffers, so ``model.parameters()`` (the dense optimizer's input, the parameter count)
        never includes them; asking the embedding module itself for its parameters returns them, which
        is what seed 004's ``CastedSparseEmbeddingSignSGD_Distributed(model.puzzle_emb.parameters(), ...)``
        relies on. Same tensors as ``.buffers()`` (the official call).
        """
        return iter((self.weights, self.local_weights, self.local_ids))


class CastedSparseEmbeddingSignSGD_Distributed(Optimizer):
    """SignSGD with decoupled weight decay on the rows of the puzzle-embedding table a batch touched.

    ``params``: the embedding's ``weights``, ``local_weights``, ``local_ids`` (in any order, e.g.
    ``model.puzzle_emb.parameters()`` or ``.buffers()``). With ``world_size > 1`` and an initialised
    process group, gradients and ids are all-gathered first, so every rank applies the same update.
    """

    def __init__(self, params: Iterable[torch.Tensor], world_size: int, lr: float = 1e-3, weight_decay: float = 1e-2):
        if lr < 0:
            raise ValueError(f"Invalid learning rate: {lr} (must be >= 0)")
        if weight_decay < 0:
            raise ValueError(f"Invalid weight_decay: {weight_decay} (must be >= 0)")
        if world_size < 1:
            raise ValueError(f"Invalid world_size: {world_size} (must be >= 1)")
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, world_size=world_size))
        for group in self.param_groups:
            self._split_group(group)  # fail at construction, not at the first step

    @staticmethod
    def _split_group(group: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        weights = local_weights = local_ids = None
        for tensor in group["params"]:
            if tensor.requires_grad:
                local_weights = tensor
            elif tensor.ndim == 1:
                local_ids = tensor
            elif tensor.ndim == 2:
                weights = tensor
        if len(group["params"]) != 3 or weights is None or local_weights is None or local_ids is None:
            shapes = [(tuple(t.shape), t.requires_grad) for t in group["params"]]
            raise ValueError(
                "CastedSparseEmbeddingSignSGD_Distributed needs exactly the three tensors of one "
                "CastedSparseEmbedding (weights: 2-D, local_weights: requires grad, local_ids: 1-D), "
                f"e.g. model.puzzle_emb.parameters(); got (shape, requires_grad) = {shapes}"
            )
        return weights, local_weights, local_ids

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            weights, local_weights, local_ids = self._split_group(group)
            if local_weights.grad is None:
                continue  # no backward through the embedding this step
            sparse_signsgd_update(
                local_weights.grad,
                local_ids,
                weights,
                lr=group["lr"],
                weight_decay=group["weight_decay"],
                world_size=group["world_size"],
            )
        return loss


def sparse_signsgd_update(
    local_grad: torch.Tensor,
    local_ids: torch.Tensor,
    weights: torch.Tensor,
    lr: float,
    weight_decay: float,
    world_size: int = 1,
) -> None:
    """In place on ``weights``: gather (if distributed), sum duplicates, sign step, decay touched rows."""
    dim = local_grad.shape[1]
    all_grad, all_ids = local_grad, local_ids
    if world_size > 1 and dist.is_available() and dist.is_initialized():
        all_grad, all_ids = _all_gather(local_grad, world_size), _all_gather(local_ids, world_size)

    touched_ids, inverse = all_ids.unique(return_inverse=True)
    grad = all_grad.new_zeros((touched_ids.shape[0], dim))
    grad.scatter_add_(0, inverse.unsqueeze(-1).expand(-1, dim), all_grad)  # sum per unique id

    rows = weights[touched_ids]
    rows.mul_(1.0 - lr * weight_decay).add_(torch.sign(grad), alpha=-lr)
    weights[touched_ids] = rows


def _all_gather(tensor: torch.Tensor, world_size: int) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0 (rank order), on any backend."""
    if dist.get_backend() == "nccl":
        out = tensor.new_empty((world_size * tensor.shape[0], *tensor.shape[1:]))
        dist.all_gather_into_tensor(out, tensor.contiguous())
        return out
    parts = [torch.empty_like(tensor) for _ in range(world_size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)
