"""AdamATan2 against the update of imoneoi/adam-atan2 ``csrc/adam_atan2.cu`` (a float64 reference written per
element), and the sparse SignSGD of sapientinc/HRM ``models/sparse_embedding.py``, single process and
all-gathered across two gloo processes."""

import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from reasonlens.hrm import AdamATan2, CastedSparseEmbedding, CastedSparseEmbeddingSignSGD_Distributed


def reference_adam_atan2(p, grads, lr, betas, wd):
    """Per element, float64, literally the spec: decay, lerp moments, atan2 with bias corrections."""
    p = p.double().clone()
    m = torch.zeros_like(p)
    v = torch.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        g = g.double()
        p = p * (1 - lr * wd)
        m = m + (1 - betas[0]) * (g - m)
        v = v + (1 - betas[1]) * (g * g - v)
        denom = v.sqrt() / math.sqrt(1 - betas[1] ** t)
        p = p - lr / (1 - betas[0] ** t) * torch.atan2(m, denom)
    return p


def run_adam_atan2(p0, grads, lr=1e-2, betas=(0.9, 0.95), wd=0.1):
    param = torch.nn.Parameter(p0.clone())
    opt = AdamATan2([param], lr=lr, betas=betas, weight_decay=wd)
    for g in grads:
        param.grad = g.clone()
        opt.step()
    return param.detach()


def test_adam_atan2_matches_the_spec_formula():
    torch.manual_seed(0)
    p0 = torch.randn(64)
    grads = [torch.randn(64) * 10 ** torch.randint(-3, 2, (64,)).float() for _ in range(6)]
    grads[2][:5] = 0  # zero gradients: atan2(0, 0) = 0, no NaN without an epsilon
    ours = run_adam_atan2(p0, grads)
    torch.testing.assert_close(
        ours.double(), reference_adam_atan2(p0, grads, 1e-2, (0.9, 0.95), 0.1), rtol=1e-6, atol=1e-7
    )
    assert torch.isfinite(ours).all()


def test_adam_atan2_is_invariant_to_gradient_scale():
    torch.manual_seed(1)
    p0 = torch.randn(32)
    grads = [torch.randn(32) for _ in range(4)]
    a = run_adam_atan2(p0, grads)
    b = run_adam_atan2(p0, [g * 1e4 for g in grads])
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_adam_atan2_decay_first_and_zero_lr_is_identity():
    p0 = torch.ones(4)
    decayed_only = run_adam_atan2(p0, [torch.zeros(4)], lr=0.1, wd=0.5)
    torch.testing.assert_close(decayed_only, p0 * (1 - 0.1 * 0.5))
    assert torch.equal(run_adam_atan2(p0, [torch.randn(4)], lr=0.0), p0)


def test_adam_atan2_state_round_trip():
    torch.manual_seed(2)
    p0, grads = torch.randn(8), [torch.randn(8) for _ in range(4)]
    straight = run_adam_atan2(p0, grads)
    param = torch.nn.Parameter(p0.clone())
    opt = AdamATan2([param], lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    for g in grads[:2]:
        param.grad = g.clone()
        opt.step()
    state = opt.state_dict()
    resumed = torch.nn.Parameter(param.detach().clone())
    opt2 = AdamATan2([resumed], lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    opt2.load_state_dict(state)
    for g in grads[2:]:
        resumed.grad = g.clone()
        opt2.step()
    assert torch.equal(resumed.detach(), straight)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(lr=-1), "learning rate"),
        (dict(betas=(0.9, 1.0)), "betas"),
        (dict(weight_decay=-0.1), "weight_decay"),
    ],
)
def test_adam_atan2_rejects_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdamATan2([torch.nn.Parameter(torch.ones(1))], **kwargs)


