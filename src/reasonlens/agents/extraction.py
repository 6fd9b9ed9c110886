"""Activations of every Q-network layer for every input of an input file, in the seed tools' formats.

``extract_activations(agent, "clean_inputs.json")`` runs the inputs through the Q-network in batches
under the engine's :func:`~reasonlens.interp.capture` and writes into the agent's ``activation_logging/``:

- ``clean_activations.npz`` — one array per (input, layer), key ``<input_id>_<layer>``, shape
  ``(1, width)`` (the seed tools' layout);
- ``clean_activations_readable.json`` — ``{input_id: {layer: [[...]]}}``, what the guide's analysis
  snippets read (``np.array(clean[input_id][layer])[0]``).

Layers are every module of the Q-network's Sequential: ``q_net.0`` (Linear, before its ReLU),
``q_net.1`` (after the ReLU), …, and the last Linear (the Q-values). The output names follow the input
name: ``X_inputs.json`` → ``X_activations.npz``; any other ``Y.json`` → ``Y_activations.npz``.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from reasonlens.agents.agent import ACTIVATIONS_DIR, Agent
from reasonlens.agents.errors import AgentError
from reasonlens.agents.inputs import load_inputs, select_ids
from reasonlens.interp import capture
from reasonlens.utils.io import atomic_write, write_json

READABLE_SUFFIX = "_readable.json"


def activation_stem(inputs_path: Path) -> str:
    name = inputs_path.name
    return (
        name.replace("_inputs.json", "_activations")
        if name.endswith("_inputs.json")
        else inputs_path.stem + "_activations"
    )


def capture_layers(agent: Agent, observations: torch.Tensor, chunk_size: int = 4096) -> dict[str, torch.Tensor]:
    """{layer: (inputs, width)} for every layer of the Q-network."""
    layers = list(agent.layers())
    parts: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
    for start in range(0, len(observations), chunk_size):
        batch = observations[start : start + chunk_size].to(agent.device)
        with torch.inference_mode(), capture(agent.q_net, layers, to_cpu=True) as cache:
            agent.q_net(batch)
        for layer in layers:
            parts[layer].append(cache[(layer, 0)].float())
    return {layer: torch.cat(chunks) for layer, chunks in parts.items()}


def extract_activations(
    agent: Agent,
    inputs: str | os.PathLike,
    output: str | os.PathLike | None = None,
    input_ids: list[str] | None = None,
) -> tuple[Path, Path]:
    """Write the ``.npz`` and the readable JSON (see the module docstring); return their paths.
    ``output`` is the ``.npz`` path (default: ``activation_logging/<stem>_activations.npz`` of the agent)."""
    inputs_path = agent.resolve_input(inputs)
    ids, observations, _ = load_inputs(inputs_path, agent.obs_dim)
    chosen = select_ids(ids, input_ids, str(inputs_path))
    rows = [ids.index(i) for i in chosen] if input_ids is not None else list(range(len(ids)))
    values = capture_layers(agent, observations[rows])
    npz_path = (
        Path(output) if output is not None else agent.path / ACTIVATIONS_DIR / f"{activation_stem(inputs_path)}.npz"
    )
    if npz_path.suffix != ".npz":
        raise AgentError(f"the activation output must end in .npz, got {npz_path}")
    arrays = {
        f"{input_id}_{layer}": values[layer][row : row + 1].numpy()
        for row, input_id in enumerate(chosen)
        for layer in values
    }
    readable = {
        input_id: {layer: values[layer][row : row + 1].tolist() for layer in values}
        for row, input_id in enumerate(chosen)
    }
    with atomic_write(npz_path, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    json_path = npz_path.with_name(npz_path.stem + READABLE_SUFFIX)
    write_json(json_path, readable)
    return npz_path, json_path


def load_activations(path: str | os.PathLike, agent: Agent) -> dict[str, dict[str, torch.Tensor]]:
    """{input_id: {layer: (width,) tensor}} from an ``.npz`` or readable ``.json`` written by
    :func:`extract_activations`, checked against the agent's layer names and widths."""
    path = Path(path)
    widths = agent.layers()
    out: dict[str, dict[str, torch.Tensor]] = {}
    if path.suffix == ".npz":
        try:  # entries are read lazily: a truncated archive or an object array fails inside the loop
            with np.load(path) as archive:
                for key in archive.files:
                    layer = next((name for name in widths if key.endswith(f"_{name}")), None)
                    if layer is None:
                        raise AgentError(
                            f"{path}: entry {key!r} names no layer of this agent; keys are <input_id>_<layer> "
                            f"with layers {', '.join(widths)}"
                        )
                    values = archive[key]  # (..., width) numbers; allow_pickle=False refuses objects
                    out.setdefault(key[: -len(layer) - 1], {})[layer] = (
                        torch.as_tensor(values).float().reshape(-1, values.shape[-1])
                    )
        except AgentError:
            raise
        except (OSError, ValueError, EOFError, TypeError, zipfile.BadZipFile, zlib.error) as err:
            raise AgentError(f"{path} is not a readable .npz of activations ({type(err).__name__}: {err})") from None
    elif path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise AgentError(f"{path} is not valid JSON: {err}") from None
        if not isinstance(data, dict):
            raise AgentError(f"{path} must be a JSON object {{input_id: {{layer: [[...]]}}}}")
        for input_id, layers in data.items():
            if not isinstance(layers, dict):
                raise AgentError(f"{path}: input {input_id!r} must map layer names to values")
            for layer, value in layers.items():
                if layer not in widths:
                    raise AgentError(
                        f"{path}: input {input_id!r} has unknown layer {layer!r}; valid: {', '.join(widths)}"
                    )
                out.setdefault(input_id, {})[layer] = torch.tensor(value, dtype=torch.float32).reshape(
                    -1, np.shape(value)[-1]
                )
    else:
        raise AgentError(f"activation file {path} must be .npz or .json (the readable form)")
    if not out:
        raise AgentError(f"{path} holds no activations")
    for input_id, layers in out.items():
        for layer, tensor in layers.items():
            if tensor.shape != (1, widths[layer]):
                raise AgentError(
                    f"{path}: {input_id} / {layer} has shape {tuple(tensor.shape)} but this agent's {layer} has "
                    f"width {widths[layer]} (expected (1, {widths[layer]})); were they made by another agent?"
                )
            layers[layer] = tensor[0]
    return out
