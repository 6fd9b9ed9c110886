"""How an HRM-family checkpoint reasons over time (HRM paper §4, seed 003 phase 4): trajectories of its
states, forward residuals (convergence), participation ratios (dimensionality) and inference-time
scaling, all from eval-mode rollouts of :class:`~reasonlens.hrm.analysis.adapter.HRMAdapter`.

**Trajectories.** Every call of the reasoning modules is recorded in order through the interp engine's
capture hooks: ``inner.L_level`` (HRM: one call per low-level step; TRM: its single net) and
``inner.H_level`` (HRM: one call per high-level update; the transformer baseline: one per cycle), plus
the logits and halting Q values after every ACT step.

**Forward residual** of a module at call i: ‖z_i − z_{i−1}‖ over the hidden axis, averaged over puzzles
and cell positions (the puzzle-embedding prefix excluded); ``relative`` divides by ‖z_{i−1}‖. The HRM
picture: L's residual falls within each high-level cycle and jumps when H updates and resets its
context; H's falls across cycles.

**Participation ratio** PR = (Σλ)² / Σλ² of the eigenvalues λ of the covariance of a set of state
vectors: the number of dimensions the states effectively use. Rows here are *one cell position's state
at the end of one ACT step of one puzzle* (``z_H@s`` / ``z_L@s``, the carries the next ACT step starts
from), for every ACT step and cell of every puzzle; columns are the hidden units. The paper reports
trained z_H 89.95 vs z_L 30.22 (ratio 2.98) and untrained 40.75 vs 42.09 on Sudoku-Extreme.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from reasonlens.hrm.analysis.adapter import hrm_aliases
from reasonlens.hrm.data.format import IGNORE_LABEL_ID
from reasonlens.hrm.evaluation.rollout import halting_at
from reasonlens.hrm.evaluation.scoring import score_predictions
from reasonlens.hrm.models.hrm_act_v1 import InnerCarry
from reasonlens.hrm.training.checkpoint import build_model, model_arch
from reasonlens.interp import InterpError, SitePatch, capture, intervene

MODULES = ("inner.L_level", "inner.H_level")


@dataclass
class Trajectories:
    """States of N puzzles over one eval rollout of ``steps`` ACT steps."""

    states: dict[str, torch.Tensor]  # module -> (calls, N, positions, hidden), in call order
    logits: torch.Tensor  # (steps, N, cells, vocab) after each ACT step
    q_halt: torch.Tensor  # (steps, N)
    q_continue: torch.Tensor  # (steps, N)
    labels: torch.Tensor  # (N, cells)
    inputs: torch.Tensor  # (N, cells)
    prefix_len: int
    halts: torch.Tensor | None = None  # (steps, N) the model's halting rule fired; None: q_halt > q_continue

    @property
    def steps(self) -> int:
        return self.logits.shape[0]

    def cells(self, module: str) -> torch.Tensor:
        """(calls, N, cells, hidden): the states without the puzzle-embedding prefix."""
        return self.states[module][:, :, self.prefix_len :]

    def wants_halt(self) -> torch.Tensor:
        """(steps, N) bool: the halting rule fires after this ACT step."""
        return self.halts if self.halts is not None else self.q_halt > self.q_continue


# Called after every ACT step of a rollout with (ACT step from 0, the batch's rows in the output, the batch,
# the latent state the step started from, the state it produced). States keep the puzzle-embedding prefix.
Observer = Callable[[int, slice, dict, InnerCarry, InnerCarry], None]


def _modules(model) -> list[str]:
    names = dict(model.named_modules())
    return [m for m in MODULES if m in names]


@torch.no_grad()
def rollout(
    model,
    batches: Iterable[dict[str, torch.Tensor]],
    steps: int,
    patches: Sequence = (),
    modules: Sequence[str] = (),
    observe: Observer | None = None,
) -> Trajectories:
    """The one eval-mode ACT rollout every dynamics analysis runs: each batch from a fresh carry for ``steps``
    ACT steps (eval never halts early), with the engine's ``patches`` applied, the outputs of ``modules``
    recorded at every call and ``observe`` called after every ACT step."""
    parts: dict[str, list] = {key: [] for key in ("logits", "q_halt", "q_continue", "halts", "labels", "inputs")}
    states: dict[str, list] = {m: [] for m in modules}
    done = 0
    for batch in batches:
        rows = slice(done, done + batch["inputs"].shape[0])
        done = rows.stop
        per_step: dict[str, list] = {key: [] for key in ("logits", "q_halt", "q_continue", "halts")}
        with (
            intervene(model, patches),
            capture(model, list(modules), to_cpu=True) as cache,
            halting_at(model, steps),
        ):
            carry = model.initial_carry(batch)
            for step in range(steps):
                before = model.inner.reset_carry(carry.halted, carry.inner_carry)
                carry, outputs = model(carry, batch)
                q_halt, q_continue = outputs["q_halt_logits"], outputs["q_continue_logits"]
                per_step["logits"].append(outputs["logits"].float().cpu())
                per_step["q_halt"].append(q_halt.float().cpu())
                per_step["q_continue"].append(q_continue.float().cpu())
                per_step["halts"].append(model.halt_signal(q_halt, q_continue).cpu())
                if observe is not None:
                    observe(step, rows, batch, before, carry.inner_carry)
        for module in modules:
            calls = sorted(k for site, k in cache if site == module)
            states[module].append(torch.stack([cache[(module, k)].float() for k in calls]))
        for key, values in per_step.items():
            parts[key].append(torch.stack(values))
        parts["labels"].append(batch["labels"].cpu())
        parts["inputs"].append(batch["inputs"].cpu())
    if not done:
        raise InterpError("the rollout got no puzzles")
    return Trajectories(
        states={m: torch.cat(v, dim=1) for m, v in states.items()},
        logits=torch.cat(parts["logits"], dim=1),
        q_halt=torch.cat(parts["q_halt"], dim=1),
        q_continue=torch.cat(parts["q_continue"], dim=1),
        labels=torch.cat(parts["labels"]),
        inputs=torch.cat(parts["inputs"]),
        prefix_len=model.inner.puzzle_emb_len,
        halts=torch.cat(parts["halts"], dim=1),
    )


def collect_trajectories(
    adapter,
    indices: Sequence[int],
    steps: int | None = None,
    chunk_size: int = 64,
    patches: Sequence = (),
    keep_states: bool = True,
    observe: Observer | None = None,
) -> Trajectories:
    """Run ``steps`` ACT steps (default: the model's ``halt_max_steps``) on the puzzles ``indices`` of the
    adapter's split (:func:`rollout`). Without ``keep_states`` only the outputs are kept (``states`` is
    empty): long rollouts of many puzzles then fit in memory (a 9×9 model's states take ~16 MB per puzzle
    over 64 ACT steps)."""
    modules = _modules(adapter.model)
    if not modules:
        raise InterpError(f"{type(adapter.model).__name__} has no reasoning modules ({', '.join(MODULES)})")
    batches = adapter.batches(indices, chunk_size)
    return rollout(adapter.model, batches, steps or adapter.max_steps, patches, modules if keep_states else (), observe)


@torch.no_grad()
def solved_indices(adapter, candidates: Sequence[int], wanted: int, chunk_size: int = 64) -> list[int]:
    """The first ``wanted`` of ``candidates`` that the model solves exactly after its ``max_steps`` ACT steps
    (the paper's "solving trajectories"); fewer when fewer are solved."""
    solved: list[int] = []
    candidates = list(candidates)
    for start in range(0, len(candidates), chunk_size):
        chunk = candidates[start : start + chunk_size]
        batch = adapter.batch(chunk)
        exact = adapter.score(adapter.run(batch), batch)["exact"].bool().cpu()  # (chunk,)
        solved += [index for index, ok in zip(chunk, exact.tolist(), strict=True) if ok]
        if len(solved) >= wanted:
            break
    return solved[:wanted]


# ------------------------------------------------------------------------------------ convergence


def forward_residuals(states: torch.Tensor) -> dict[str, np.ndarray]:
    """``states`` (calls, N, positions, hidden) → per call i ≥ 1 the mean over puzzles and positions of
    ‖z_i − z_{i−1}‖ (``absolute``) and of ‖z_i − z_{i−1}‖ / ‖z_{i−1}‖ (``relative``)."""
    if states.ndim != 4 or states.shape[0] < 2:
        raise InterpError(f"need states of shape (calls ≥ 2, N, positions, hidden), got {tuple(states.shape)}")
    delta = (states[1:] - states[:-1]).norm(dim=-1)  # (calls-1, N, positions)
    previous = states[:-1].norm(dim=-1).clamp_min(1e-12)
    return {
        "absolute": delta.mean(dim=(1, 2)).numpy(),
        "relative": (delta / previous).mean(dim=(1, 2)).numpy(),
    }


def calls_per_step(model, module: str) -> tuple[int, int]:
    """(calls per high-level cycle, calls per ACT step) of ``module`` in eval mode."""
    c = model.config
    names = dict(model.named_modules())
    if module == "inner.H_level" or "inner.H_level" not in names:  # one call per high-level update
        per_cycle = 1 if module == "inner.H_level" else c.L_cycles + 1  # TRM: T latent updates + answer
        return per_cycle, c.H_cycles * per_cycle
    return c.L_cycles, c.H_cycles * c.L_cycles


def call_schedule(model, module: str, calls: int) -> list[dict]:
    """(ACT step, high-level cycle, low-level step) of each call of ``module`` in eval mode."""
    per_cycle, per_step = calls_per_step(model, module)
    return [{"step": i // per_step, "cycle": (i % per_step) // per_cycle, "inner": i % per_cycle} for i in range(calls)]


def convergence(trajectories: Trajectories, model) -> dict:
    """Forward residuals of every reasoning module, with each call's place in the schedule."""
    out = {"steps": trajectories.steps, "modules": {}}
    for module in trajectories.states:
        cells = trajectories.cells(module)
        residuals = forward_residuals(cells)
        schedule = call_schedule(model, module, cells.shape[0])[1:]
        out["modules"][module] = {
            "calls": cells.shape[0],
            "absolute": residuals["absolute"].tolist(),
            "relative": residuals["relative"].tolist(),
            "schedule": schedule,
        }
    return out


# ---------------------------------------------------------------------------------- dimensionality


def participation_ratio(x: torch.Tensor) -> float:
    """PR = (Σλ)² / Σλ² of the covariance of the rows of ``x`` (samples × features)."""
    if x.ndim != 2 or x.shape[0] < 2:
        raise InterpError(f"participation ratio needs a (samples ≥ 2, features) matrix, got {tuple(x.shape)}")
    x = x.double() - x.double().mean(0)
    # the eigenvalues of the covariance are the squared singular values of the centred data / (n - 1)
    eigenvalues = torch.linalg.svdvals(x) ** 2 / (x.shape[0] - 1)
    total = eigenvalues.sum()
    return float(total**2 / (eigenvalues**2).sum()) if total > 0 else 0.0


def step_states(trajectories: Trajectories, model, level: str) -> torch.Tensor:
    """(N, steps, cells, hidden): ``z_H@s`` or ``z_L@s`` — the state each ACT step hands on."""
    alias = hrm_aliases(model).get(f"z_{level}")
    if alias is None:
        raise InterpError(f"{type(model).__name__} has no z_{level} state")
    states = trajectories.cells(alias.module)
    calls = [alias.module_call(s) for s in range(trajectories.steps)]
    return states[calls].transpose(0, 1)


def state_rows(states: torch.Tensor) -> torch.Tensor:
    """(N, steps, cells, hidden) → (N·steps·cells, hidden)."""
    return states.reshape(-1, states.shape[-1])


def bootstrap_ratio(high: torch.Tensor, low: torch.Tensor, samples: int, seed: int = 0) -> tuple[float, float]:
    """95% interval of PR_H / PR_L resampling puzzles (the first axis) with replacement."""
    generator = torch.Generator().manual_seed(seed)
    ratios = []
    for _ in range(samples):
        pick = torch.randint(0, high.shape[0], (high.shape[0],), generator=generator)
        ratios.append(participation_ratio(state_rows(high[pick])) / participation_ratio(state_rows(low[pick])))
    lower, upper = np.percentile(ratios, [2.5, 97.5])
    return float(lower), float(upper)


def dimensionality(trajectories: Trajectories, model, bootstrap: int = 100, curve_points: int = 6) -> dict:
    """PR of z_H and z_L, their ratio with a bootstrap interval, and PR vs number of trajectories."""
    z_h, z_l = step_states(trajectories, model, "H"), step_states(trajectories, model, "L")
    n = z_h.shape[0]
    pr_h, pr_l = participation_ratio(state_rows(z_h)), participation_ratio(state_rows(z_l))
    sizes = sorted({max(2, round(n * f)) for f in np.linspace(1 / curve_points, 1, curve_points)})
    curve = [
        {
            "trajectories": k,
            "PR_H": participation_ratio(state_rows(z_h[:k])),
            "PR_L": participation_ratio(state_rows(z_l[:k])),
        }
        for k in sizes
    ]
    lower, upper = bootstrap_ratio(z_h, z_l, bootstrap) if bootstrap else (None, None)
    return {
        "trajectories": n,
        "rows": int(z_h.shape[0] * z_h.shape[1] * z_h.shape[2]),
        "hidden": int(z_h.shape[-1]),
        "PR_H": pr_h,
        "PR_L": pr_l,
        "ratio": pr_h / pr_l if pr_l > 0 else None,
        "ratio_95": [lower, upper],
        "curve": curve,
    }


@torch.no_grad()
def cycle_view(trajectories: Trajectories, model) -> Trajectories:
    """The same rollout decoded after every high-level cycle instead of every ACT step: the model's LM
    and Q heads applied to z_H after each of its updates (HRM: every ``inner.H_level`` call; TRM: every
    (n+1)-th net call; the baseline: every cycle). The last cycle of an ACT step is that ACT step's answer."""
    if "inner.H_level" in trajectories.states:
        z_h = trajectories.states["inner.H_level"]
    else:  # TRM: n latent updates, then the answer update, per recursion
        n = model.config.L_cycles
        z_h = trajectories.states["inner.L_level"][n :: n + 1]
    inner = model.inner
    weight = inner.lm_head.weight
    logits = inner.lm_head(z_h.to(weight.device, weight.dtype))[:, :, trajectories.prefix_len :].float().cpu()
    q = inner.q_head(z_h[:, :, 0].to(weight.device, weight.dtype)).float().cpu()  # read at prefix position 0
    return Trajectories(
        states=trajectories.states,
        logits=logits,
        q_halt=q[..., 0],
        q_continue=q[..., 1],
        labels=trajectories.labels,
        inputs=trajectories.inputs,
        prefix_len=trajectories.prefix_len,
        halts=model.halt_signal(q[..., 0], q[..., 1]),
    )


# ---------------------------------------------------------------------------------- inference scaling


def halting_steps(wants_halt: torch.Tensor, max_steps: int) -> torch.Tensor:
    """(N,) the ACT step (from 0) at which each puzzle answers when the halting rule may stop it within
    ``max_steps`` ACT steps: the first step the rule fires, else the last one run. ``wants_halt`` (steps, N)."""
    halts = wants_halt[:max_steps].clone()
    halts[max_steps - 1] = True  # the last ACT step run always answers
    return halts.float().argmax(0)  # the first True


def per_step_accuracy(trajectories: Trajectories) -> list[dict]:
    """Token and exact accuracy of the prediction after each ACT step, and when halting by the Q head
    (each puzzle answered at its first ACT step where the model's halting rule fires, else the last run)."""
    scores = score_predictions(trajectories.logits.argmax(-1), trajectories.labels)  # logits (steps, N, cells, V)
    exact, token = scores.exact, scores.accuracy  # (steps, N)
    wants_halt = trajectories.wants_halt()
    rows = []
    for m in range(1, trajectories.steps + 1):
        halt_step = halting_steps(wants_halt, m)
        at_halt = exact[halt_step, torch.arange(exact.shape[1])]
        rows.append(
            {
                "act_steps": m,
                "exact": float(exact[m - 1].float().mean()),
                "token": float(token[m - 1].mean()),
                "exact_with_halting": float(at_halt.float().mean()),
                "mean_steps_with_halting": float((halt_step + 1).float().mean()),
            }
        )
    return rows


def changed_cell_accuracy(trajectories: Trajectories, step: int = -1) -> float:
    """Token accuracy after ACT step ``step`` on the scored cells whose label differs from the input —
    the blanks of a Sudoku, the path of a maze — where token accuracy is dominated by copied cells."""
    labels = trajectories.labels
    changed = (labels != IGNORE_LABEL_ID) & (labels != trajectories.inputs)
    if not changed.any():
        raise InterpError("no scored cell differs from its input; changed-cell accuracy is undefined")
    predictions = trajectories.logits[step].argmax(-1)
    return float(((predictions == labels) & changed).sum() / changed.sum())


# ---------------------------------------------------------------------------- noise and sparsity


def state_noise_patches(model, std: float, seed: int = 0, first_step_only: bool = False) -> list[SitePatch]:
    """Engine patches adding N(0, std²) to the output of every reasoning-module call (every new z_L and
    z_H), from a seeded generator so a measurement repeats exactly; with ``first_step_only``, only to the
    calls of the first ACT step (a perturbed start). The HRM's states have RMS 1 (each update ends in an
    RMS norm), so ``std`` is relative to the state's scale."""
    if std < 0:
        raise InterpError(f"noise std must be >= 0, got {std}")
    generator = torch.Generator().manual_seed(seed)

    def add_noise(output: torch.Tensor, _call: int) -> torch.Tensor:
        noise = torch.randn(output.shape, generator=generator, dtype=torch.float32)
        return output + std * noise.to(output.device, output.dtype)

    modules = _modules(model)
    if not first_step_only:
        return [SitePatch(module, None, add_noise) for module in modules]
    # the hooks count calls over the whole rollout of a batch, so "ACT step 0" is the first calls_per_step
    return [SitePatch(m, tuple(range(calls_per_step(model, m)[1])), add_noise) for m in modules]


def noise_robustness(adapter, indices: Sequence[int], stds: Sequence[float], seed: int = 0) -> list[dict]:
    """Exact and token accuracy after ``halt_max_steps`` ACT steps with state noise of each std."""
    rows = []
    for std in stds:
        patches = state_noise_patches(adapter.model, std, seed) if std > 0 else []
        last = per_step_accuracy(collect_trajectories(adapter, indices, patches=patches))[-1]
        rows.append({"std": float(std), "exact": last["exact"], "token": last["token"]})
    return rows


def hoyer_sparsity(x: torch.Tensor) -> float:
    """Mean Hoyer sparsity of the rows of ``x``: (√n − ‖r‖₁/‖r‖₂) / (√n − 1); 0 when every entry has the
    same magnitude, 1 for a one-hot row (Hoyer 2004). Scale-free, so it compares states of any norm."""
    if x.ndim != 2 or x.shape[1] < 2:
        raise InterpError(f"Hoyer sparsity needs a (rows, features ≥ 2) matrix, got {tuple(x.shape)}")
    x = x.double()
    root_n = x.shape[1] ** 0.5
    ratio = x.abs().sum(1) / x.norm(dim=1).clamp_min(1e-12)
    return float(((root_n - ratio) / (root_n - 1)).mean())


def state_sparsity(trajectories: Trajectories, model, threshold: float = 0.1) -> dict:
    """Per level: Hoyer sparsity of the ``z@s`` state vectors and the fraction of their entries with
    |z| below ``threshold`` × the vector's RMS (the rows of the participation ratio)."""
    out = {}
    for level in ("H", "L"):
        try:
            rows = state_rows(step_states(trajectories, model, level)).double()
        except InterpError:  # the transformer baseline has no z_L
            continue
        rms = rows.pow(2).mean(1, keepdim=True).sqrt().clamp_min(1e-12)
        out[f"hoyer_{level}"] = hoyer_sparsity(rows)
        out[f"near_zero_{level}"] = float((rows.abs() < threshold * rms).double().mean())
    return out


# ---------------------------------------------------------------------------- references


def untrained_twin(model, seed: int = 0):
    """The same architecture, freshly initialised (the paper's "untrained" reference)."""
    torch.manual_seed(seed)
    return build_model(model_arch(model), model.config.model_dump()).to(next(model.parameters()).device).eval()
