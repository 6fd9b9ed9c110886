"""Checkpoints: save → load → same outputs in our format; official layout in and out (key prefixes,
all_config.yaml, sizes read from the weights, seq_len from the dataset); clear errors; weights_only."""

import json
import pickle
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_hrm_config
from safetensors.torch import load_file

from reasonlens.hrm import (
    TRM,
    CheckpointError,
    HRMACTv1,
    TransformerACT,
    export_official_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from reasonlens.hrm.training import checkpoint as checkpoint_module

FIXTURE = Path(__file__).parent / "fixtures" / "official_hrm"


def small(**overrides):
    small = dict(seq_len=10, vocab_size=7, L_cycles=1, num_puzzle_identifiers=4, forward_dtype="bfloat16")
    return tiny_hrm_config(**{**small, **overrides})


def rollout(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    batch = {
        "inputs": torch.randint(0, 7, (3, 10), generator=g),
        "puzzle_identifiers": torch.tensor([0, 3, 1], dtype=torch.int32),
    }
    model.eval()
    outs = []
    with torch.no_grad():
        carry = model.initial_carry(batch)
        for _ in range(model.config.halt_max_steps):
            carry, o = model(carry, batch)
            outs.append(o["logits"].float())
    return torch.stack(outs)


def trained_like(cls, **overrides):
    torch.manual_seed(0)
    model = cls(small(**overrides))
    with torch.no_grad():  # make every tensor non-trivial, including the zero-initialised ones
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        model.puzzle_emb.weights.normal_()
    return model


@pytest.mark.parametrize("cls", [HRMACTv1, TRM, TransformerACT])
def test_our_format_round_trip(tmp_path, cls):
    model = trained_like(cls)
    save_checkpoint(model, tmp_path / "run", run_config={"train": {"lr": 1e-4}})
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.yaml", "model.safetensors"]
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["arch"] in ("hrm_act_v1", "trm", "transformer_act") and config["train"] == {"lr": 1e-4}
    for path in (tmp_path / "run", tmp_path / "run" / "model.safetensors"):
        loaded = load_checkpoint(path)
        assert type(loaded) is cls and loaded.config == model.config
        assert loaded.inner.H_init.dtype == torch.bfloat16
        assert torch.equal(rollout(loaded), rollout(model))


def test_overrides_on_load(tmp_path):
    model = trained_like(HRMACTv1)
    save_checkpoint(model, tmp_path)
    loaded = load_checkpoint(tmp_path, forward_dtype="float32", halt_max_steps=5)
    assert loaded.config.forward_dtype == "float32" and loaded.config.halt_max_steps == 5
    assert loaded.inner.H_init.dtype == torch.float32
    reference = HRMACTv1({**model.config.model_dump(), "forward_dtype": "float32", "halt_max_steps": 5})
    reference.load_state_dict(model.state_dict())  # the same weights, cast by hand
    assert torch.equal(rollout(loaded), rollout(reference))
    assert (rollout(loaded)[:3] - rollout(model)).abs().mean() < 0.02  # fp32 vs the bf16 run: close on the whole


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("cls", [HRMACTv1, TRM, TransformerACT])
def test_official_export_import_round_trip(tmp_path, compiled, cls):
    model = trained_like(cls)
    export_official_checkpoint(model, tmp_path, compiled_prefix=compiled)
    state = torch.load(tmp_path / "checkpoint", weights_only=True)
    prefix = "_orig_mod.model.inner." if compiled else "model.inner."
    assert all(k.startswith(prefix) for k in state) and len(state) == len(model.state_dict())
    all_config = yaml.safe_load((tmp_path / "all_config.yaml").read_text())
    arch = all_config["arch"]
    assert arch["loss"] == {"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"}
    # the official trainer passes these four itself; duplicating them in arch would crash create_model
    assert not {"batch_size", "seq_len", "vocab_size", "num_puzzle_identifiers"} & set(arch)
    for key in ("data_path", "global_batch_size", "lr", "puzzle_emb_lr", "weight_decay", "beta1", "beta2"):
        assert key in all_config
    loaded = load_checkpoint(tmp_path)
    assert type(loaded) is cls and loaded.config == model.config
    assert torch.equal(rollout(loaded), rollout(model))


def write_official_folder(folder, state, arch, data_path="data/sudoku-extreme-1k-aug-1000", weight_name="checkpoint"):
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / weight_name)
    config = {
        "arch": {
            "name": "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1",
            "loss": {"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"},
            **arch,
        },
        "data_path": data_path,
        "global_batch_size": 4,
        "epochs": 10,
        "lr": 1e-4,
    }
    (folder / "all_config.yaml").write_text(yaml.safe_dump(config))


def official_fixture_folder(tmp_path, **kwargs):
    """An official-format folder holding the weights recorded from the official code."""
    tensors = load_file(FIXTURE / "fp32_rope.safetensors")
    meta = json.loads((FIXTURE / "fp32_rope.json").read_text())
    state = {"_orig_mod.model." + k[len("start.") :]: v for k, v in tensors.items() if k.startswith("start.")}
    cfg = meta["config"]
    arch = {
        k: cfg[k]
        for k in (
            "H_cycles",
            "L_cycles",
            "H_layers",
            "L_layers",
            "hidden_size",
            "num_heads",
            "expansion",
            "pos_encodings",
            "halt_max_steps",
            "halt_exploration_prob",
            "puzzle_emb_ndim",
        )
    }
    write_official_folder(tmp_path / "ckpt", state, arch, **kwargs)
    return tmp_path / "ckpt", tensors, cfg


def test_import_official_checkpoint_reproduces_official_outputs(tmp_path):
    folder, tensors, cfg = official_fixture_folder(tmp_path)
    # seq_len is not in all_config.yaml: give it, or point at the dataset
    with pytest.raises(CheckpointError, match="seq_len of .* is unknown"):
        load_checkpoint(folder)
    model = load_checkpoint(folder, seq_len=cfg["seq_len"], forward_dtype="float32")
    assert model.config.vocab_size == cfg["vocab_size"]
    assert model.config.num_puzzle_identifiers == cfg["num_puzzle_identifiers"]
    batch = {k: tensors[f"batch0.{k}"] for k in ("inputs", "puzzle_identifiers")}
    model.eval()
    with torch.no_grad():
        carry = model.initial_carry(batch)
        for step in range(cfg["halt_max_steps"]):
            carry, outputs = model(carry, batch)
            expected = tensors[f"eval{step}.logits"]  # float32 tolerance of test_official_parity (other CPU kinds)
            torch.testing.assert_close(outputs["logits"], expected, rtol=1e-5, atol=1e-4 * expected.abs().max().item())


def test_seq_len_from_the_dataset_and_latest_step_file(tmp_path):
    folder, tensors, cfg = official_fixture_folder(tmp_path, data_path="mydata", weight_name="step_200")
    (folder / "mydata" / "train").mkdir(parents=True)
    (folder / "mydata" / "train" / "dataset.json").write_text(json.dumps({"seq_len": cfg["seq_len"]}))
    torch.save({"junk": torch.zeros(1)}, folder / "step_30")  # older step: must not be picked
    model = load_checkpoint(folder)
    assert model.config.seq_len == cfg["seq_len"]
    model = load_checkpoint(folder / "step_200", data_path=folder / "mydata")
    assert model.config.seq_len == cfg["seq_len"]


def test_mismatching_weights_name_keys_and_shapes(tmp_path):
    model = trained_like(HRMACTv1)
    save_checkpoint(model, tmp_path)
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    config["model"]["hidden_size"] = 64
    config["model"]["puzzle_emb_ndim"] = 64
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path)
    message = str(info.value)
    assert "does not fit the model config" in message
    assert "inner.embed_tokens.embedding_weight: checkpoint (7, 32) vs model (7, 64)" in message

    config["model"].update(hidden_size=32, puzzle_emb_ndim=32, H_layers=2)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(CheckpointError, match=r"missing keys \(4\): inner.H_level.layers.1.self_attn.qkv_proj.weight"):
        load_checkpoint(tmp_path)


