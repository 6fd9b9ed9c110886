"""Neuron patching of a Q-network: the seed guide's :class:`PatchingExperiment`, run batched on the engine.

``run_patching_experiment(target_input_file, source_activation_file, patch_spec)`` runs every target
input twice — unpatched (the baseline) and with the chosen units of the chosen layers replaced by the
source activations *of the input with the same id* — all inputs as rows of one batch
(:func:`reasonlens.interp.run_sweep` with the source values taken from the file). ``patch_spec`` is the
guide's string (``"q_net.0:5,6,7;q_net.2:all"``) or dict (``{"q_net.0": [5, 10, 15], "q_net.2": "all"}``).

Per input the result holds the guide's fields — ``baseline_output``, ``baseline_action``,
``patched_output``, ``patched_action``, ``action_changed`` — plus ``patched_layers``, ``source_action``
(the argmax of the source's Q-values, when the activation file has the last layer) and
``matches_source`` (patched action == source action: the patch carried the decision over).

``op="zero"`` or ``"mean"`` ablates the same units instead (no source file; ``mean`` uses the mean over
the target inputs). Everything is checked before anything runs: unknown layers list the valid ones,
unit indices are checked against the layer width, input ids against both files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from reasonlens.agents.agent import RESULTS_DIR, Agent
from reasonlens.agents.errors import AgentError
from reasonlens.agents.extraction import capture_layers, load_activations
from reasonlens.agents.inputs import load_inputs, select_ids
from reasonlens.interp import ActivationCache, Experiment, InterpError, Intervention, run_sweep
from reasonlens.interp.spec import from_mapping, parse_spec
from reasonlens.utils.io import write_json

OPS = ("patch", "zero", "mean")


class QNetAdapter:
    """The engine's view of a Q-network on a fixed tensor of observations: row i is observation i;
    the metric is the Q-values and the greedy action. Resumable points (:mod:`reasonlens.interp.prefix`):
    the input of each layer of ``q_net``, so a patch of ``q_net.2`` recomputes ``q_net.2`` onwards only."""

    def __init__(self, agent: Agent, observations: torch.Tensor):
        self.agent = agent
        self.model = agent.q_net
        self.aliases = agent.aliases
        self.observations = observations.to(agent.device, torch.float32)

    def batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        return {"obs": self.observations[list(indices)]}

    def run(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(batch["obs"])

    def run_points(self, batch: dict[str, torch.Tensor], at_point) -> torch.Tensor:
        """:meth:`run` with point i (state: ``x``, the input of layer i of ``q_net``) before each layer."""
        layers = self.model.q_net  # QNetwork.forward: q_net(extract_features(obs))
        x = self.model.extract_features(batch["obs"], self.model.features_extractor)
        handles = [  # prepended: a point is before any other hook counts the layer's call
            layer.register_forward_pre_hook(lambda _, args: at_point({"x": args[0]}), prepend=True) for layer in layers
        ]
        try:
            return layers(x)  # the Sequential itself runs, so hooks on it see its call
        finally:
            for handle in handles:
                handle.remove()

    def run_from(self, batch: dict[str, torch.Tensor], point: int, state: dict[str, torch.Tensor]) -> torch.Tensor:
        x = state["x"]
        for layer in list(self.model.q_net)[point:]:
            x = layer(x)
        return x

    def score(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"q_values": outputs.float(), "action": outputs.argmax(-1)}


def parse_patch_spec(agent: Agent, patch_spec: str | dict, op: str = "patch") -> tuple[Intervention, ...]:
    """The guide's string or dict form as interventions on canonical layer names, checked against the agent."""
    if op not in OPS:
        raise AgentError(f"unknown operation {op!r}; allowed: {', '.join(OPS)}")
    try:
        interventions = (
            from_mapping(patch_spec, op=op) if isinstance(patch_spec, dict) else parse_spec(patch_spec, op=op)
        )
    except InterpError as err:
        raise AgentError(f"bad patch spec {patch_spec!r}: {err}") from None
    widths = agent.layers()
    checked = []
    for intervention in interventions:
        if intervention.positions is not None or intervention.calls is not None:
            raise AgentError(f"{intervention}: a Q-network layer runs once per input; write layer:units only")
        layer = agent.check_layer(intervention.site)
        width = widths[layer]
        if intervention.units is not None and intervention.units[-1] >= width:
            raise AgentError(
                f"neuron {intervention.units[-1]} is out of range for {layer}, which has {width} units (0..{width - 1})"
            )
        checked.append(Intervention(site=layer, units=intervention.units, op=op))
    return tuple(checked)


