"""The seed-001 tools as argparse programs (``Neuron_Selection/activation_extraction.py``,
``Neuron_Selection/activation_patching.py``, ``Neuron_Selection/find_neurons.py``), shared with
``reasonlens agents extract | patch | neurons``. Flags keep the guide's spelling (``--agent_path``,
``--patch_spec`` …). Each ``main_*`` returns an exit code; bad input prints one line and returns 2.
Every command also takes ``--trust-pickle`` (``--trust_pickle``): load a foreign SB3 zip without
``config.yaml`` with ``DQN.load``, which unpickles it; by default only the policy weights are read.

The agents modules that do the work import gymnasium, minigrid and stable-baselines3 (the ``[agents]``
extra), so each command imports them when it runs: ``--help`` works without the extra.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from reasonlens.agents.errors import AgentError
from reasonlens.cli.errors import exit_code
from reasonlens.utils.io import write_json
from reasonlens.utils.paths import check_file_name


def _agent(args):
    from reasonlens.agents.agent import Agent

    return Agent.load(args.agent_path, device=args.device, trust_pickle=args.trust_pickle)


TRUST_HELP = (
    "load agent.zip with stable-baselines3's DQN.load, which unpickles it and so runs any code it holds: only for "
    "a foreign SB3 zip without config.yaml whose maker you trust (by default only the weights are read)"
)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--trust-pickle", "--trust_pickle", dest="trust_pickle", action="store_true", help=TRUST_HELP)


def extraction_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="activation_extraction.py",
        description="Record every Q-network layer's activations for each input of an input file "
        "(writes <name>_activations.npz and <name>_activations_readable.json into AGENT/activation_logging/).",
    )
    parser.add_argument("--agent_path", required=True, help="agent directory (holds agent.zip and config.yaml)")
    parser.add_argument(
        "--inputs",
        required=True,
        nargs="+",
        help="input file(s): a path, or a name inside AGENT/activation_inputs/ (e.g. clean_inputs.json)",
    )
    parser.add_argument("--output", help="the .npz to write (one input file only; default: AGENT/activation_logging/)")
    parser.add_argument("--input_ids", nargs="+", help="only these input ids (default: all)")
    _add_common(parser)
    return parser


def _extract(args) -> None:
    from reasonlens.agents.extraction import extract_activations

    agent = _agent(args)
    if args.output and len(args.inputs) > 1:
        raise AgentError("--output names one file; give one --inputs file with it")
    for inputs in args.inputs:
        npz, readable = extract_activations(agent, inputs, args.output, args.input_ids)
        print(f"{inputs}: activations -> {npz}\n{' ' * len(str(inputs))}  readable    -> {readable}")


def main_extract(argv: Sequence[str] | None = None) -> int:
    return exit_code(lambda: _extract(extraction_parser().parse_args(argv)))


def patching_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="activation_patching.py",
        description="Patch chosen neurons of a Q-network with source activations (same input id) and record "
        "how the Q-values and the greedy action change (AGENT/patching_results/<prefix>_results.json).",
    )
    parser.add_argument("--agent_path", required=True, help="agent directory (holds agent.zip and config.yaml)")
    parser.add_argument("--target_input", required=True, help="input file to run (path or name in activation_inputs/)")
    parser.add_argument(
        "--source_activations",
        help="activations to patch in (.npz or _readable.json; path or name in activation_logging/)",
    )
    parser.add_argument("--patch_spec", required=True, help='e.g. "q_net.0:5,6,7;q_net.2:10,11" or "q_net.2:all"')
    parser.add_argument("--input_ids", nargs="+", help="only these input ids (default: every input of the target file)")
    parser.add_argument(
        "--output_prefix", default="", help="result files are <prefix>_results.json and <prefix>_summary.json"
    )
    parser.add_argument("--output_dir", help="where to write (default: AGENT/patching_results)")
    parser.add_argument("--op", default="patch", choices=["patch", "zero", "mean"], help="patch, or ablate the units")
    _add_common(parser)
    return parser


def _patch(args) -> None:
    from reasonlens.agents.experiment import PatchingExperiment, summarize

    stem = f"{args.output_prefix}_" if args.output_prefix else "patching_"
    check_file_name(f"{stem}results.json", "--output_prefix")  # the results stay inside the output folder
    experiment = PatchingExperiment(args.agent_path, device=args.device, trust_pickle=args.trust_pickle)
    results = experiment.run_patching_experiment(
        args.target_input, args.source_activations, args.patch_spec, args.input_ids, op=args.op
    )
    summary = summarize(
        results,
        args.patch_spec,
        op=args.op,
        target_input=str(args.target_input),
        source_activations=args.source_activations,
    )
    out = Path(args.output_dir) if args.output_dir else experiment.output_dir
    results_path, summary_path = out / f"{stem}results.json", out / f"{stem}summary.json"
    write_json(results_path, results)
    write_json(summary_path, summary)
    print(
        f"{summary['inputs']} inputs, spec {args.patch_spec!r} ({args.op}): action changed on "
        f"{summary['actions_changed']} ({summary['action_changed_rate']:.1%})"
        + (
            f"; patched action = source action on {summary['matches_source']} ({summary['matches_source_rate']:.1%})"
            if "matches_source" in summary
            else ""
        )
    )
    print(f"results -> {results_path}\nsummary -> {summary_path}")


def main_patch(argv: Sequence[str] | None = None) -> int:
    return exit_code(lambda: _patch(patching_parser().parse_args(argv)))


def finding_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="find_neurons.py",
        description="Find neurons behind a decision (the guide's four methods): 'diff' ranks clean/corrupted "
        "activation differences, 'dead' lists units active in clean and dead in corrupted, 'ablate' zero/mean-"
        "ablates each unit, 'search' narrows whole layers to a minimal set whose patch restores the clean action.",
    )
    parser.add_argument("method", choices=["diff", "dead", "ablate", "search"])
    parser.add_argument("--agent_path", required=True)
    parser.add_argument("--layers", nargs="+", default=None, help="layers to study (default: every hidden Linear)")
    parser.add_argument("--clean", default="clean_activations.npz", help="diff/dead: clean activations")
    parser.add_argument("--corrupted", default="corrupted_activations.npz", help="diff/dead: corrupted activations")
    parser.add_argument("--clean_inputs", default="clean_inputs.json", help="search: clean input file")
    parser.add_argument("--corrupted_inputs", default="corrupted_inputs.json", help="search/ablate: corrupted inputs")
    parser.add_argument("--input_ids", nargs="+", help="only these input ids")
    parser.add_argument("--top_k", type=int, default=10, help="diff: units to list")
    parser.add_argument("--op", default="zero", choices=["zero", "mean"], help="ablate: the ablation")
    parser.add_argument("--threshold", type=float, default=0.8, help="search: restore rate to keep")
    parser.add_argument("--heldout_clean_inputs", help="search: clean inputs not searched on, to check the set")
    parser.add_argument("--heldout_corrupted_inputs", help="search: their corrupted inputs (same ids)")
    parser.add_argument(
        "--control", type=int, default=20, help="search: random unit sets of the found set's sizes (the control)"
    )
    parser.add_argument("--output", help="JSON to write (default: AGENT/patching_results/neurons_<method>.json)")
    _add_common(parser)
    return parser


def _find(args) -> None:
    from reasonlens.agents import neurons
    from reasonlens.agents.agent import RESULTS_DIR
    from reasonlens.agents.extraction import load_activations
    from reasonlens.agents.inputs import load_input_pairs, load_inputs, select_ids

    agent = _agent(args)
    layers = [agent.check_layer(layer) for layer in args.layers] if args.layers else agent.hidden_layers()

    def observations(name):
        path = agent.resolve_input(name)
        ids, obs, _ = load_inputs(path, agent.obs_dim)
        chosen = select_ids(ids, args.input_ids, str(path))
        return chosen, obs[[ids.index(i) for i in chosen]]

    if args.method in ("diff", "dead"):
        clean = load_activations(agent.resolve_activations(args.clean), agent)
        corrupted = load_activations(agent.resolve_activations(args.corrupted), agent)
        if args.input_ids:
            select_ids(list(clean), args.input_ids, args.clean)
            clean = {i: clean[i] for i in args.input_ids}
        if args.method == "diff":
            report = {layer: neurons.activation_differences(clean, corrupted, layer, args.top_k) for layer in layers}
            for layer, found in report.items():
                print(
                    f"{layer}: top different units (mean |clean - corrupted|, {found['inputs']} inputs): "
                    f"{found['top_units']}"
                )
        else:
            report = {layer: neurons.active_to_dead(clean, corrupted, layer) for layer in layers}
            for layer, found in report.items():
                print(f"{layer}: most often active in clean and dead in corrupted: {found['most_often_killed'][:10]}")
    elif args.method == "ablate":
        _, obs = observations(args.corrupted_inputs)
        report = {layer: neurons.ablation_scan(agent, obs, layer, args.op) for layer in layers}
        for layer, found in report.items():
            top = found["ranking"][:10]
            rates = [f"{u}:{found['action_change_rate'][u]:.0%}" for u in top]
            print(f"{layer}: {args.op}-ablating one unit changes the action most for {', '.join(rates)}")
    else:
        _, clean_obs, corrupted_obs = load_input_pairs(agent, args.clean_inputs, args.corrupted_inputs, args.input_ids)
        heldout = [args.heldout_clean_inputs, args.heldout_corrupted_inputs]
        if (heldout[0] is None) != (heldout[1] is None):
            raise AgentError("give both --heldout_clean_inputs and --heldout_corrupted_inputs, or neither")
        if args.control < 0:
            raise AgentError(f"--control is a number of random unit sets, 0 or more; got {args.control}")
        checks = {"searched": (clean_obs, corrupted_obs)}
        if heldout[0] is not None:  # read before searching, so a bad file stops at once
            checks["heldout"] = load_input_pairs(agent, *heldout)[1:]
        result = neurons.narrowing_search(agent, clean_obs, corrupted_obs, layers, args.threshold)
        report = result.to_dict()
        for step in result.trace:
            print(f"  {step.stage:<14} {step.size:>4} units  restore rate {step.restore_rate:.1%}")
        verdict = "found" if result.found else "no set reaches the threshold"
        print(
            f"{verdict}: {report['size']} unit(s) {result.spec!r} restore the clean action on "
            f"{result.restore_rate:.1%} of {result.pairs} pairs ({result.pairs_dropped} dropped: same action)"
        )
        for name, (clean_set, corrupted_set) in checks.items():
            report[name] = check = neurons.check_unit_set(agent, clean_set, corrupted_set, result.units, args.control)
            control = (
                ""
                if check["random_mean"] is None
                else (
                    f"; {args.control} random sets of the same sizes: mean {check['random_mean']:.1%}, "
                    f"best {check['random_max']:.1%}"
                )
            )
            print(f"{name} pairs ({check['pairs']}): the set restores {check['restore_rate']:.1%}{control}")
    output = args.output or agent.path / RESULTS_DIR / f"neurons_{args.method}.json"
    write_json(output, report)
    print(f"-> {output}")


def main_find(argv: Sequence[str] | None = None) -> int:
    return exit_code(lambda: _find(finding_parser().parse_args(argv)))
