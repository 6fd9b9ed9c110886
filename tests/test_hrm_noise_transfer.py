"""The last exploration studies of issue [F]: state noise and an L1 state penalty in training, noise and
sparsity measured at inference, and Sudoku → maze transfer (``init_from``), down to the study table."""

import json

import pytest
import torch
from conftest import assert_real_picture, tiny_hrm_config, train_tiny_sudoku, write_tiny_recipe
from typer.testing import CliRunner

from reasonlens.cli.main import app
from reasonlens.hrm import HRMACTv1
from reasonlens.hrm.analysis import dynamics
from reasonlens.hrm.analysis.adapter import HRMAdapter
from reasonlens.hrm.data.maze import MazeBuildConfig, build_maze_dataset
from reasonlens.hrm.models.config import ConfigError
from reasonlens.hrm.models.study_variants import STUDY_DEFAULTS, HRMACTv1Study
from reasonlens.hrm.training.checkpoint import CheckpointError, build_model, load_checkpoint, transfer_weights
from reasonlens.hrm.training.losses import ACTLossHead
from reasonlens.hrm.training.trainer import TrainConfig, train
from reasonlens.interp import InterpError
from reasonlens.utils.io import write_yaml

TINY = tiny_hrm_config(seq_len=16, halt_max_steps=2)


def _batch(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return dict(
        inputs=torch.randint(1, 6, (4, 16), generator=generator),
        labels=torch.randint(1, 6, (4, 16), generator=generator),
        puzzle_identifiers=torch.zeros(4, dtype=torch.int32),
    )


def _twins(**options):
    torch.manual_seed(0)
    plain = HRMACTv1(TINY)
    torch.manual_seed(0)
    return plain, HRMACTv1Study({**TINY, **options})


def test_study_variant_with_defaults_is_the_official_model():
    plain, study = _twins()
    assert type(build_model("hrm_act_v1", {**TINY, **STUDY_DEFAULTS})) is HRMACTv1  # defaults: the official class
    assert type(build_model("hrm_act_v1", {**TINY, "state_l1": 0.1})) is HRMACTv1Study
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), study.state_dict().values()))
    batch = _batch()
    grads = []
    for model in (plain, study):
        torch.manual_seed(1)
        head = ACTLossHead(model.train())
        _, loss, *_ = head(head.initial_carry(batch), batch)
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.equal(*grads)  # same forward, same 1-step gradient


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory):
    return train_tiny_sudoku(tmp_path_factory.mktemp("source")) / "run"


def test_state_noise_only_in_training():
    plain, noisy = _twins(state_noise=0.5)
    batch = _batch()
    for model in (plain, noisy):
        model.eval()
    with torch.no_grad():
        outs = [m(m.initial_carry(batch), batch)[1]["logits"] for m in (plain, noisy)]
    assert torch.equal(*outs)  # eval: the official forward
    for model in (plain, noisy):
        model.train()
    outs = []
    for model in (plain, noisy):
        torch.manual_seed(1)
        outs.append(model(model.initial_carry(batch), batch)[1]["logits"])
    assert (outs[0] - outs[1]).abs().max() > 1e-3  # train: the states are perturbed


def test_state_l1_adds_the_penalty_by_hand():
    plain, sparse = _twins(state_l1=0.1)
    batch = _batch()
    losses, carries = [], []
    for model in (plain, sparse):
        head = ACTLossHead(model.eval())
        carry, loss, metrics, _, _ = head(head.initial_carry(batch), batch)
        losses.append(loss)
        carries.append(carry)
    z_H, z_L = carries[1].inner_carry.z_H, carries[1].inner_carry.z_L
    penalty = 0.1 * (z_H.abs().mean(dim=(1, 2)) + z_L.abs().mean(dim=(1, 2))).sum()
    assert float((losses[1] - losses[0]).detach()) == pytest.approx(float(penalty), rel=1e-5)
    assert float(metrics["state_l1_loss"]) == pytest.approx(float(penalty), rel=1e-5)
    losses[1].backward()  # the penalty reaches the reasoning modules
    assert sparse.inner.H_level.layers[0].self_attn.qkv_proj.weight.grad.abs().sum() > 0


