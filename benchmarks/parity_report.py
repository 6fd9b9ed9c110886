"""How far HRM-ACT-v1 is from the official code: replay the recorded official rollouts
(tests/fixtures/official_hrm) and print the largest absolute difference per quantity, and whether every
compared tensor is bit-identical. ``tests/test_official_parity.py`` asserts the tolerances; this prints
the actual numbers.

    python benchmarks/parity_report.py [--out benchmarks/out/parity.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from reasonlens.hrm import ACTLossHead, CastedSparseEmbeddingSignSGD_Distributed, HRMACTv1

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "official_hrm"


class Diffs:
    def __init__(self):
        self.max_abs: dict[str, float] = {}
        self.identical = True

    def add(self, name, ours, reference):
        diff = (ours.double() - reference.double()).abs().max().item()
        self.max_abs[name] = max(self.max_abs.get(name, 0.0), diff)
        self.identical &= torch.equal(ours, reference)


def replay(name: str) -> dict:
    tensors = load_file(FIXTURES / f"{name}.safetensors")
    meta = json.loads((FIXTURES / f"{name}.json").read_text())

    def section(prefix):
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

    diffs = Diffs()
    torch.manual_seed(meta["seed"])
    model = HRMACTv1(meta["config"])
    for key, value in section("init.").items():
        diffs.add("init weights", model.state_dict()[key], value)

    model.load_state_dict(section("start."))
    batches = [section(f"batch{i}.") for i in range(3)]
    model.eval()
    with torch.no_grad():
        carry = model.initial_carry(batches[0])
        for step in range(meta["eval_steps"]):
            carry, outputs = model(carry, batches[0])
            ref = section(f"eval{step}.")
            diffs.add("eval logits", outputs["logits"], ref["logits"])
            diffs.add("eval q", outputs["q_halt_logits"], ref["q_halt_logits"])
            diffs.add("eval z_H, z_L", carry.inner_carry.z_H, ref["z_H"])
            diffs.add("eval z_H, z_L", carry.inner_carry.z_L, ref["z_L"])

    model.train()
    head = ACTLossHead(model, meta["loss_type"])
    sparse = CastedSparseEmbeddingSignSGD_Distributed(
        model.puzzle_emb.buffers(), world_size=1, lr=meta["sparse_lr"], weight_decay=meta["sparse_wd"]
    )
    torch.manual_seed(meta["train_seed"])
    carry = head.initial_carry(batches[0])
    for step in range(meta["train_steps"]):
        carry, loss, _, outputs, _ = head(carry, batches[step % 3], return_keys=["logits", "target_q_continue"])
        (loss / meta["config"]["batch_size"]).backward()
        ref = section(f"train{step}.")
        diffs.add("train halted/steps", carry.halted, ref["halted"])
        diffs.add("train halted/steps", carry.steps, ref["steps"])
        diffs.add("train logits", outputs["logits"], ref["logits"])
        diffs.add("train target Q", outputs["target_q_continue"], ref["target_q_continue"])
        diffs.add("train loss", loss.detach(), torch.tensor(meta["scalars"][f"train{step}.loss"], dtype=loss.dtype))
        for param_name, param in model.named_parameters():
            diffs.add("train gradients", param.grad, ref[f"grad.{param_name}"])
        sparse.step()
        sparse.zero_grad()
        model.zero_grad(set_to_none=True)
        diffs.add("puzzle table after SignSGD", model.puzzle_emb.weights, ref["puzzle_weights_after"])
    return {"config": meta["config"], "max_abs_diff": diffs.max_abs, "bit_identical": diffs.identical}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/out/parity.json")
    args = parser.parse_args()
    report = {
        "torch": torch.__version__,
        "variants": {p.stem: replay(p.stem) for p in sorted(FIXTURES.glob("*.safetensors"))},
    }
    for name, result in report["variants"].items():
        print(f"{name} ({result['config']['forward_dtype']}): bit-identical = {result['bit_identical']}")
        for quantity, diff in result["max_abs_diff"].items():
            print(f"  {quantity:<28} max |ours - official| = {diff:.3g}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
