"""The lm family (seed 002): the scoring game, the local tokenizer and GPT-2 checkpoints, SFT and GRPO,
evaluation, the TransformerLens conversion and the analyses — one tiny pipeline built once per module
(dataset → SFT → a few RL steps → evaluation JSON → probes → patching → ablation → SAE)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("transformers")
pytest.importorskip("trl")
pytest.importorskip("transformer_lens")
os.environ["HF_HUB_OFFLINE"] = "1"

import torch
from typer.testing import CliRunner

from reasonlens.cli.lm import command
from reasonlens.cli.main import app
from reasonlens.interp import Experiment, Intervention, run_sweep
from reasonlens.interp.sae import encode_features, evaluate_sae, feature_statistics, load_sae
from reasonlens.interp.sweep import run_looped
from reasonlens.lm.analysis.ablation import ablation_scan, compare_importance, jaccard
from reasonlens.lm.analysis.hooks import LMAdapter, PromptSet, cache_activations
from reasonlens.lm.analysis.patching import counterfactual_pairs, run_patching
from reasonlens.lm.analysis.probing import run_probes
from reasonlens.lm.analysis.sae_features import describe_features, run_sae_analysis, sae_training_activations
from reasonlens.lm.config.analysis_config import AnalysisConfig
from reasonlens.lm.config.task_config import TaskConfig
from reasonlens.lm.config.training_config import RLConfig, SFTConfig
from reasonlens.lm.envs.text_game_env import TextGameEnv
from reasonlens.lm.errors import LMError
from reasonlens.lm.models.conversion import to_hooked_transformer
from reasonlens.lm.models.lm_loader import encode_example, encode_prompts, load_checkpoint
from reasonlens.lm.models.policy_wrappers import GPT2MaskPositions, Policy, completion_budget, mask_positions
from reasonlens.lm.tasks.dataset import build_sft_datasets, load_datasets, save_datasets
from reasonlens.lm.tasks.formatting import N_ID_TEMPLATES, parse_answer
from reasonlens.lm.tasks.generators import labels_for, make_example
from reasonlens.lm.tasks.rules import Rule, held_out_pairs, rule_from_name, sample_rule
from reasonlens.lm.training.evaluation import evaluate_split, evaluate_steps
from reasonlens.lm.training.rl_trainer import GameReward, run_rl
from reasonlens.lm.training.sft_trainer import run_sft

ROOT = Path(__file__).resolve().parents[1]
TASK = TaskConfig(n_train=400, n_val=40, n_test=40, n_ood=24, seed=3)
ANALYSIS = AnalysisConfig(max_examples=24, patch_pairs=6, patch_positions=3, sae_steps=60, batch_size=32)


# ---------------------------------------------------------------- the pipeline, built once


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """dataset → SFT → 3 GRPO steps → evaluation JSON (the analyses run in their own tests)."""
    root = tmp_path_factory.mktemp("lm")
    datasets = build_sft_datasets(TASK)
    save_datasets(datasets, root / "data", TASK)
    sft_config = SFTConfig(
        output_dir=str(root / "sft"),
        model={"size": "tiny"},
        max_steps=80,
        batch_size=16,
        eval_steps=40,
        learning_rate=3e-3,
        logging_steps=10,
        eval_examples=24,
        keep_steps=[40, 80],
    )
    sft_path, sft_metrics = run_sft(TASK, sft_config, datasets=datasets)
    rl_config = RLConfig(
        output_dir=str(root / "rl"),
        max_steps=3,
        batch_size=8,
        num_generations=4,
        eval_every=2,
        eval_examples=12,
        n_prompts=48,
        mix={"id": 0.5, "paraphrase": 0.5},
        learning_rate=1e-3,
    )
    rl_path, rl_metrics = run_rl(TASK, rl_config, sft_path, datasets=datasets)
    return {
        "root": root,
        "datasets": datasets,
        "sft": sft_path,
        "rl": rl_path,
        "sft_metrics": sft_metrics,
        "rl_metrics": rl_metrics,
    }


@pytest.fixture(scope="module")
def hooked(pipeline):
    return to_hooked_transformer(pipeline["sft"])


def png_pixels(path: Path, min_width: int, min_height: int) -> np.ndarray:
    """The RGB pixels of a PNG at least this large that is not blank (2% of it drawn on: a line plot has ~4%)."""
    with Image.open(path) as image:
        assert image.format == "PNG", path
        assert image.width >= min_width and image.height >= min_height, (path, image.size)
        pixels = np.asarray(image.convert("RGB")).astype(int)
    assert (pixels.min(-1) < 200).mean() > 0.02, f"{path} is nearly blank"
    return pixels


def has_colour(pixels: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 30, count: int = 20) -> bool:
    """At least ``count`` pixels within ``tolerance`` of ``rgb`` in every channel."""
    return int((np.abs(pixels - np.array(rgb)).max(-1) <= tolerance).sum()) >= count


# ---------------------------------------------------------------- the task


def test_rule_names_parse_and_score_by_hand():
    config = TaskConfig()
    rule = rule_from_name("sum_red_minus_blue", config)
    assert (rule.family, rule.add, rule.subtract) == ("sum_a_minus_b", ("RED",), ("BLUE",))
    cards = [("RED", 3), ("BLUE", 5), ("RED", 4), ("GREEN", 9)]
    labels = labels_for(rule, cards, config.colours + config.unseen_colours)
    assert labels["total"] == 3 - 5 + 4
    assert labels["selected"] == [True, True, True, False]
    assert labels["contributions"] == [3, -5, 4, 0]
    assert labels["colour_sums"][:4] == [7, 5, 9, 0]  # RED, BLUE, GREEN, YELLOW
    count = rule_from_name("count_gt_5", config)
    assert labels_for(count, cards, config.colours)["total"] == 1
    both = rule_from_name("sum_green_odd", config)
    assert labels_for(both, cards, config.colours)["total"] == 9
    assert rule_from_name("sum_even", config).name == "sum_even"


def test_prompt_template_and_answer_parsing():
    config = TaskConfig()
    example = make_example(
        config,
        random.Random(0),
        rule=Rule("sum_colour", ("RED",)),
        cards=[("RED", 3), ("BLUE", 5)],
        threshold=1,
        template=0,
    )
    assert example["prompt"] == (
        "Rule: Add the numbers on RED cards. If the total is more than 1, answer BIG, otherwise SMALL.\n"
        "Cards:\nRED 3\nBLUE 5\n\nAnswer:"
    )
    assert example["completion"] == " BIG" and example["label"] == "BIG" and example["total"] == 3
    assert parse_answer(" SMALL\n") == (None, "SMALL")
    assert parse_answer(" 12 BIG") == (12, "BIG")
    assert parse_answer(" big") == (None, None)


def test_each_ood_category_changes_one_thing():
    config = TaskConfig()
    rng = random.Random(1)
    for _ in range(40):
        example = make_example(config, rng, "id")
        assert set(example["colours"]) <= set(config.colours)
        assert config.n_cards[0] <= example["n_cards"] <= config.n_cards[1]
        assert example["template"] < N_ID_TEMPLATES
        assert all(config.number_range[0] <= n <= config.number_range[1] for n in example["numbers"])
        rule = rule_from_name(example["rule"], config)
        if rule.family == "sum_colour_predicate":
            assert (rule.add[0], rule.predicate) not in held_out_pairs(config.colours)
        colour = make_example(config, rng, "unseen_colour")
        assert set(rule_from_name(colour["rule"], config).colours) & set(config.unseen_colours)
        composition = rule_from_name(make_example(config, rng, "unseen_composition")["rule"], config)
        assert (composition.add[0], composition.predicate) in held_out_pairs(config.colours)
        assert make_example(config, rng, "paraphrase")["template"] == N_ID_TEMPLATES
        assert make_example(config, rng, "more_cards")["n_cards"] >= config.more_cards[0]
        shifted = make_example(config, rng, "shifted_numbers")["numbers"]
        assert min(shifted) >= config.shifted_number_range[0]


def test_thresholds_balance_the_answers():
    labels = [make_example(TaskConfig(), random.Random(i), "id")["label"] for i in range(600)]
    assert 0.42 < labels.count("BIG") / len(labels) < 0.58


def test_datasets_are_reproducible_and_test_prompts_unseen(tmp_path):
    small = TaskConfig(n_train=300, n_val=20, n_test=30, n_ood=10, seed=7)
    first, second = build_sft_datasets(small), build_sft_datasets(small)
    assert list(first) == ["train", "val", "test"] + [f"ood_{c}" for c in small.ood_categories]
    assert first["test"]["prompt"] == second["test"]["prompt"]
    assert not set(first["test"]["prompt"]) & set(first["train"]["prompt"])
    assert set(first["ood_paraphrase"]["distribution"]) == {"paraphrase"}
    save_datasets(first, tmp_path / "d", small)
    loaded, config = load_datasets(tmp_path / "d")
    assert config == small and loaded["ood_more_cards"]["prompt"] == first["ood_more_cards"]["prompt"]
    other = build_sft_datasets(small.model_copy(update={"seed": 8}))
    assert other["test"]["prompt"] != first["test"]["prompt"]


# ---------------------------------------------------------------- bad input


def test_bad_input_errors():
    with pytest.raises(ValueError, match="unknown rule family 'sum_purplish'.*allowed"):
        TaskConfig(families=["sum_purplish"])
    with pytest.raises(LMError, match="unknown rule family 'sum_teal'"):
        sample_rule("sum_teal", TaskConfig(), random.Random(0))
    with pytest.raises(ValueError, match="unknown OOD category 'new_suits'.*allowed: unseen_colour"):
        TaskConfig(ood_categories=["new_suits"])
    with pytest.raises(LMError, match="unknown OOD category 'longer_rules'"):
        TextGameEnv(TaskConfig(), mix={"longer_rules": 1.0})


def test_checkpoint_without_tokenizer_and_too_long_prompt(pipeline, tmp_path):
    model, tokenizer = load_checkpoint(pipeline["sft"])
    model.save_pretrained(str(tmp_path / "model_only"))
    with pytest.raises(LMError, match="has no tokenizer files"):
        load_checkpoint(tmp_path / "model_only")
    long_prompt = make_example(TaskConfig(more_cards=(40, 40)), random.Random(0), "more_cards")
    with pytest.raises(LMError, match=r"longer than the context of 128 tokens"):
        encode_example(tokenizer, long_prompt["prompt"], long_prompt["completion"], 128)
    result = CliRunner().invoke(
        app, ["lm", "evaluate", str(tmp_path / "model_only"), "--data", str(pipeline["root"] / "data")]
    )
    assert result.exit_code == 2 and "has no tokenizer files" in result.output


def test_checkpoint_whose_weights_do_not_fit_its_config(pipeline, tmp_path):
    import shutil

    mismatched = tmp_path / "mismatched"
    shutil.copytree(pipeline["sft"], mismatched)
    config = json.loads((mismatched / "config.json").read_text())
    config["n_embd"] *= 2  # the weights were trained at the other width
    (mismatched / "config.json").write_text(json.dumps(config))
    with pytest.raises(LMError, match="its weights do not load into its config.json"):
        load_checkpoint(mismatched)
    garbage = tmp_path / "garbage"
    shutil.copytree(pipeline["sft"], garbage)
    next(garbage.glob("*.safetensors")).write_bytes(b"not safetensors")
    result = CliRunner().invoke(app, ["lm", "evaluate", str(garbage), "--data", str(pipeline["root"] / "data")])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "its weights do not load" in result.output


def test_too_long_prompts_stop_sft_before_writing(tmp_path):
    small = TaskConfig(n_train=20, n_val=5, n_test=5, n_ood=5, ood_categories=[])
    config = SFTConfig(output_dir=str(tmp_path / "sft"), model={"size": "tiny", "n_positions": 16}, max_steps=1)
    with pytest.raises(LMError, match="longer than the context of 16 tokens"):
        run_sft(small, config)
    assert not (tmp_path / "sft").exists()


def test_cli_bad_input_one_line(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["lm", "datasets", "--out", str(tmp_path / "d"), "--families", "sum_teal"])
    assert result.exit_code == 2 and "unknown rule family 'sum_teal'" in result.output
    result = runner.invoke(app, ["lm", "datasets", "--out", str(tmp_path / "d"), "--ood", "new_suits"])
    assert result.exit_code == 2 and "unknown OOD category 'new_suits'" in result.output
    assert not (tmp_path / "d").exists()


# ---------------------------------------------------------------- tokenizer, models, conversion


def test_tokenizer_splits_digits_and_round_trips(pipeline):
    _, tokenizer = load_checkpoint(pipeline["sft"])
    ids = tokenizer("RED 17", add_special_tokens=False)["input_ids"]
    assert [tokenizer.decode([i]) for i in ids][-2:] == ["1", "7"]
    assert tokenizer.decode(ids) == "RED 17"
    big, small = (tokenizer(f" {w}", add_special_tokens=False)["input_ids"] for w in ("BIG", "SMALL"))
    assert len(big) == len(small) == 1 and big != small
    assert tokenizer.pad_token_id != tokenizer.eos_token_id


def test_a_colour_is_the_same_token_in_a_rule_and_on_a_card_line(pipeline):
    _, tokenizer = load_checkpoint(pipeline["sft"])
    text = "Rule: Add the numbers on BLUE cards.\nCards:\nBLUE 3\nRED 4"
    pieces = tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"])
    assert pieces.count("BLUE") == 2 and pieces.count("RED") == 1
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_answer_only_loss_labels(pipeline):
    _, tokenizer = load_checkpoint(pipeline["sft"])
    encoded = encode_example(tokenizer, "Rule: x\nCards:\nRED 1\n\nAnswer:", " BIG", 128)
    n_answer = len(tokenizer(" BIG", add_special_tokens=False)["input_ids"]) + 1
    assert encoded["labels"][:-n_answer] == [-100] * (len(encoded["labels"]) - n_answer)
    assert encoded["labels"][-1] == tokenizer.eos_token_id


def test_left_padding_keeps_positions(pipeline):
    """trl scores log-probs without position ids: the mask-position model makes a left-padded prompt
    score as it does alone; a plain GPT-2 would not."""
    plain, tokenizer = load_checkpoint(pipeline["sft"])
    fixed = GPT2MaskPositions.from_pretrained(str(pipeline["sft"]), local_files_only=True).eval()
    prompts = [*pipeline["datasets"]["test"]["prompt"][:2], "Rule: Sum.\nCards:\nRED 1\n\nAnswer:"]
    batch = encode_prompts(tokenizer, prompts, 128)
    with torch.no_grad():
        alone = plain(torch.tensor([tokenizer(prompts[2], add_special_tokens=False)["input_ids"]])).logits[0, -1]
        assert torch.allclose(fixed(**batch).logits[2, -1], alone, atol=1e-4)
        assert torch.allclose(
            plain(**batch, position_ids=mask_positions(batch["attention_mask"])).logits[2, -1], alone, atol=1e-4
        )
        assert not torch.allclose(plain(**batch).logits[2, -1], alone, atol=1e-3)


def test_hooked_transformer_matches_hf_logits(pipeline, hooked):
    model, tokenizer = hooked
    hf, _ = load_checkpoint(pipeline["sft"])
    prompts = list(pipeline["datasets"]["ood_more_cards"]["prompt"][:3])
    batch = encode_prompts(tokenizer, prompts, 128)
    with torch.no_grad():
        ours = model(batch["input_ids"], attention_mask=batch["attention_mask"], padding_side="left")
        reference = hf(**batch, position_ids=mask_positions(batch["attention_mask"])).logits
    real = batch["attention_mask"].bool()
    assert torch.allclose(ours[real], reference[real], atol=1e-4)


# ---------------------------------------------------------------- training and evaluation


def test_sft_run_directory_and_evaluation_json(pipeline):
    root = pipeline["root"]
    assert (pipeline["sft"] / "tokenizer.json").exists() and (pipeline["sft"] / "model.safetensors").exists()
    assert not (root / "sft" / "checkpoints").exists()
    logs = [json.loads(line) for line in (root / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs if "loss" in r] == list(range(10, 81, 10))  # logging_steps=10, 80 steps
    evals = [r for r in logs if "eval_answer_accuracy" in r]
    assert [r["step"] for r in evals] == [40, 80]  # eval_steps=40
    # the kept model is the best validation checkpoint
    assert pipeline["sft_metrics"]["best_val_answer_accuracy"] == max(r["eval_answer_accuracy"] for r in evals)
    saved = json.loads((root / "sft" / "evaluation.json").read_text())
    expected = {"test", *(f"ood_{c}" for c in TASK.ood_categories)}
    assert set(saved["splits"]) == expected
    assert saved["splits"] == pipeline["sft_metrics"]["splits"]
    for split in saved["splits"].values():
        assert {"accuracy", "n", "format_rate", "by_family"} <= set(split) and split["n"] == 24  # eval_examples
        assert split["accuracy"] * 24 == pytest.approx(round(split["accuracy"] * 24))  # a count of 24 answers
        assert sum(split["answer_rate"].values()) == pytest.approx(split["format_rate"])
    assert saved["splits"]["test"]["format_rate"] > 0.9  # 80 steps teach the answer format
    # the JSON is what the best checkpoint answers now
    model, tokenizer = load_checkpoint(pipeline["sft"])
    again = evaluate_split(Policy(model, tokenizer, 128), pipeline["datasets"]["test"], 24)
    assert again == saved["splits"]["test"]


def test_sft_keeps_the_listed_steps_and_continues_from_a_checkpoint(pipeline, tmp_path):
    root = pipeline["root"]
    logs = [json.loads(line) for line in (root / "sft" / "metrics.jsonl").read_text().splitlines()]
    best_step = max((r for r in logs if "eval_answer_accuracy" in r), key=lambda r: r["eval_answer_accuracy"])["step"]
    best, _ = load_checkpoint(pipeline["sft"])
    kept = {step: load_checkpoint(root / "sft" / "steps" / f"step_{step}")[0] for step in (40, 80)}
    weights = {step: model.state_dict() for step, model in kept.items()}
    assert all(torch.equal(best.state_dict()[k], weights[best_step][k]) for k in weights[best_step])  # same step
    assert not torch.equal(weights[40]["lm_head.weight"], weights[80]["lm_head.weight"])
    curve = evaluate_steps(root / "sft", pipeline["datasets"], max_examples=24, out=tmp_path / "curve.json")
    assert [point["step"] for point in curve["points"]] == [40, 80]
    at_best = next(point for point in curve["points"] if point["step"] == best_step)
    final = pipeline["sft_metrics"]["splits"]
    assert {name: split["accuracy"] for name, split in at_best["splits"].items()} == {
        name: split["accuracy"] for name, split in final.items()
    }  # the kept step that was best answers as the best checkpoint does
    assert json.loads((tmp_path / "curve.json").read_text()) == curve
    with pytest.raises(LMError, match="kept no checkpoints"):
        evaluate_steps(tmp_path, pipeline["datasets"])
    # continued SFT starts from the checkpoint's weights and keeps its tokenizer
    config = SFTConfig(
        output_dir=str(tmp_path / "more"),
        init_from=str(pipeline["sft"]),
        max_steps=1,
        batch_size=4,
        learning_rate=1e-9,
        eval_steps=1,
        eval_examples=4,
    )
    path, _ = run_sft(TASK, config, datasets=pipeline["datasets"])
    continued, _ = load_checkpoint(path)
    assert all(torch.allclose(continued.state_dict()[k], v, atol=1e-6) for k, v in best.state_dict().items())
    assert (path / "tokenizer.json").read_text() == (pipeline["sft"] / "tokenizer.json").read_text()
    with pytest.raises(LMError, match="not a directory"):
        run_sft(TASK, config.model_copy(update={"init_from": str(tmp_path / "nothing")}), pipeline["datasets"])


def test_evaluation_scores_completions_by_hand(pipeline):
    split = pipeline["datasets"]["test"].select(range(4))
    answers = [" BIG", " SMALL", "nonsense", " BIG"]

    class Fixed:
        def generate(self, prompts):
            return answers[: len(prompts)]

    result = evaluate_split(Fixed(), split)
    expected = sum(a.strip() == label for a, label in zip(answers, split["label"])) / 4
    assert result["accuracy"] == expected and result["format_rate"] == 0.75
    assert result["answer_rate"] == {"BIG": 0.5, "SMALL": 0.25}
    for label in ("BIG", "SMALL"):
        rows = [a.strip() == truth for a, truth in zip(answers, split["label"]) if truth == label]
        assert result["by_label"].get(label) == (sum(rows) / len(rows) if rows else None)


def test_rl_changes_the_model_and_logs_curves(pipeline):
    root = pipeline["root"]
    sft, tokenizer = load_checkpoint(pipeline["sft"])
    rl, _ = load_checkpoint(pipeline["rl"])
    before, after = dict(sft.named_parameters()), dict(rl.named_parameters())
    assert list(before) == list(after)
    assert [name for name in before if torch.equal(before[name], after[name])] == []  # GRPO trains every tensor
    # ... but only through the positions its prompts and completions reach: Adam leaves a row whose gradient
    # was always zero where it was (no weight decay), so the position embeddings past them are untouched
    prompts = TextGameEnv(TASK, {"id": 0.5, "paraphrase": 0.5}, seed=0).sample(48)  # run_rl's prompts
    lengths = [len(tokenizer(p["prompt"], add_special_tokens=False)["input_ids"]) for p in prompts]
    reach = max(lengths) + completion_budget(TASK.answer_format)
    wpe_before, wpe_after = before["transformer.wpe.weight"], after["transformer.wpe.weight"]
    assert torch.equal(wpe_before[reach:], wpe_after[reach:])
    assert all(not torch.equal(wpe_before[i], wpe_after[i]) for i in range(min(lengths)))  # every prompt's
    curve = [json.loads(line) for line in (root / "rl" / "rl_curve.jsonl").read_text().splitlines()]
    assert [r["step"] for r in curve] == [2, 3] and "ood_paraphrase" in curve[0]
    final = pipeline["rl_metrics"]["splits"]
    assert {k: v for k, v in curve[-1].items() if k != "step"} == {s: final[s]["accuracy"] for s in final}
    logs = [json.loads(line) for line in (root / "rl" / "metrics.jsonl").read_text().splitlines()]
    rewards = {k for r in logs for k in r if k.startswith("reward/")}
    assert rewards and rewards <= {"reward/id", "reward/paraphrase"}  # the mix's distributions only
    reward = GameReward(TextGameEnv(TASK, format_reward=0.5))
    scores = reward(
        prompts=["p"] * 3,
        completions=[" BIG", " SMALL", "so"],
        label=["BIG", "BIG", "SMALL"],
        total=[9, 2, 3],
        distribution=["id", "id", "paraphrase"],
    )
    assert scores == [1.5, 0.5, 0.0] and reward.flush() == {"reward/id": 1.0, "reward/paraphrase": 0.0}
    assert reward.flush() == {}
    assert (root / "rl" / "config.yaml").exists()
    assert set(pipeline["rl_metrics"]["splits"]) == set(pipeline["sft_metrics"]["splits"]) - {
        "best_val_answer_accuracy"
    }


def test_environment_rewards():
    env = TextGameEnv(TaskConfig(), mix={"paraphrase": 1.0}, format_reward=0.1, seed=0)
    prompt, info = env.reset(seed=1)
    example = info["example"]
    assert prompt == example["prompt"] and example["distribution"] == "paraphrase"
    _, reward, terminated, truncated, step_info = env.step(f" {example['label']}")
    assert reward == pytest.approx(1.1) and terminated and not truncated and step_info["correct"]
    env.reset()
    wrong = "SMALL" if env.example["label"] == "BIG" else "BIG"
    assert env.step(f" {wrong}")[1] == pytest.approx(0.1)
    env.reset()
    assert env.step(" I think so")[1] == 0.0
    with pytest.raises(LMError, match="reset"):
        env.step(" BIG")


# ---------------------------------------------------------------- analyses


def test_prompt_positions_point_at_the_right_tokens(hooked, pipeline):
    _, tokenizer = hooked
    examples = list(pipeline["datasets"]["test"].select(range(3)))
    prompts = PromptSet.build(tokenizer, examples, 128)
    for i, example in enumerate(examples):

        def decode(name, i=i):
            return tokenizer.decode([int(prompts.input_ids[i, prompts.positions[name][i]])])

        assert decode("final") == ":"
        assert example["rule_text"].endswith(decode("rule_end").strip())
        assert str(example["numbers"][-1]).endswith(decode("cards_end").strip())


def test_cached_activations_match_run_with_cache(hooked, pipeline):
    model, tokenizer = hooked
    example = pipeline["datasets"]["test"][0]
    prompts = PromptSet.build(tokenizer, [example], 128)
    acts = cache_activations(model, prompts, ["blocks.1.hook_resid_post"], ["final", "cards_end"])
    tokens = torch.tensor([tokenizer(example["prompt"], add_special_tokens=False)["input_ids"]])
    _, cache = model.run_with_cache(tokens)
    reference = cache["blocks.1.hook_resid_post"][0]
    assert torch.allclose(acts[("blocks.1.hook_resid_post", "final")][0], reference[-1], atol=1e-5)
    position = int(prompts.positions["cards_end"][0]) - (prompts.width - tokens.shape[1])
    assert torch.allclose(acts[("blocks.1.hook_resid_post", "cards_end")][0], reference[position], atol=1e-5)


def test_head_patching_batched_equals_looped(hooked, pipeline):
    model, tokenizer = hooked
    pairs = counterfactual_pairs(TASK, "paraphrase", 3)
    prompts = PromptSet.build(tokenizer, [a for a, _ in pairs] + [b for _, b in pairs], 128)
    adapter = LMAdapter(model, prompts)
    d_head = model.cfg.d_head
    experiments = [
        Experiment(3 + i, i, (Intervention("blocks.1.attn.hook_z", units=tuple(range(d_head, 2 * d_head))),))
        for i in range(3)
    ] + [
        Experiment(i, None, (Intervention("blocks.0.hook_mlp_out", positions=(prompts.width - 1,), op="zero"),))
        for i in range(3)
    ]
    _, batched = run_sweep(adapter, experiments, chunk_size=4)
    _, looped = run_looped(adapter, experiments)
    for a, b in zip(batched, looped):
        assert a["logit_diff"] == pytest.approx(b["logit_diff"], abs=1e-4)

    # the engine's head slice is exactly TransformerLens's head axis
    def zero_head(z, hook):
        z[:, :, 1] = 0
        return z

    batch = adapter.batch([0])
    with torch.no_grad():
        manual = model.run_with_hooks(
            batch["input_ids"],
            attention_mask=batch["attention_mask"],
            padding_side="left",
            fwd_hooks=[("blocks.1.attn.hook_z", zero_head)],
        )[:, -1]
    _, zeroed = run_sweep(
        adapter,
        [
            Experiment(
                0, None, (Intervention("blocks.1.attn.hook_z", units=tuple(range(d_head, 2 * d_head)), op="zero"),)
            )
        ],
    )
    assert zeroed[0]["logit_diff"] == pytest.approx(adapter.score(manual, batch)["logit_diff"].item(), abs=1e-4)


def test_counterfactual_pairs_keep_the_answer():
    for category in ("paraphrase", "unseen_colour", "more_cards"):
        for base, shifted in counterfactual_pairs(TaskConfig(), category, 20):
            assert base["label"] == shifted["label"] and base["total"] == shifted["total"]
            assert shifted["distribution"] == category
            assert base["prompt"] != shifted["prompt"]
    with pytest.raises(LMError, match="no answer-preserving pairs for OOD category 'shifted_numbers'"):
        counterfactual_pairs(TaskConfig(), "shifted_numbers", 1)


def test_patching_report_and_last_layer_invariant(hooked, tmp_path):
    model, tokenizer = hooked
    report = run_patching(model, tokenizer, TASK, ANALYSIS, tmp_path)
    assert set(report["categories"]) == {"paraphrase", "unseen_colour", "more_cards"}
    rows = report["categories"]["paraphrase"]["sites"]
    last = f"L{model.cfg.n_layers - 1}"
    for direction in ("id_to_ood", "ood_to_id"):
        # the final logits read only the last residual stream at the last position: patching it there
        # hands over the source's logits exactly
        row = next(r for r in rows if r["direction"] == direction and r["site"] == last and r["position"] == -1)
        assert row["patched_logit_diff"] == pytest.approx(row["source_logit_diff"], abs=1e-4)
    assert {r["kind"] for r in rows} == {"resid", "head", "attn", "mlp"}
    assert json.loads((tmp_path / "patching.json").read_text())["categories"]["paraphrase"]["sites"] == rows
    for category in report["categories"]:
        for direction in ("id_to_ood", "ood_to_id"):
            # a 3 × 3 heatmap (emb, L0, L1 × the last 3 positions) in RdBu with its colour bar
            pixels = png_pixels(tmp_path / f"patching_{category}_{direction}.png", 250, 180)
            assert has_colour(pixels, (5, 48, 97)) and has_colour(pixels, (103, 0, 31))  # RdBu's two ends


def test_patching_by_attribution(hooked, tmp_path):
    model, tokenizer = hooked
    analysis = ANALYSIS.model_copy(update={"patch_categories": ["paraphrase"], "patch_method": "attribution"})
    estimated = run_patching(model, tokenizer, TASK, analysis, tmp_path)
    exact = run_patching(model, tokenizer, TASK, analysis.model_copy(update={"patch_method": "exact"}))
    assert estimated["method"] == "attribution"
    estimated_rows, exact_rows = (r["categories"]["paraphrase"]["sites"] for r in (estimated, exact))
    assert all(r["patched_accuracy"] is None and np.isfinite(r["patched_logit_diff"]) for r in estimated_rows)
    assert [r["target_logit_diff"] for r in estimated_rows] == pytest.approx(
        [r["target_logit_diff"] for r in exact_rows]
    )
    assert [r["patched_logit_diff"] for r in estimated_rows] != pytest.approx(
        [r["patched_logit_diff"] for r in exact_rows]
    )


def test_probes_report(hooked, pipeline, tmp_path):
    model, tokenizer = hooked
    config = ANALYSIS.model_copy(update={"splits": ["test", "ood_paraphrase"], "positions": ["final"]})
    report = run_probes(model, tokenizer, pipeline["datasets"], config, TASK.colours, tmp_path)
    layers = {r["layer"] for r in report["probes"]}
    assert layers == {"emb", "L0", "L1"}
    targets = {r["target"] for r in report["probes"]}
    assert {"family", "label", "total", "sum_RED"} <= targets
    assert {r["split"] for r in report["transfer"]} == {"ood_paraphrase"}
    assert len(json.loads((tmp_path / "probes.json").read_text())["probes"]) == len(report["probes"])
    for target in ("family", "label", "total", "sum_RED"):
        # one line per split in matplotlib's first two colours, on a 5.5 × 3.5 inch figure at 110 dpi
        pixels = png_pixels(tmp_path / f"probe_{target}.png", 400, 250)
        assert has_colour(pixels, (31, 119, 180)) and has_colour(pixels, (255, 127, 14)), target


def test_ablation_importance_and_jaccard(hooked, pipeline, tmp_path):
    model, tokenizer = hooked
    config = ANALYSIS.model_copy(update={"splits": ["test", "ood_more_cards"], "top_k": 2})
    report = ablation_scan(
        model, tokenizer, pipeline["datasets"], config, ["blocks.0.mlp.hook_post:0-3"], tmp_path, name="sft"
    )
    assert report["name"] == "sft"
    names = {r["component"] for r in report["rows"]}
    assert {"L0H0", "L1H1", "mlp0", "mlp1", "blocks.0.mlp.hook_post:0-3"} <= names
    assert len(report["important"]["zero"]["test"]) == 2
    same = compare_importance(report, {**report, "name": "rl"})
    assert same["names"] == ["sft", "rl"] and "rl:zero/test~ood_more_cards" in same["jaccard"]
    assert all(v == 1.0 for k, v in same["jaccard"].items() if ":" not in k)
    assert jaccard(["a", "b"], ["b", "c"]) == pytest.approx(1 / 3)
    assert json.loads((tmp_path / "ablation.json").read_text()) == report


def test_sae_on_the_residual_stream(hooked, pipeline, tmp_path):
    pytest.importorskip("sae_lens")
    model, tokenizer = hooked
    config = ANALYSIS.model_copy(update={"splits": ["test", "ood_unseen_colour"]})
    report = run_sae_analysis(model, tokenizer, pipeline["datasets"], config, tmp_path)
    d_sae = report["sae"]["d_sae"]
    assert d_sae == 4 * model.cfg.d_model
    assert report["sae"]["dead_fraction"] * d_sae == pytest.approx(round(report["sae"]["dead_fraction"] * d_sae))
    # trained on every real token (no padding) of the first max_examples training prompts
    train = list(pipeline["datasets"]["train"].select(range(ANALYSIS.max_examples)))
    tokens = sum(len(tokenizer(e["prompt"], add_special_tokens=False)["input_ids"]) for e in train)
    assert report["trained_on"]["rows"] == tokens == report["sae"]["n_train"] + report["sae"]["n_eval"]
    assert json.loads((tmp_path / "sae" / "cfg.json").read_text())["d_in"] == model.cfg.d_model
    sae = load_sae(tmp_path / "sae")
    assert sae.cfg.d_sae == d_sae
    assert len(report["features"]) == 20 and set(report["features"][0]["by_split"]) == {"test", "ood_unseen_colour"}
    # the same SAE with planted features: 0-9 can never fire, every other one fires on every prompt
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.b_enc.fill_(1.0)
        sae.b_enc[:10] = -1.0
    examples = list(pipeline["datasets"]["test"].select(range(8)))
    acts = sae_training_activations(model, tokenizer, examples, report["site"], "final", 8)
    assert evaluate_sae(sae, acts)["dead_fraction"] == 10 / d_sae
    features = encode_features(sae, acts)
    groups = ["test"] * len(examples)
    described = describe_features(
        features,
        feature_statistics(features, groups),
        feature_statistics(features, [e["family"] for e in examples]),
        feature_statistics(features, [e["label"] for e in examples]),
        examples,
        groups,
        top=5,
        k=2,
    )
    assert len(described) == 5 and all(d["feature"] >= 10 and d["frequency"] == 1.0 for d in described)
    assert all(set(d["by_family"].values()) == {1.0} and len(d["top_examples"]) == 2 for d in described)


# ---------------------------------------------------------------- commands


def test_cli_commands_end_to_end(pipeline, tmp_path):
    runner = CliRunner()
    data, sft, rl = str(pipeline["root"] / "data"), str(pipeline["sft"]), str(pipeline["rl"])
    result = runner.invoke(
        app, ["lm", "evaluate", sft, "--data", data, "--max-examples", "8", "--out", str(tmp_path / "e.json")]
    )
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "e.json").read_text())
    assert "ood_paraphrase" in result.output and written["checkpoint"] == sft
    assert {split["n"] for split in written["splits"].values()} == {8}  # --max-examples 8
    config = tmp_path / "analysis.yaml"
    config.write_text("analysis:\n  max_examples: 16\n  splits: [test, ood_more_cards]\n  ablation_ops: [zero]\n")
    for checkpoint, name in ((sft, "sft"), (rl, "rl")):
        result = runner.invoke(
            app, ["lm", "ablation", checkpoint, "--data", data, "--config", str(config), "--out", str(tmp_path / name)]
        )
        assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        [
            "lm",
            "ablation",
            rl,
            "--data",
            data,
            "--config",
            str(config),
            "--out",
            str(tmp_path / "rl"),
            "--compare",
            str(tmp_path / "sft" / "ablation.json"),
        ],
    )
    assert result.exit_code == 0 and "Jaccard zero/test" in result.output
    result = runner.invoke(
        app,
        [
            "lm",
            "compare",
            f"sft={pipeline['root'] / 'sft' / 'evaluation.json'}",
            f"rl={pipeline['root'] / 'rl' / 'evaluation.json'}",
        ],
    )
    assert result.exit_code == 0 and "ood_unseen_colour" in result.output


def test_seed_scripts_run(tmp_path):
    out = tmp_path / "data"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts/py/build_datasets.py"),
            "--out",
            str(out),
            "--n-train",
            "50",
            "--n-test",
            "10",
            "--n-ood",
            "5",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert run.returncode == 0, run.stderr
    loaded, config = load_datasets(out)
    assert len(loaded["train"]) == 50 and config.n_train == 50
    scripts = {
        "build_datasets": "datasets",
        "run_sft": "sft",
        "run_rl": "rl",
        "run_evaluation": "evaluate",
        "run_probes": "probes",
        "run_patching": "patching",
        "run_ablation": "ablation",
        "run_sae": "sae",
    }
    for script, name in scripts.items():  # each script runs its `reasonlens lm` command under its own name
        text = (ROOT / f"scripts/py/{script}.py").read_text()
        assert f'command("{name}").main(sys.argv[1:], prog_name="{script}.py")' in text
        assert command(name).name == name
    helped = subprocess.run(
        [sys.executable, str(ROOT / "scripts/py/run_patching.py"), "--help"], capture_output=True, text=True
    )
    assert helped.returncode == 0 and "--categories" in helped.stdout
