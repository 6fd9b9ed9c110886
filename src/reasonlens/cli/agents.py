"""``reasonlens agents ...``: train and evaluate DQN agents, make input pairs, and the seed-001 tools
(``extract``, ``patch``, ``neurons`` take the flags of the scripts in ``Neuron_Selection/``).

``reasonlens.agents.envs``, ``.agent``, ``.train`` and ``.inputs`` import gymnasium, minigrid and
stable-baselines3 (the ``[agents]`` extra): the commands import them when they run, so that
``reasonlens --help`` works without the extra."""

from __future__ import annotations

from typing import Annotated

import typer

from reasonlens.agents.config import config_for
from reasonlens.cli.agent_tools import main_extract, main_find, main_patch
from reasonlens.cli.errors import needs_extra, user_errors

app = typer.Typer(
    help="DQN agents in MiniGrid and neuron patching of their Q-networks (needs the agents extra). Agents load "
    "without unpickling anything; --trust-pickle opts in to SB3's own loader for a foreign zip you trust.",
    no_args_is_help=True,
)

PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}
TRUST_PICKLE = typer.Option(
    "--trust-pickle",
    help="load agent.zip with stable-baselines3's DQN.load, which unpickles it and so runs any code it holds: "
    "only for a foreign SB3 zip without config.yaml whose maker you trust (by default only the weights are read)",
)


@app.command()
def train(
    env_id: Annotated[str, typer.Argument(help="a MiniGrid id, e.g. MiniGrid-LavaCrossingS9N1-v0")],
    out: Annotated[str, typer.Option("--out", help="agent directory to create")],
    steps: Annotated[int | None, typer.Option(help="environment steps (default: the env's recipe)")] = None,
    seed: Annotated[int, typer.Option(help="training seed")] = 0,
    init_seed: Annotated[int | None, typer.Option(help="seed of the initial weights (default: --seed)")] = None,
    eval_every: Annotated[int | None, typer.Option(help="steps between success-rate evaluations")] = None,
    eval_episodes: Annotated[int | None, typer.Option(help="episodes per evaluation")] = None,
    n_envs: Annotated[int | None, typer.Option(help="parallel environments")] = None,
    gamma: Annotated[float | None, typer.Option(help="discount")] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda")] = "cpu",
) -> None:
    """Train a DQN agent (recipe per env: docs/agents.md) and save AGENT_DIR with its success rate."""
    with needs_extra("agents"), user_errors():
        from reasonlens.agents.envs import check_env_id
        from reasonlens.agents.train import train_agent

        check_env_id(env_id)
        config = config_for(
            env_id,
            steps=steps,
            seed=seed,
            init_seed=init_seed,
            eval_every=eval_every,
            eval_episodes=eval_episodes,
            n_envs=n_envs,
            gamma=gamma,
            device=device,
        )
        train_agent(config, out, log=typer.echo)


@app.command()
def curriculum(
    config: Annotated[str, typer.Argument(help="curriculum YAML: seed, base settings, stages (env_id, steps, ...)")],
    out: Annotated[str, typer.Option("--out", help="curriculum folder to create or resume")],
    seed: Annotated[int | None, typer.Option(help="training seed (default: the file's)")] = None,
    init_seed: Annotated[
        int | None, typer.Option(help="seed of the initial weights (default: the file's, else --seed)")
    ] = None,
) -> None:
    """Train one agent through a curriculum of environments, weights carried from stage to stage; resumable
    (run it again with the same --out). OUT ends as the last stage's agent directory."""
    with needs_extra("agents"), user_errors():
        from reasonlens.agents.curriculum import read_curriculum, train_curriculum

        train_curriculum(read_curriculum(config, seed, init_seed), out, log=typer.echo)


@app.command()
def compare(
    agent_a: Annotated[str, typer.Argument(help="agent directory whose unit set is given (--units-a)")],
    agent_b: Annotated[str, typer.Argument(help="agent directory to compare it with")],
    units_a: Annotated[str, typer.Option("--units-a", help='A\'s unit set, e.g. "q_net.2:5,27,34"')],
    units_b: Annotated[str | None, typer.Option("--units-b", help="B's own unit set, if found")] = None,
    clean_inputs: Annotated[str, typer.Option(help="clean input file (path or name in A's inputs)")] = (
        "clean_inputs.json"
    ),
    corrupted_inputs: Annotated[str, typer.Option(help="corrupted input file, same ids")] = "corrupted_inputs.json",
    random_sets: Annotated[int, typer.Option(help="random unit sets of the same sizes (the control)")] = 20,
    output: Annotated[
        str | None, typer.Option(help="JSON to write (default: A/patching_results/compare_<B>.json)")
    ] = None,
    trust_pickle: Annotated[bool, TRUST_PICKLE] = False,
) -> None:
    """Do two agents share a circuit? Units matched by activation correlation, A's set in B's numbering,
    and how well it restores the clean action when patched in B (matched, same indices, B's own, random)."""
    with needs_extra("agents"), user_errors():
        from pathlib import Path

        from reasonlens.agents.agent import RESULTS_DIR, Agent
        from reasonlens.agents.compare import compare_circuits
        from reasonlens.agents.experiment import parse_patch_spec
        from reasonlens.agents.inputs import load_input_pairs
        from reasonlens.utils.io import write_json

        first, second = Agent.load(agent_a, trust_pickle=trust_pickle), Agent.load(agent_b, trust_pickle=trust_pickle)

        def unit_set(agent, spec):
            return {
                i.site: list(i.units if i.units is not None else range(agent.layers()[i.site]))
                for i in parse_patch_spec(agent, spec)
            }

        _, clean, corrupted = load_input_pairs(first, clean_inputs, corrupted_inputs)
        report = compare_circuits(
            first, second, clean, corrupted, unit_set(first, units_a),
            None if units_b is None else unit_set(second, units_b), random_sets,
        )  # fmt: skip
        for layer, summary in report["layers"].items():
            typer.echo(
                f"{layer}: matched units' mean correlation {summary['mean_correlation']:.2f} "
                f"({summary['matched_above_0.9']} of {summary['units']} above 0.9)"
            )
        typer.echo(f"A's units in B's numbering: {report['units_a_in_b']}; Jaccard with B's own: {report['jaccard']}")
        typer.echo(
            "restore rate: " + ", ".join(f"{k} {v:.1%}" for k, v in report["restore_rate"].items() if v is not None)
        )
        path = Path(output) if output else first.path / RESULTS_DIR / f"compare_{second.path.name}.json"
        write_json(path, report)
        typer.echo(f"-> {path}")


