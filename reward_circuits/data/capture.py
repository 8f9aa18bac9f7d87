"""Build the activation store from rollouts: one teacher-forced forward per batch, nothing more.

Only the requested hook points are captured (``adapter.capture``: TransformerLens hooks that keep
just those activations and stop after the last needed layer; nnsight ``.save()`` of those modules
and ``tracer.stop()``), and only the state positions of each rollout are written, so padding never
reaches the store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import torch
from tqdm.auto import tqdm

from ..models import GenerationConfig, ModelAdapter
from ..models.decoding import generate_capturing
from ..options import options_of
from .rollouts import Rollout, generate_rollouts, rollout_config, rollouts_of, sample_config
from .store import MANIFEST, STORE_DTYPES, ActivationStore, ActivationStoreWriter, StoreError, read_manifest


def state_positions(prompt_len: int, response_len: int, positions: Literal["response", "all"] = "response") -> tuple[int, int, int]:
    """(first position, end position, index of s_0 among the kept states) in the unpadded sequence.

    ``response``: s_0 = the prompt's last token, then one state per response token.
    """
    if prompt_len < 1:
        raise StoreError("a rollout has an empty prompt: s_0 is the prompt's last token, so a prompt is needed.")
    if positions == "response":
        return prompt_len - 1, prompt_len + response_len, 0
    if positions == "all":
        return 0, prompt_len + response_len, prompt_len - 1
    raise StoreError(f"positions must be 'response' or 'all', got {positions!r}.")


@dataclass(kw_only=True)
class CaptureOptions:
    """Settings of :func:`build_store`, passed as its keywords (or one ``options=``): rollouts per
    forward pass, which states to store (``"response"``: s_0..s_T; ``"all"``: every token), the stored
    dtype, extra manifest ``meta``, and a progress bar."""

    batch_size: int = 16
    positions: Literal["response", "all"] = "response"
    dtype: str = "float16"
    meta: dict | None = None
    progress: bool = True


def build_store(
    adapter: ModelAdapter,
    rollouts: Sequence[Rollout],
    hook_names: Sequence[str],
    path: str | os.PathLike,
    **options,
) -> ActivationStore:
    """Capture ``hook_names`` for every rollout (teacher-forced prompt+response) into a store.

    Resumes: rollouts whose ids the store at ``path`` already holds are skipped. Batches are
    length-sorted to keep padding small; each batch becomes one shard. ``options``: the fields of
    :class:`CaptureOptions` (``batch_size=16``, ``positions="response"``, ``dtype="float16"``,
    ``meta=None``, ``progress=True``) as keywords, or ``options=``.
    """
    o = options_of(CaptureOptions, (), options, where="build_store")
    batch_size, positions, meta = o.batch_size, o.positions, o.meta
    hook_names = adapter.validate_hooks(hook_names)
    if not rollouts:
        raise StoreError("no rollouts to store: generate some first.")
    if isinstance(rollouts, (str, bytes)) or not all(isinstance(r, Rollout) for r in rollouts):
        kinds = sorted({type(r).__name__ for r in rollouts})
        raise StoreError(f"build_store takes a list of Rollout objects, got {kinds}: make them with "
                         "generate_rollouts(adapter, task) or load_rollouts(path); for arrays use write_store_from_arrays.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise StoreError(f"batch_size must be a positive int (rollouts per forward pass), got {batch_size!r}.")
    _check_same_build(path, rollouts, meta)
    writer = ActivationStoreWriter(path, hook_names, model=adapter.name, dtype=o.dtype, positions=positions,
                                   meta={**(meta or {}), "backend": adapter.backend})
    todo = [r for r in rollouts if not writer.has(r.id)]
    # stable length sort: similar lengths share a batch; shard order stays deterministic
    todo.sort(key=lambda r: len(r.prompt_ids) + len(r.response_ids))
    bar = tqdm(range(0, len(todo), batch_size), desc="store", disable=not o.progress, leave=False)
    for start in bar:
        chunk = todo[start : start + batch_size]
        seqs = [list(r.prompt_ids) + list(r.response_ids) for r in chunk]
        batch = adapter.pad(seqs, "left")
        acts = adapter.capture(batch, hook_names)
        width = batch.input_ids.shape[1]
        _write(writer, chunk, [{h: acts[h][i, width - len(seqs[i]):] for h in hook_names} for i in range(len(chunk))],
               hook_names, positions)
    return writer.close()


def _write(writer: ActivationStoreWriter, chunk: Sequence[Rollout], acts: Sequence[dict[str, torch.Tensor]],
           hook_names: Sequence[str], positions: Literal["response", "all"], from_s0: bool = False) -> None:
    """Write ``chunk``'s state positions; ``acts[i][h]``: rollout ``i``'s unpadded states at ``h``
    (prompt + response positions, maybe more after them; ``from_s0``: from s_0, the prompt's last
    position, on)."""
    per_hook: dict[str, list[torch.Tensor]] = {h: [] for h in hook_names}
    s0 = []
    for r, act in zip(chunk, acts):
        a, b, s0_idx = state_positions(len(r.prompt_ids), len(r.response_ids), positions)
        if from_s0:
            a, b = 0, b - a
        for h in hook_names:
            per_hook[h].append(act[h][a:b].float().cpu())
        s0.append(s0_idx)
    writer.write(
        [r.id for r in chunk], [r.reward for r in chunk], per_hook, s0,
        metas=[{"task": r.task, "prompt_len": len(r.prompt_ids), "response_len": len(r.response_ids)} for r in chunk],
    )


def generate_rollouts_and_store(adapter: ModelAdapter, task, hook_names: Sequence[str], path: str | os.PathLike,
                                config: GenerationConfig | None = None, *, samples_per_prompt: int = 1,
                                while_generating: bool = True, **options) -> tuple[list[Rollout], ActivationStore]:
    """Rollouts of ``task`` and their activation store at ``path`` in one go.

    ``while_generating=True``: the states are taken from the generation's own forwards (prompt
    prefill + each decoding step, :func:`~reward_circuits.models.decoding.generate_capturing`), not
    from a second teacher-forced forward over every rollout; equal to :func:`build_store`'s within
    float tolerance (tested). Generation runs as :func:`generate_rollouts` runs it (greedy on a
    backend that joins rows: one running batch of ``config.batch_size`` rows, refilled as rows
    finish; else one batch at a time, sampled draws alike), so the tokens are its tokens up to float
    reduction order. Only the stored positions are kept while generating, already in the store's
    dtype (one copy of the store in memory at most), and the store is written in :func:`build_store`'s
    order and shards (length-sorted, ``batch_size`` rollouts a shard): the same rollout indices.
    ``False``: :func:`generate_rollouts` then :func:`build_store` (the path before).
    ``options``: :class:`CaptureOptions` (its ``batch_size`` is the store's shard size here).
    """
    if not while_generating:
        rollouts = generate_rollouts(adapter, task, config, samples_per_prompt=samples_per_prompt)
        return rollouts, build_store(adapter, rollouts, hook_names, path, **options)
    o = options_of(CaptureOptions, (), options, where="generate_rollouts_and_store")
    hook_names = adapter.validate_hooks(hook_names)
    if not isinstance(o.batch_size, int) or o.batch_size < 1:
        raise StoreError(f"batch_size must be a positive int (rollouts per shard), got {o.batch_size!r}.")
    if o.dtype not in STORE_DTYPES:
        raise StoreError(f"dtype {o.dtype!r} not supported; use one of {sorted(STORE_DTYPES)}.")
    config = rollout_config(task, config, samples_per_prompt)
    examples = list(task.examples)
    prompts = [task.render(ex, adapter.tokenizer) for ex in examples]
    prompt_states = "all" if o.positions == "all" else "last"
    rollouts, states = [], []
    for s in range(samples_per_prompt):
        gens, acts = generate_capturing(adapter, prompts, sample_config(config, s), hook_names,
                                        prompt_states=prompt_states, dtype=STORE_DTYPES[o.dtype])
        rollouts += rollouts_of(task, examples, gens, s)
        states += acts
    _check_same_build(path, rollouts, o.meta)
    writer = ActivationStoreWriter(path, hook_names, model=adapter.name, dtype=o.dtype, positions=o.positions,
                                   meta={**(o.meta or {}), "backend": adapter.backend})
    todo = [i for i, r in enumerate(rollouts) if not writer.has(r.id)]
    todo.sort(key=lambda i: len(rollouts[i].prompt_ids) + len(rollouts[i].response_ids))  # as build_store cuts shards
    for start in range(0, len(todo), o.batch_size):
        part = todo[start:start + o.batch_size]
        _write(writer, [rollouts[i] for i in part], [states[i] for i in part], hook_names, o.positions,
               from_s0=prompt_states == "last")
        for i in part:
            states[i] = None  # written: freed
    return rollouts, writer.close()


def _check_same_build(path: str | os.PathLike, rollouts: Sequence[Rollout], meta: dict | None) -> None:
    """Refuse to extend a store of another task: resuming adds only rollouts of the tasks it holds.

    (The writer itself refuses another model, other hook points, positions or dtype.) Without this a
    second ``build_store`` into the same folder with another task's rollouts appended them silently,
    giving one store of two tasks.
    """
    if not (Path(path) / MANIFEST).exists():
        return
    manifest = read_manifest(path)
    held = {rec.get("meta", {}).get("task") for rec in manifest["rollouts"]} - {None}
    new = {r.task for r in rollouts}
    theirs, ours = manifest.get("meta", {}).get("task"), (meta or {}).get("task")
    if (held and not new <= held) or (theirs is not None and ours is not None and theirs != ours):
        raise StoreError(
            f"{path} already holds a store of task(s) {sorted(held) or [theirs]} (model {manifest.get('model')!r}), "
            f"and these rollouts are of {sorted(new)}{f' (task {ours!r})' if ours else ''}: a store holds one build. "
            f"Build each task's store in its own folder (e.g. {Path(path).parent / 'store_<task>'}), or delete "
            f"{path} to rebuild it; re-running the same build into it resumes where it stopped.")