class NotATensor:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_weights_only_refuses_pickled_code(tmp_path, capsys):
    folder, *_ = official_fixture_folder(tmp_path)
    with open(folder / "checkpoint", "wb") as handle:
        pickle.dump({"inner.H_init": NotATensor()}, handle)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_checkpoint(folder, seq_len=16)
    assert "this must never run" not in capsys.readouterr().out


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="neither a reasonlens run directory"):
        load_checkpoint(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="no config.yaml beside it"):
        load_checkpoint(tmp_path)


def test_unsupported_official_arch(tmp_path):
    folder, *_ = official_fixture_folder(tmp_path)
    config = yaml.safe_load((folder / "all_config.yaml").read_text())
    config["arch"]["name"] = "hrm.hrm_vision_v1@Vision"
    (folder / "all_config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(CheckpointError, match="unsupported arch 'hrm.hrm_vision_v1@Vision'"):
        load_checkpoint(folder, seq_len=16)


def test_a_failed_save_leaves_no_partial_file(tmp_path, monkeypatch):
    model = trained_like(HRMACTv1)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("reasonlens.utils.io.save_file", broken)  # the writer under save_safetensors
    with pytest.raises(OSError, match="disk full"):
        checkpoint_module.save_checkpoint(model, tmp_path / "run")
    assert list((tmp_path / "run").iterdir()) == []


def test_optimizer_state_round_trip_resumes_exactly(tmp_path):
    """Train 4 steps straight vs 2 steps, save (model + optimizers), load into fresh objects, 2 more."""
    from reasonlens.hrm import ACTLossHead, AdamATan2, CastedSparseEmbeddingSignSGD_Distributed, load_optimizer_state

    def setup(model):
        dense = AdamATan2(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
        sparse = CastedSparseEmbeddingSignSGD_Distributed(model.puzzle_emb.parameters(), world_size=1, lr=1e-3)
        return ACTLossHead(model), [dense, sparse]

    def train(model, head, optimizers, steps, seed):
        g = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(steps):
            batch = {
                "inputs": torch.randint(0, 7, (3, 10), generator=g),
                "labels": torch.randint(1, 7, (3, 10), generator=g),
                "puzzle_identifiers": torch.randint(0, 4, (3,), generator=g, dtype=torch.int32),
            }
            carry = head.initial_carry(batch)
            _, loss, *_ = head(carry, batch)
            loss.backward()
            for opt in optimizers:
                opt.step()
                opt.zero_grad()

    straight = trained_like(HRMACTv1, halt_exploration_prob=0.0)
    head, opts = setup(straight)
    train(straight, head, opts, 2, seed=1)
    train(straight, head, opts, 2, seed=2)

    first = trained_like(HRMACTv1, halt_exploration_prob=0.0)
    head, opts = setup(first)
    train(first, head, opts, 2, seed=1)
    save_checkpoint(first, tmp_path, optimizers=opts, train_state={"step": 2})
    resumed = load_checkpoint(tmp_path)
    head, opts = setup(resumed)
    assert load_optimizer_state(tmp_path, opts) == {"step": 2}
    train(resumed, head, opts, 2, seed=2)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(CheckpointError, match="2 optimizer states, 1 optimizers given"):
        load_optimizer_state(tmp_path, opts[:1])