def seed_range(text: str) -> tuple[int, int]:
    """ "A-B" (inclusive) -> (first seed, episodes)."""
    first, dash, last = text.partition("-")
    if not (dash and first.isdigit() and last.isdigit() and int(last) >= int(first)):
        raise typer.BadParameter(f"--seeds takes FIRST-LAST, e.g. 5000-5199 (got {text!r})")
    return int(first), int(last) - int(first) + 1


@app.command()
def evaluate(
    agent_dir: Annotated[str, typer.Argument(help="agent directory")],
    episodes: Annotated[int | None, typer.Option(help="episodes (default: the config's test_episodes)")] = None,
    seed: Annotated[int | None, typer.Option(help="first reset seed (default: the config's test_seed)")] = None,
    seeds: Annotated[str | None, typer.Option(help="reset seeds FIRST-LAST, inclusive (not with --seed)")] = None,
    trust_pickle: Annotated[bool, TRUST_PICKLE] = False,
) -> None:
    """Success rate of the agent's greedy policy."""
    if seeds is not None:
        if episodes is not None or seed is not None:
            raise typer.BadParameter("give --seeds, or --seed and --episodes, not both")
        seed, episodes = seed_range(seeds)
    with needs_extra("agents"), user_errors():
        from reasonlens.agents.agent import Agent
        from reasonlens.agents.train import evaluate_agent

        result = evaluate_agent(Agent.load(agent_dir, trust_pickle=trust_pickle), episodes, seed)
        typer.echo(
            f"success {result['success_rate']:.1%} over {result['episodes']} episodes (seeds from "
            f"{result['first_seed']}); mean length {result['mean_length']:.1f}"
        )


@app.command()
def inputs(
    agent_dir: Annotated[str, typer.Argument(help="agent directory")],
    corruption: Annotated[str, typer.Option(help="lava_into_path | goal_moved | agent_turned")] = "lava_into_path",
    n: Annotated[int, typer.Option(help="number of pairs")] = 100,
    seed: Annotated[int, typer.Option(help="first reset seed")] = 0,
    states: Annotated[str, typer.Option(help="visited (the agent's own rollouts) | random")] = "visited",
    per_episode: Annotated[int, typer.Option(help="at most this many states per episode")] = 4,
    keep_same_action: Annotated[bool, typer.Option(help="keep pairs where the agent acts the same")] = False,
    prefix: Annotated[str, typer.Option(help="file name prefix: <prefix>clean_inputs.json")] = "",
    trust_pickle: Annotated[bool, TRUST_PICKLE] = False,
) -> None:
    """Write clean/corrupted input pairs (same ids) into AGENT_DIR/activation_inputs/."""
    with needs_extra("agents"), user_errors():
        from reasonlens.agents.agent import Agent
        from reasonlens.agents.inputs import input_file_names, make_input_pairs, write_input_pairs

        input_file_names(prefix)  # a bad prefix stops before any episode is played
        agent = Agent.load(agent_dir, trust_pickle=trust_pickle)
        clean, corrupted = make_input_pairs(agent, corruption, n, seed, states, per_episode, not keep_same_action)
        clean_path, corrupted_path = write_input_pairs(agent, clean, corrupted, prefix)
        typer.echo(f"{len(clean)} {corruption} pairs -> {clean_path}, {corrupted_path}")


@app.command(context_settings=PASS_THROUGH, add_help_option=False)
def extract(ctx: typer.Context) -> None:
    """Activations per layer and input (flags of Neuron_Selection/activation_extraction.py; --help for them)."""
    with needs_extra("agents"):
        raise typer.Exit(main_extract(ctx.args))


@app.command(context_settings=PASS_THROUGH, add_help_option=False)
def patch(ctx: typer.Context) -> None:
    """Neuron patching (flags of Neuron_Selection/activation_patching.py; --help for them)."""
    with needs_extra("agents"):
        raise typer.Exit(main_patch(ctx.args))


@app.command(context_settings=PASS_THROUGH, add_help_option=False)
def neurons(ctx: typer.Context) -> None:
    """Neuron finding: diff | dead | ablate | search (flags of Neuron_Selection/find_neurons.py; --help)."""
    with needs_extra("agents"):
        raise typer.Exit(main_find(ctx.args))