def test_study_options_belong_to_the_study_variant_only():
    from reasonlens.hrm import TRM
    from reasonlens.hrm.models.baselines import TransformerACT

    for model_class in (HRMACTv1, TRM, TransformerACT):  # the official-equivalent models have no study fields
        with pytest.raises(ConfigError, match="state_noise: unknown field"):
            model_class({**TINY, "state_noise": 0.1})
    with pytest.raises(ConfigError, match="state_noise"):
        HRMACTv1Study({**TINY, "state_noise": -1})


def test_hoyer_sparsity_extremes():
    one_hot = torch.eye(8)
    assert dynamics.hoyer_sparsity(one_hot) == pytest.approx(1.0)
    signs = torch.tensor([[1.0, -1.0, 1.0, -1.0], [2.0, 2.0, -2.0, 2.0]])
    assert dynamics.hoyer_sparsity(signs) == pytest.approx(0.0, abs=1e-12)
    half = torch.tensor([[1.0, 1.0, 0.0, 0.0]])  # L1/L2 = √2 of √4 → (2 − √2) / (2 − 1)
    assert dynamics.hoyer_sparsity(half) == pytest.approx(2 - 2**0.5)
    with pytest.raises(InterpError, match="features ≥ 2"):
        dynamics.hoyer_sparsity(torch.ones(3, 1))


def test_noise_robustness_is_seeded_and_zero_noise_is_identity(tiny_source):
    adapter = HRMAdapter.from_checkpoint(tiny_source, device="cpu")
    indices = list(range(adapter.num_examples))
    clean = dynamics.collect_trajectories(adapter, indices)
    silent = dynamics.collect_trajectories(adapter, indices, patches=dynamics.state_noise_patches(adapter.model, 0.0))
    assert torch.equal(clean.logits, silent.logits)
    loud = dynamics.collect_trajectories(adapter, indices, patches=dynamics.state_noise_patches(adapter.model, 1.0))
    assert not torch.allclose(clean.logits, loud.logits)
    first = dynamics.noise_robustness(adapter, indices, [0.0, 0.5, 4.0])
    assert first == dynamics.noise_robustness(adapter, indices, [0.0, 0.5, 4.0])  # same seed, same numbers
    clean_exact = dynamics.per_step_accuracy(clean)[-1]["exact"]
    assert first[0]["exact"] == clean_exact and first[2]["token"] < first[0]["token"]
    sparsity = dynamics.state_sparsity(clean, adapter.model)
    assert set(sparsity) == {"hoyer_H", "hoyer_L", "near_zero_H", "near_zero_L"}
    assert all(0 <= v <= 1 for v in sparsity.values())
    with pytest.raises(InterpError, match="noise std must be >= 0"):
        dynamics.state_noise_patches(adapter.model, -0.1)


def test_transfer_weights_copies_what_fits(tmp_path, tiny_source):
    source = load_checkpoint(tiny_source)
    target = HRMACTv1({**TINY, "seq_len": 36, "vocab_size": 7})  # a 6×6 maze: other length and vocabulary
    report = transfer_weights(target, tiny_source)
    target_state, source_state = target.state_dict(), source.state_dict()
    assert torch.equal(
        target_state["inner.L_level.layers.0.mlp.down_proj.weight"],
        source_state["inner.L_level.layers.0.mlp.down_proj.weight"],
    )
    assert "inner.embed_tokens.embedding_weight" in report["kept"]  # vocab 7 vs 6
    assert "shape" in report["kept"]["inner.lm_head.weight"]
    assert not torch.equal(target_state["inner.lm_head.weight"][:6], source_state["inner.lm_head.weight"])

    only = HRMACTv1({**TINY, "seq_len": 36, "vocab_size": 7})
    report = transfer_weights(only, tiny_source, include=["inner.H_level"])
    assert report["copied"] and all(name.startswith("inner.H_level.") for name in report["copied"])
    assert report["parameters_copied"] == sum(p.numel() for p in only.inner.H_level.parameters())

    with pytest.raises(CheckpointError, match="no module 'inner.X_level' in the model; modules: inner, inner.H_level"):
        transfer_weights(HRMACTv1(TINY), tiny_source, include=["inner.X_level"])
    with pytest.raises(
        CheckpointError,
        match="nothing of inner.H_level fits this model .inner.H_level.layers.0.self_attn.qkv_proj.weight: shape",
    ):
        transfer_weights(HRMACTv1({**TINY, "hidden_size": 16, "puzzle_emb_ndim": 16}), tiny_source)


