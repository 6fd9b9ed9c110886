"""What a fine-tuning run changed in the weights: per parameter tensor, the share of entries that moved by
more than a tolerance, the size of the update relative to the weights, and for weight matrices the rank of
the update ΔW = W_after − W_before.

Mukherjee et al. (arXiv 2505.11711) found that RL fine-tuning updates a small subset of the parameters
(most entries stay bit-identical in bf16) and that the update of each matrix is nevertheless nearly full
rank, unlike SFT. Both depend on a tolerance on fp32 weights trained with Adam — almost every entry moves
a little — so the shares are reported at several tolerances.
"""

from __future__ import annotations

import torch

from reasonlens.lm.errors import LMError

TOLERANCES = (1e-6, 1e-5, 1e-4, 1e-3)


def update_rank(delta: torch.Tensor, relative: float = 1e-3) -> int:
    """Numerical rank of a matrix: singular values above ``relative`` × the largest."""
    values = torch.linalg.svdvals(delta.double())  # (min(rows, cols),)
    if values.numel() == 0 or values[0] == 0:
        return 0
    return int((values > relative * values[0]).sum())


def weight_updates(before: torch.nn.Module, after: torch.nn.Module, rank_relative: float = 1e-3) -> dict:
    """Per tensor and overall: share of entries changed beyond each of :data:`TOLERANCES`, ‖ΔW‖ / ‖W‖, and for
    2-D weights the rank of ΔW against its full rank."""
    old, new = dict(before.named_parameters()), dict(after.named_parameters())
    if old.keys() != new.keys() or any(old[k].shape != new[k].shape for k in old):
        raise LMError("the two checkpoints have different parameters; compare checkpoints of the same model")
    rows, changed, total = [], {tol: 0 for tol in TOLERANCES}, 0
    for name, weight in old.items():
        delta = (new[name].detach().float() - weight.detach().float()).cpu()
        moved = {tol: int((delta.abs() > tol).sum()) for tol in TOLERANCES}
        row = {
            "name": name,
            "shape": list(delta.shape),
            "changed": {str(tol): count / delta.numel() for tol, count in moved.items()},
            "relative_update": float(delta.norm() / weight.detach().float().norm().clamp_min(1e-12)),
        }
        if delta.ndim == 2 and "wte" not in name and "wpe" not in name:  # matrices, not embedding tables
            row["rank"], row["full_rank"] = update_rank(delta, rank_relative), min(delta.shape)
        rows.append(row)
        total += delta.numel()
        for tol, count in moved.items():
            changed[tol] += count
    matrices = [row for row in rows if "rank" in row]
    return {
        "parameters": total,
        "changed": {str(tol): count / total for tol, count in changed.items()},
        "rank_relative": rank_relative,
        "mean_rank_fraction": (
            sum(row["rank"] / row["full_rank"] for row in matrices) / len(matrices) if matrices else None
        ),
        "tensors": rows,
    }