def make_embedding(num=6, dim=3, batch=4):
    emb = CastedSparseEmbedding(num, dim, batch_size=batch, init_std=0, cast_to=torch.float32)
    with torch.no_grad():
        emb.weights.copy_(torch.arange(num * dim, dtype=torch.float32).view(num, dim) / 10)
    return emb


def test_sign_sgd_sums_duplicates_and_touches_only_batch_rows():
    emb = make_embedding()
    opt = CastedSparseEmbeddingSignSGD_Distributed(emb.parameters(), world_size=1, lr=0.5, weight_decay=0.2)
    before = emb.weights.clone()
    ids = torch.tensor([1, 1, 4, 1], dtype=torch.int32)
    out = emb(ids)
    upstream = torch.tensor([[1.0, -1.0, 2.0], [-3.0, -1.0, -3.0], [0.5, 0.0, -0.5], [1.0, 3.0, 0.0]])
    (out * upstream).sum().backward()
    opt.step()
    summed_row1 = upstream[0] + upstream[1] + upstream[3]  # [-1, 1, -1]: duplicates summed before the sign
    expected = before.clone()
    expected[1] = before[1] * (1 - 0.5 * 0.2) - 0.5 * torch.sign(summed_row1)
    expected[4] = before[4] * (1 - 0.5 * 0.2) - 0.5 * torch.sign(upstream[2])
    torch.testing.assert_close(emb.weights, expected)  # rows 0, 2, 3, 5: untouched, not even decayed


def test_sign_sgd_accepts_buffers_or_parameters_and_rejects_other_tensors():
    emb = make_embedding()
    assert {id(t) for t in emb.parameters()} == {id(t) for t in emb.buffers()}
    CastedSparseEmbeddingSignSGD_Distributed(emb.buffers(), world_size=1)
    with pytest.raises(ValueError, match="exactly the three tensors"):
        CastedSparseEmbeddingSignSGD_Distributed([torch.nn.Parameter(torch.ones(2, 2))], world_size=1)


def test_eval_mode_reads_the_table_without_touching_local_buffers():
    emb = make_embedding().eval()
    out = emb(torch.tensor([2, 5]))
    torch.testing.assert_close(out, emb.weights[[2, 5]])
    assert torch.count_nonzero(emb.local_weights) == 0


def _distributed_worker(rank, world_size, port, ids, upstream, result_path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        emb = make_embedding()
        opt = CastedSparseEmbeddingSignSGD_Distributed(
            emb.parameters(), world_size=world_size, lr=0.5, weight_decay=0.2
        )
        half = slice(rank * 2, rank * 2 + 2)
        (emb(ids[half]) * upstream[half]).sum().backward()
        opt.step()
        torch.save(emb.weights, f"{result_path}.{rank}")
        dist.barrier()  # neither rank tears gloo down while the other is still using it
    finally:
        dist.destroy_process_group()
    # gloo's C++ threads occasionally abort during interpreter teardown ("terminate called without an
    # active exception", seen about once in 50 runs); the result is on disk, so skip the teardown.
    os._exit(0)


def test_sign_sgd_all_gathers_across_ranks(tmp_path):
    """Two gloo ranks with half a batch each end with the table one process gets from the whole batch."""
    ids = torch.tensor([1, 4, 1, 1], dtype=torch.int32)  # id 1 appears on both ranks
    upstream = torch.tensor([[1.0, -1.0, 2.0], [0.5, 0.0, -0.5], [-3.0, -1.0, -3.0], [1.0, 3.0, 0.0]])
    single = make_embedding()
    opt = CastedSparseEmbeddingSignSGD_Distributed(single.parameters(), world_size=1, lr=0.5, weight_decay=0.2)
    (single(ids) * upstream).sum().backward()
    opt.step()

    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = tmp_path / "weights"
    mp.spawn(_distributed_worker, args=(2, port, ids, upstream, str(result)), nprocs=2, join=True)
    for rank in range(2):
        torch.testing.assert_close(torch.load(f"{result}.{rank}", weights_only=True), single.weights)