def test_init_from_trains_a_maze_model_from_a_sudoku_run(tmp_path, tiny_source):
    data = build_maze_dataset(
        MazeBuildConfig(out_dir=tmp_path / "maze", size=6, train_size=32, test_size=8, seed=0, workers=1)
    )
    config = dict(
        data_path=str(data),
        global_batch_size=16,
        epochs=1,
        eval_interval=1,
        lr=0.0,  # no update: the transferred weights must arrive unchanged
        lr_warmup_steps=0,
        weight_decay=0.0,
        puzzle_emb_lr=0.0,
        puzzle_emb_weight_decay=0.0,
        progress=False,
        model=dict(hidden_size=32, num_heads=2, H_layers=1, L_layers=1, puzzle_emb_ndim=32, halt_max_steps=2),
    )
    train(
        TrainConfig(
            **config, run_dir=str(tmp_path / "run"), init_from=str(tiny_source), init_include=["inner.L_level"]
        ),
        log=lambda *_: None,
    )
    report = json.loads((tmp_path / "run" / "init.json").read_text())
    assert report["copied"] and all(name.startswith("inner.L_level.") for name in report["copied"])
    trained = load_checkpoint(tmp_path / "run").state_dict()
    source = load_checkpoint(tiny_source).state_dict()
    for name in report["copied"]:
        assert torch.equal(trained[name], source[name]), name
    with pytest.raises(ValueError, match="init_include needs init_from"):
        TrainConfig(**config, init_include=["inner.L_level"])