def patch_rows(
    agent: Agent,
    observations: torch.Tensor,
    interventions: Sequence[Intervention],
    source_values: list[dict] | None = None,
    chunk_size: int = 4096,
) -> tuple[list[dict], list[dict]]:
    """Run each observation unpatched and patched (row r patched from ``source_values[r]``, a
    {layer: (width,) tensor}); return (baselines, patched) per row. One batched sweep."""
    adapter = QNetAdapter(agent, observations)
    n = len(observations)
    sources = None
    if source_values is not None:
        sources = {
            n + r: {(layer, 0): value for layer, value in values.items()} for r, values in enumerate(source_values)
        }
    experiments = [
        Experiment(target=r, source=(n + r) if source_values is not None else None, interventions=tuple(interventions))
        for r in range(n)
    ]
    reference = None
    if any(i.op == "mean" for i in interventions):
        values = capture_layers(agent, observations)
        reference = ActivationCache({(i.site, 0): values[i.site] for i in interventions})
    baselines, patched = run_sweep(adapter, experiments, chunk_size=chunk_size, reference=reference, sources=sources)
    return [baselines[r] for r in range(n)], patched


class PatchingExperiment:
    """The seed guide's class: ``PatchingExperiment(agent_path).run_patching_experiment(...)``."""

    def __init__(self, agent_path: str | os.PathLike, device: str = "cpu", trust_pickle: bool = False):
        self.agent = Agent.load(agent_path, device=device, trust_pickle=trust_pickle)
        self.agent_path = self.agent.path
        self.output_dir = self.agent.path / RESULTS_DIR

    def run_patching_experiment(
        self,
        target_input_file: str | os.PathLike,
        source_activation_file: str | os.PathLike | None,
        patch_spec: str | dict,
        input_ids: Sequence[str] | None = None,
        op: str = "patch",
    ) -> dict[str, dict]:
        """{input_id: result} (fields in the module docstring), inputs in file order."""
        agent = self.agent
        interventions = parse_patch_spec(agent, patch_spec, op)
        target_path = agent.resolve_input(target_input_file)
        ids, observations, _ = load_inputs(target_path, agent.obs_dim)
        chosen = select_ids(ids, list(input_ids) if input_ids is not None else None, str(target_path))
        rows = [ids.index(i) for i in chosen]
        source_values, source_actions = None, {}
        if op == "patch":
            if source_activation_file is None:
                raise AgentError("patching needs --source_activations (an .npz or readable .json from extraction)")
            source_path = agent.resolve_activations(source_activation_file)
            activations = load_activations(source_path, agent)
            select_ids(list(activations), chosen, f"the source activations {source_path}")
            needed = [i.site for i in interventions]
            for input_id in chosen:
                missing = [layer for layer in needed if layer not in activations[input_id]]
                if missing:
                    raise AgentError(f"{source_path}: input {input_id!r} has no activations for {', '.join(missing)}")
            source_values = [{layer: activations[i][layer] for layer in needed} for i in chosen]
            last = list(agent.layers())[-1]
            source_actions = {i: int(activations[i][last].argmax()) for i in chosen if last in activations[i]}
        baselines, patched = patch_rows(agent, observations[rows], interventions, source_values)
        layers = [i.site for i in interventions]
        results = {}
        for input_id, base, new in zip(chosen, baselines, patched):
            record = {
                "baseline_output": [base["q_values"]],
                "baseline_action": int(base["action"]),
                "patched_output": [new["q_values"]],
                "patched_action": int(new["action"]),
                "patched_layers": layers,
                "action_changed": int(base["action"]) != int(new["action"]),
            }
            if input_id in source_actions:
                record["source_action"] = source_actions[input_id]
                record["matches_source"] = int(new["action"]) == source_actions[input_id]
            results[input_id] = record
        return results

    def save_results(self, results: dict, output_file: str) -> Path:
        """Write ``results`` to ``patching_results/<output_file>`` (atomically); return the path."""
        path = self.output_dir / output_file
        write_json(path, results)
        return path


def summarize(results: dict, patch_spec: str, **context) -> dict:
    """Counts and rates over a results dict: how many actions changed, how many now match the source."""
    n = len(results)
    changed = sum(r["action_changed"] for r in results.values())
    summary = {
        "patch_spec": patch_spec,
        **context,
        "inputs": n,
        "actions_changed": changed,
        "action_changed_rate": changed / n if n else 0.0,
    }
    matched = [r["matches_source"] for r in results.values() if "matches_source" in r]
    if matched:
        differ = [r for r in results.values() if "source_action" in r and r["source_action"] != r["baseline_action"]]
        summary.update(
            {
                "matches_source": sum(matched),
                "matches_source_rate": sum(matched) / len(matched),
                "inputs_where_source_action_differs": len(differ),
                "restored_rate": (sum(r["matches_source"] for r in differ) / len(differ)) if differ else None,
            }
        )
    return summary