def test_study_reports_noise_sparsity_and_transfer(tmp_path, tiny_source):
    data = tiny_source.parent / "data"  # the source's own 4×4 Sudokus
    write_tiny_recipe(tmp_path / "base.yaml", data, hidden_size=32, puzzle_emb_ndim=32)
    write_yaml(
        tmp_path / "study.yaml",
        {
            "name": "noise",
            "base": str(tmp_path / "base.yaml"),
            "puzzles": 8,
            "noise_stds": [0.5],
            "variants": {
                "noisy": ["model.state_noise=0.3", "model.state_l1=0.1"],
                "transfer": [f"init_from={tiny_source}", "init_include=[inner.H_level, inner.L_level]"],
            },
        },
    )
    result = CliRunner().invoke(app, ["study", str(tmp_path / "study.yaml"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "out" / "study.json").read_text())["variants"]
    assert {"changed", "hoyer_H", "hoyer_L", "exact@noise0", "exact@noise0.5"} <= set(rows["noisy"])
    assert "init_parameters" not in rows["noisy"]
    adapter = HRMAdapter.from_checkpoint(tiny_source, device="cpu")
    reasoning = sum(
        p.numel() for m in (adapter.model.inner.H_level, adapter.model.inner.L_level) for p in m.parameters()
    )
    assert rows["transfer"]["init_parameters"] == reasoning
    summary = json.loads((tmp_path / "out" / "noisy" / "summary.json").read_text())
    assert rows["noisy"]["eval_curve"] == [  # one epoch, one evaluation
        {"step": summary["steps"], "exact": summary["eval/exact_accuracy"], "token": summary["eval/accuracy"]}
    ]
    assert_real_picture(tmp_path / "out" / "curves.png")
    table = (tmp_path / "out" / "study.md").read_text()
    assert "init_parameters" in table and "exact@noise0.5" in table

    # --set / --only: a repeat with another seed must not silently reuse the seed-0 run
    study = str(tmp_path / "study.yaml")
    result = CliRunner().invoke(app, ["study", study, "--out", str(tmp_path / "out"), "--set", "seed=1"])
    assert result.exit_code == 2 and "noisy was trained with seed=0, the study now asks for 1" in result.output
    result = CliRunner().invoke(
        app, ["study", study, "--out", str(tmp_path / "seed1"), "--set", "seed=1", "--only", "noisy"]
    )
    assert result.exit_code == 0, result.output
    assert list(json.loads((tmp_path / "seed1" / "study.json").read_text())["variants"]) == ["noisy"]
    assert (tmp_path / "seed1" / "noisy" / "config.yaml").read_text().count("seed: 1") == 1
    result = CliRunner().invoke(app, ["study", study, "--out", str(tmp_path / "o"), "--only", "noisy,nope"])
    assert result.exit_code == 2 and "unknown variant 'nope'; the study has: noisy, transfer" in result.output

    write_yaml(tmp_path / "bad.yaml", {"name": "x", "base": "b.yaml", "noise_stds": [-1], "variants": {"a": []}})
    result = CliRunner().invoke(app, ["study", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "noise_stds must be >= 0" in result.output
    assert not (tmp_path / "o").exists()


def test_changed_cell_accuracy_by_hand():
    inputs = torch.tensor([[1, 2, 2, 3]])  # cells 1 and 2 must change (label != input); cell 3 is not scored
    labels = torch.tensor([[1, 4, 5, -100]])
    predicted = torch.tensor([[1, 4, 2, 3]])  # copies cell 2 instead of writing 5
    logits = torch.nn.functional.one_hot(predicted, 6).float().unsqueeze(0)  # (steps 1, N 1, cells, vocab)
    trajectories = dynamics.Trajectories(
        states={},
        logits=logits,
        q_halt=torch.zeros(1, 1),
        q_continue=torch.zeros(1, 1),
        labels=labels,
        inputs=inputs,
        prefix_len=0,
    )
    assert dynamics.changed_cell_accuracy(trajectories) == pytest.approx(0.5)
    copies = dynamics.Trajectories(**{**trajectories.__dict__, "labels": inputs})
    with pytest.raises(InterpError, match="no scored cell differs from its input"):
        dynamics.changed_cell_accuracy(copies)


def test_cycle_view_ends_each_segment_with_its_answer(tiny_source):
    from reasonlens.hrm import TRM

    adapter = HRMAdapter.from_checkpoint(tiny_source, device="cpu")
    torch.manual_seed(0)
    trm = TRM({**TINY, "H_cycles": 3, "L_cycles": 2, "puzzle_emb_len": 1}).eval()
    trm_adapter = HRMAdapter(trm, adapter.dataset_dir, "test")
    for a, cycles_per_segment in ((adapter, adapter.model.config.H_cycles), (trm_adapter, 3)):
        segments = dynamics.collect_trajectories(a, [0, 1, 2])
        cycles = dynamics.cycle_view(segments, a.model)
        assert cycles.steps == segments.steps * cycles_per_segment
        last = slice(cycles_per_segment - 1, None, cycles_per_segment)  # a segment's last cycle is its answer
        torch.testing.assert_close(cycles.logits[last], segments.logits)
        torch.testing.assert_close(cycles.q_halt[last], segments.q_halt)
        torch.testing.assert_close(cycles.q_continue[last], segments.q_continue)


def test_analyze_steps_every_cycle(tmp_path, tiny_source):
    from PIL import Image

    out = tmp_path / "analysis"
    args = ["analyze", "steps", str(tiny_source), "--puzzles", "2", "--every-cycle", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "cycle  8 (ACT step 4)" in result.output  # 4 ACT steps × 2 cycles
    steps = json.loads((out / "steps.json").read_text())
    assert steps["cycles"] == 8 and [r["act_step"] for r in steps["cycle_accuracy"]] == [1, 1, 2, 2, 3, 3, 4, 4]
    every_second = [r["exact"] for r in steps["cycle_accuracy"]][1::2]
    assert every_second == [r["exact"] for r in steps["accuracy"]]
    with Image.open(out / "steps" / "puzzle_1_cycles.gif") as gif:
        assert gif.n_frames == 8
    assert "Every cycle: puzzle 1" in (out / "report.html").read_text()
