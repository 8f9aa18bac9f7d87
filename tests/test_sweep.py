"""Sweeps: K conditions × N examples in one generation, on the tiny random Llama, both backends.

Checked: greedy tokens identical to one pass per condition (left padding, conditions on
different layers and sites, shared and own prompt rows, chunking); a row-scoped hook never touches
other rows; rows that leave the batch early produce the tokens they produce when they stay; the
studies give the numbers of one pass per condition.
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from reward_circuits.neurons import NeuronSet
from reward_circuits.analysis.causal import ablation_study, dose_response, steering_study
from reward_circuits.interventions import (Condition, RowScopedHooks, SweepConfig, add_direction, generate_and_score,
                                           mean_ablate, per_condition_passes, rows_only, scale, sweep, touches_prompt,
                                           zero_ablate)
from reward_circuits.models import GenerationConfig, GenerationPlan, RowLabels
from reward_circuits.tasks import Example, Task

pytestmark = pytest.mark.usefixtures("one_thread")

BACKENDS = ["transformer_lens", "nnsight"]
RESID0, RESID1, MLP0, MLP1 = ("blocks.0.hook_resid_post", "blocks.1.hook_resid_post", "blocks.0.mlp.hook_post",
                              "blocks.1.mlp.hook_post")
# different lengths: left padding in every batch
PROMPTS = ["hello world", "hi", "abc def ghi jkl", "x = 3 + 4 ?", "The quick brown fox", "no"]


def _conditions(d_model: int, d_mlp: int) -> dict[str, list]:
    """Conditions on different layers and sites; some leave the prompt alone (shared prefill)."""
    g = torch.Generator().manual_seed(0)
    direction = torch.randn(d_model, generator=g)
    return {
        "baseline": [],
        "zero_l0": [(RESID0, zero_ablate([1, 2, 3, 7]))],
        "scale_mlp1": [(MLP1, scale([0, 5, 9, 11], 3.0))],
        "mean_mlp0": [(MLP0, mean_ablate([2, 4], torch.linspace(-1, 1, d_mlp)))],
        "two_layers": [(RESID0, scale([4, 5], 0.0)), (RESID1, add_direction(direction, 2.0))],
        "same_site_twice": [(RESID1, scale([1, 2], 2.0)), (RESID1, zero_ablate([2, 3]))],
        "generated_only": [(RESID0, zero_ablate(list(range(0, d_model, 3)), positions="generated"))],
        "generated_mlp1": [(MLP1, scale(list(range(10)), 4.0, positions="generated"))],
    }


def _tokens(result) -> dict[str, list[list[int]]]:
    return {c.name: [g.response_ids for g in c.generations] for c in result}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("max_rows", [None, 5])
@pytest.mark.parametrize("refill", [True, False])
def test_sweep_is_token_identical_to_one_pass_per_condition(tiny_adapters, backend, max_rows, refill):
    adapter = tiny_adapters[backend]
    conds = _conditions(adapter.d_model, adapter.d_mlp)
    cfg = GenerationConfig(max_new_tokens=10, batch_size=4, progress=False)
    swept = sweep(adapter, PROMPTS, conds, cfg, sweep_config=SweepConfig(max_rows=max_rows, refill=refill))
    # rows of later examples join the running batch on the backend that can add rows (TL)
    assert swept.refilled == (refill and backend == "transformer_lens")
    reference = sweep(adapter, PROMPTS, conds, cfg, sweep_config=SweepConfig(strategy="per_condition"))
    assert swept.strategy == "batched" and reference.strategy == "per_condition"
    assert _tokens(swept) == _tokens(reference)
    # the interventions do change the generations (else the check above proves nothing)
    toks = _tokens(reference)
    assert sum(toks[k] != toks["baseline"] for k in conds if k != "baseline") >= 5
    # baseline and generated-only conditions reuse one prompt row per example; the rest encode their own
    shared = {c.name for c in swept if not c.touched_prompt}
    assert shared == {"baseline", "generated_only", "generated_mlp1"}
    if max_rows is None:
        assert swept.n_passes == 1
        assert swept.n_prefill_rows == len(PROMPTS) * (1 + len(conds) - 3)
    else:
        assert swept.n_passes > 1


def test_both_backends_sweep_to_the_same_tokens(tiny_adapters):
    outs = []
    for backend in BACKENDS:
        adapter = tiny_adapters[backend]
        conds = _conditions(adapter.d_model, adapter.d_mlp)
        outs.append(_tokens(sweep(adapter, PROMPTS, conds, GenerationConfig(max_new_tokens=8, progress=False))))
    assert outs[0] == outs[1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_row_scoped_hook_never_touches_other_rows(tiny_adapters, backend):
    adapter = tiny_adapters[backend]
    batch = adapter.tokenize(PROMPTS)
    sites = [RESID0, MLP1, RESID1]
    plain = adapter.capture(batch, sites)
    labels = RowLabels([0, 1, -1, 1, 0, 2])
    hooks = [(RESID0, RowScopedHooks(labels, [(1, zero_ablate(None))])),
             (MLP1, RowScopedHooks(labels, [(0, scale(None, 5.0)), (2, scale([3], -1.0))]))]
    edited = adapter.capture(batch, sites, fwd_hooks=hooks)
    untouched = [2]  # label -1: no condition
    for site in sites:
        assert torch.equal(edited[site][untouched], plain[site][untouched]), site
    # label 1's rows are zeroed at RESID0 (everything downstream changes for them only)
    assert torch.count_nonzero(edited[RESID0][[1, 3]]) == 0
    assert torch.equal(edited[RESID0][[0, 2, 4, 5]], plain[RESID0][[0, 2, 4, 5]])
    # at MLP1, rows 0/4 scaled ×5 and row 5's dim 3 negated, nothing else at that site for them
    assert torch.allclose(edited[MLP1][[0, 4]], 5.0 * plain[MLP1][[0, 4]])
    expect5 = plain[MLP1][5].clone()
    expect5[:, 3] = -expect5[:, 3]
    assert torch.equal(edited[MLP1][5], expect5)
    # rows_only: the same with fixed rows, and the incoming activation is never edited in place
    seen = {}

    def keep(act, hook):
        seen["act"] = act

    out = adapter.capture(batch, [RESID0], fwd_hooks=[(RESID0, keep), (RESID0, rows_only(zero_ablate(None), [4]))])
    assert torch.count_nonzero(out[RESID0][4]) == 0
    assert torch.equal(out[RESID0][[0, 1, 2, 3, 5]], plain[RESID0][[0, 1, 2, 3, 5]])
    assert torch.equal(seen["act"], plain[RESID0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_rows_are_labelled_as_they_leave(tiny_adapters, backend):
    """During a sweep each condition's hook sees exactly its own rows (also after rows left)."""
    adapter = tiny_adapters[backend]
    seen: list[tuple[str, int, int]] = []

    def probe(name):
        def fn(act, hook):
            seen.append((name, act.shape[0], act.shape[1]))
        return fn

    cfg = GenerationConfig(max_new_tokens=6, progress=False, stop_strings=("e", "o", " "))
    conds = {"a": [(RESID0, probe("a"))], "b": [(RESID0, probe("b")), (RESID1, probe("b1"))]}
    result = sweep(adapter, PROMPTS, conds, cfg)
    prefill_a = [s for s in seen if s[0] == "a" and s[2] > 1]
    assert prefill_a == [("a", len(PROMPTS), prefill_a[0][2])]
    # every decoding step: as many rows as that condition still has running
    steps_a = [s[1] for s in seen if s[0] == "a" and s[2] == 1]
    lengths = sorted((len(g.response_ids) for g in result["a"].generations), reverse=True)
    assert steps_a == [sum(n > k for n in lengths) for k in range(1, lengths[0])]


def _eos_adapter(backend: str):
    """A fresh tiny model whose EOS is a character it generates often (rows end at various steps)."""
    from reward_circuits.models import from_hf
    from reward_circuits.models.tiny import tiny_hf_model

    hf, tok = tiny_hf_model(seed=0)
    adapter = from_hf(hf, tok, backend, name="tiny-eos")
    gens = adapter.generate(PROMPTS, GenerationConfig(max_new_tokens=12, progress=False))
    counts = Counter(t for g in gens for t in g.response_ids[1:8])
    frequent = tok.convert_ids_to_tokens(counts.most_common(1)[0][0])
    tok.eos_token = frequent
    hf.generation_config.eos_token_id = tok.eos_token_id
    return from_hf(hf, tok, backend, name="tiny-eos")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("how", ["eos", "stop_string"])
def test_rows_that_leave_early_give_the_tokens_they_give_when_they_stay(tiny_adapters, backend, how):
    if how == "eos":
        adapter, extra = _eos_adapter(backend), {}
    else:
        adapter = tiny_adapters[backend]
    prompts = PROMPTS * 2
    hooks = [(RESID1, scale([1, 2, 3], 2.0))]
    if how == "stop_string":  # the character the model writes most often, past the first token
        plain = adapter.generate(prompts, GenerationConfig(max_new_tokens=16, progress=False), fwd_hooks=hooks)
        extra = {"stop_strings": (Counter("".join(g.text[1:10] for g in plain)).most_common(1)[0][0],)}
    out = {}
    for drop in (True, False):
        cfg = GenerationConfig(max_new_tokens=16, progress=False, drop_finished=drop, **extra)
        out[drop] = adapter.generate(prompts, cfg, fwd_hooks=hooks)
    assert [g.response_ids for g in out[True]] == [g.response_ids for g in out[False]]
    assert [g.text for g in out[True]] == [g.text for g in out[False]]
    lengths = [len(g.response_ids) for g in out[True]]
    reasons = {g.finish_reason for g in out[True]}
    assert min(lengths) < 16 and len(set(lengths)) >= 3, lengths  # rows did leave, at different steps
    assert ("eos" if how == "eos" else "stop_string") in reasons


@pytest.mark.parametrize("backend", BACKENDS)
def test_sampling_draws_do_not_depend_on_which_rows_left(tiny_adapters, backend):
    adapter = tiny_adapters[backend]
    out = {}
    for drop in (True, False):
        cfg = GenerationConfig(max_new_tokens=12, do_sample=True, seed=3, progress=False, drop_finished=drop,
                               stop_strings=("e", "a"))
        out[drop] = [g.response_ids for g in adapter.generate(PROMPTS, cfg)]
    assert out[True] == out[False]
    assert len({len(r) for r in out[True]}) > 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_shared_prompt_row_continues_like_its_own(tiny_adapters, backend):
    """GenerationPlan: decoding rows that copy one prefill row's cache generate what separate rows do."""
    adapter = tiny_adapters[backend]
    cfg = GenerationConfig(max_new_tokens=8, progress=False)
    batch = adapter.pad([adapter.tokenizer(p, add_special_tokens=False)["input_ids"] for p in PROMPTS[:3]])
    shared = adapter.generate_plan(GenerationPlan(batch, source=torch.tensor([2, 0, 0, 1, 2])), cfg)
    own = adapter.generate(PROMPTS[:3], cfg)
    assert [g.response_ids for g in shared] == [own[i].response_ids for i in (2, 0, 0, 1, 2)]
    assert [g.prompt_ids for g in shared] == [own[i].prompt_ids for i in (2, 0, 0, 1, 2)]


def test_touches_prompt_says_which_conditions_share_the_prompt():
    assert not touches_prompt([])
    assert not touches_prompt([(RESID0, zero_ablate([1], positions="generated"))])
    assert touches_prompt([(RESID0, zero_ablate([1]))])  # positions="all"
    assert touches_prompt([(RESID0, zero_ablate([1], positions="prompt"))])
    assert touches_prompt([(RESID0, zero_ablate([1], positions="generated", prompt_len=3))])
    assert touches_prompt([(RESID0, lambda act, hook: act)])  # unknown function: assume it does

    def declared(act, hook):
        return act

    declared.touches_prompt = False
    assert not touches_prompt([(RESID0, declared)])
    assert Condition("c", [(RESID0, zero_ablate([1]))], touches_prompt=False).touches_prompt is False


def test_bad_inputs_name_the_fix(tl_adapter):
    with pytest.raises(ValueError, match="unique"):
        sweep(tl_adapter, PROMPTS, [Condition("a"), Condition("a")])
    with pytest.raises(ValueError, match="at least one"):
        sweep(tl_adapter, PROMPTS, {})
    with pytest.raises(ValueError, match="max_rows"):
        SweepConfig(max_rows=0)
    with pytest.raises(ValueError, match="strategy"):
        SweepConfig(strategy="fast")
    with pytest.raises(Exception, match="unknown hook"):
        sweep(tl_adapter, PROMPTS, {"x": [("blocks.9.hook_resid_post", zero_ablate([1]))]})


def _task(n: int = 8) -> Task:
    examples = [Example(f"t{i}", f"Say {i} {'x' * (i % 4)}", "0") for i in range(n)]
    return Task("tiny", examples, lambda resp, ex: float(len(resp) % 2 == 0), max_new_tokens=8)


@pytest.mark.parametrize("backend", BACKENDS)
def test_studies_through_sweep_match_one_pass_per_condition(tiny_adapters, backend):
    adapter = tiny_adapters[backend]
    task = _task()
    d = adapter.d_model
    sets = {0: NeuronSet(RESID0, [1, 2, 3], d, kind="value", layer=0),
            1: NeuronSet(RESID1, [4, 5, 6, 7], d, kind="value", layer=1)}
    cfg = GenerationConfig(max_new_tokens=8, batch_size=3, progress=False)
    scores = torch.linspace(1, 0, d)

    def run():
        base = generate_and_score(adapter, task, None, (), cfg)
        return (base.accuracy, base.rewards,
                ablation_study(adapter, task, None, sets, 2, 0, "zero", None, cfg, base),
                dose_response(adapter, task, None, scores, RESID1, (0.05, 0.2), ("zero", "mean"), 1, 0, None, cfg),
                steering_study(adapter, task, None, sets[1], (0.0, 1.0, 3.0), None, None, cfg, base))

    swept = run()
    with per_condition_passes():
        reference = run()
    assert swept == reference or _same(swept, reference)


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_sweep_over_a_task_scores_and_renders_a_section(tl_adapter):
    task = _task(5)
    conds = {"baseline": [], "zero": [(RESID1, zero_ablate(None))]}
    result = sweep(tl_adapter, task, conds, GenerationConfig(max_new_tokens=8, progress=False))
    for c in result:
        assert len(c.rewards) == 5 and c.accuracy == pytest.approx(sum(c.rewards) / 5)
        run = c.scored_run()
        assert run.generations == c.generations
    assert result.n_rows == 10 and result.n_prefill_rows == 10 and result.n_new_tokens > 0
    section = result.section()
    assert section.key == "sweep" and section.tables[0].rows[0][0] == "baseline"
    with pytest.raises(ValueError, match="rewards"):
        sweep(tl_adapter, ["hi"], {"b": []}, GenerationConfig(max_new_tokens=2, progress=False))["b"].scored_run()


@pytest.mark.parametrize("backend", BACKENDS)
def test_prompt_rows_start_at_the_first_hooked_block(tiny_adapters, backend):
    """TransformerLens reuses the shared prompt's forward below a condition's first hooked block
    (blocks 1.. only for a blocks.1 hook); same tokens as recomputing the whole prompt."""
    adapter = tiny_adapters[backend]
    conds = _conditions(adapter.d_model, adapter.d_mlp)
    cfg = GenerationConfig(max_new_tokens=8, progress=False)
    reused = sweep(adapter, PROMPTS, conds, cfg)
    whole = sweep(adapter, PROMPTS, conds, cfg, sweep_config=SweepConfig(share_prompt=False))
    assert _tokens(reused) == _tokens(whole)
    n, L = len(PROMPTS), adapter.n_layers
    assert whole.prefill_row_layers == n * len(conds) * L and whole.n_prefill_rows == n * len(conds)
    if backend == "transformer_lens":
        assert reused["scale_mlp1"].prompt_from_layer == 1 and reused["two_layers"].prompt_from_layer == 0
        # shared rows + 5 own-prompt conditions, two of which (scale_mlp1, same_site_twice) start at block 1
        assert reused.prefill_row_layers == n * (L + 5 * L - 2)
    else:
        assert all(c.prompt_from_layer == 0 for c in reused)


def test_generation_plan_checks_its_rows(tl_adapter):
    batch = tl_adapter.pad([[5, 6, 7], [8, 9]])
    with pytest.raises(ValueError, match="index"):
        GenerationPlan(batch, source=torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="same prompt"):
        GenerationPlan(batch, prefill_start=torch.tensor([0, 1]), prefill_base=torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match="together"):
        GenerationPlan(batch, prefill_start=torch.tensor([0, 0]))


def test_studies_on_one_shared_sweep_equal_their_own_sweeps(tl_adapter):
    """The main job runs every study's conditions in one sweep (prefixed names) and hands each study
    its view: the numbers equal each study sweeping on its own, and a view missing conditions is
    refused with a message naming them."""
    from reward_circuits.analysis.causal import ablation_conditions, dose_conditions, steering_conditions

    adapter, task = tl_adapter, _task()
    d = adapter.d_model
    sets = {0: NeuronSet(RESID0, [1, 2, 3], d, kind="value", layer=0),
            1: NeuronSet(RESID1, [4, 5, 6, 7], d, kind="value", layer=1)}
    cfg = GenerationConfig(max_new_tokens=8, batch_size=3, progress=False)
    scores = torch.linspace(1, 0, d)
    mags = torch.linspace(0.1, 1.0, d).numpy()
    mags[0] = 50.0  # a massive dim ranked first: the matched draws must hold one like it
    conds = {"baseline": []}
    ab, _ = ablation_conditions(sets, 2, 0)
    conds |= {f"ab/{k}": v for k, v in ab.items()}
    conds |= {f"dose/{k}": v for k, v in dose_conditions(scores, RESID1, (0.05, 0.2), ("zero",), 2, 0, magnitudes=mags).items()}
    conds |= {f"steer/{k}": v for k, v in steering_conditions(sets[1], (0.0, 3.0)).items()}
    shared = sweep(adapter, task, conds, cfg)
    base = shared["baseline"].scored_run()

    alone = (ablation_study(adapter, task, None, sets, 2, 0, "zero", None, cfg, base),
             dose_response(adapter, task, None, scores, RESID1, (0.05, 0.2), ("zero",), 2, 0, None, cfg, base,
                           magnitudes=mags),
             steering_study(adapter, task, None, sets[1], (0.0, 3.0), None, None, cfg, base))
    together = (ablation_study(adapter, task, None, sets, 2, 0, "zero", None, cfg, base, swept=shared.subset("ab/")),
                dose_response(adapter, task, None, scores, RESID1, (0.05, 0.2), ("zero",), 2, 0, None, cfg, base,
                              magnitudes=mags, swept=shared.subset("dose/")),
                steering_study(adapter, task, None, sets[1], (0.0, 3.0), None, None, cfg, base, swept=shared.subset("steer/")))
    assert _same(alone, together)
    assert "matched_acc_mean" in together[1]["curves"]["zero"] and together[1]["controls"] == ["random", "matched"]
    # the top set holds dim 0 (massive): every matched draw holds a dim of its stratum - dim 0 itself,
    # the only one - while the uniform draws exclude the value dims
    matched = [c for name, c in dose_conditions(scores, RESID1, (0.05,), ("zero",), 2, 0, magnitudes=mags).items()
               if "/matched/" in name]
    assert matched and all(0 in c[0].hook_fn.indices.tolist() for c in matched)
    with pytest.raises(ValueError, match="lacks the dose conditions"):
        dose_response(adapter, task, None, scores, RESID1, (0.05, 0.2), ("zero",), 2, 0, None, cfg, base,
                      magnitudes=mags, swept=shared.subset("steer/"))


def test_rows_that_join_a_running_batch_generate_what_they_generate_alone(tiny_adapters, monkeypatch):
    """Continuous batching (``decode_stream``): plans join as rows leave; every row's greedy tokens
    equal those of its plan decoded on its own, with row-scoped hooks of different sites and a
    generated-only scope (the joining prompts' prefill is not mistaken for a decoding step)."""
    adapter = tiny_adapters["transformer_lens"]
    assert adapter.joins_rows
    # frequent tokens as extra EOS: rows finish at different steps, so plans join mid-batch
    cfg = GenerationConfig(max_new_tokens=12, progress=False)
    plain = adapter.generate(PROMPTS * 2, cfg)
    counts = Counter(t for g in plain for t in g.response_ids[1:])
    monkeypatch.setattr(adapter, "_gen_eos", [t for t, _ in counts.most_common(2)], raising=False)
    conds = [Condition("base", []), Condition("zero", [(RESID0, zero_ablate([1, 2, 3]))]),
             Condition("gen", [(MLP1, scale(list(range(8)), 3.0, positions="generated"))])]
    labels = RowLabels()
    from reward_circuits.interventions.sweep import _row_scoped_hooks

    hooks = _row_scoped_hooks(conds, labels)
    plans = []
    for i, p in enumerate(PROMPTS * 2):
        ids = adapter.tokenizer(p, add_special_tokens=False)["input_ids"]
        # one shared prompt row (label -1) for "base" and "gen", an own row for "zero"
        plans.append(GenerationPlan(adapter.pad([ids, ids], "left"), torch.tensor([0, 1, 0]), torch.tensor([-1, 1]),
                                    torch.tensor([0, 1, 2])))
    joins = []
    real_session = adapter.decoding_session

    def spy_session(fwd_hooks):
        ctx = real_session(fwd_hooks)

        class Wrap:
            def __enter__(self):
                s = ctx.__enter__()
                add = s.add_rows

                def add_rows(batch, source, **kw):
                    joins.append(int(s.cache.previous_attention_mask.shape[0]))  # rows running when they join
                    return add(batch, source, **kw)

                s.add_rows = add_rows
                return s

            def __exit__(self, *a):
                return ctx.__exit__(*a)

        return Wrap()

    monkeypatch.setattr(adapter, "decoding_session", spy_session)
    streamed = adapter.decode_stream(plans, cfg, hooks, max_rows=7, row_labels=labels)
    monkeypatch.undo()
    monkeypatch.setattr(adapter, "_gen_eos", [t for t, _ in counts.most_common(2)], raising=False)
    alone = [adapter.decode(plan, cfg, hooks, seed=0, row_labels=labels) for plan in plans]
    assert streamed == alone
    assert len(joins) >= 5 and max(joins) > 0  # plans did join while other rows were running
    lengths = [len(r) for rows in alone for r in rows]
    assert min(lengths) < cfg.max_new_tokens and max(lengths) > min(lengths)  # rows did leave at different steps
    # and the hooks did something: the zero-ablated rows differ from the baseline rows somewhere
    assert any(rows[0] != rows[1] for rows in alone)


def test_decode_stream_refuses_sampling_and_backends_that_cannot_join(tiny_adapters):
    tl, nn = tiny_adapters["transformer_lens"], tiny_adapters["nnsight"]
    plan = GenerationPlan(tl.pad([[5, 6, 7]]))
    with pytest.raises(ValueError, match="greedy only"):
        tl.decode_stream([plan], GenerationConfig(do_sample=True, progress=False), [], max_rows=4)
    with pytest.raises(NotImplementedError, match="cannot add rows"):
        nn.decode_stream([plan], GenerationConfig(progress=False), [], max_rows=4)


@pytest.mark.parametrize("max_rows", [None, 7])
def test_a_prompt_prefix_every_example_shares_is_encoded_once_per_condition(tiny_adapters, max_rows):
    """Prompts that start alike (a chat template's system prompt): the prefix is encoded once per
    condition and every row continues it; greedy tokens equal one pass per condition, with hooks
    on every position (their prefix rows run under them) and on generated positions only."""
    adapter = tiny_adapters["transformer_lens"]
    prompts = ["System: you are a careful calculator. User: " + p for p in PROMPTS]
    conds = _conditions(adapter.d_model, adapter.d_mlp)
    cfg = GenerationConfig(max_new_tokens=10, progress=False)
    swept = sweep(adapter, prompts, conds, cfg, sweep_config=SweepConfig(max_rows=max_rows))
    ids = [adapter.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    common = next(i for i in range(min(map(len, ids))) if len({s[i] for s in ids}) > 1)
    assert swept.refilled and 2 <= swept.shared_prefix_tokens <= common
    reference = sweep(adapter, prompts, conds, cfg, sweep_config=SweepConfig(strategy="per_condition"))
    assert _tokens(swept) == _tokens(reference)
    toks = _tokens(reference)
    assert sum(toks[k] != toks["baseline"] for k in conds if k != "baseline") >= 5
    # without the prefix: the same tokens
    plain = sweep(adapter, prompts, conds, cfg, sweep_config=SweepConfig(max_rows=max_rows, share_prefix=False))
    assert plain.shared_prefix_tokens == 0 and _tokens(plain) == _tokens(reference)


def test_prefix_is_not_shared_when_a_hook_treats_positions_differently(tiny_adapters):
    adapter = tiny_adapters["transformer_lens"]
    prompts = ["System: you are a careful calculator. User: " + p for p in PROMPTS]
    last_only = {"baseline": [], "last": [(RESID0, zero_ablate([1, 2], positions=[-1]))]}
    foreign = {"baseline": [], "mine": [(RESID0, lambda act, hook: act * 1.5)]}
    for conds in (last_only, foreign):
        swept = sweep(adapter, prompts, conds, GenerationConfig(max_new_tokens=6, progress=False))
        assert swept.shared_prefix_tokens == 0
        with per_condition_passes():
            reference = sweep(adapter, prompts, conds, GenerationConfig(max_new_tokens=6, progress=False))
        assert _tokens(swept) == _tokens(reference)


def test_plain_greedy_generate_streams_with_a_shared_prefix_and_matches_one_batch_at_a_time(tiny_adapters):
    adapter = tiny_adapters["transformer_lens"]
    prompts = ["System: you are a careful calculator. User: " + p for p in PROMPTS * 3]
    streamed = adapter.generate(prompts, GenerationConfig(max_new_tokens=10, batch_size=5, progress=False))
    batched = adapter.generate(prompts, GenerationConfig(max_new_tokens=10, batch_size=5, progress=False, refill=False))
    assert [g.response_ids for g in streamed] == [g.response_ids for g in batched]
    assert [g.prompt_ids for g in streamed] == [g.prompt_ids for g in batched]
    assert [g.text for g in streamed] == [g.text for g in batched]


def test_sampled_sweeps_pair_the_conditions_of_an_example(tiny_adapters):
    """Sampling with common random numbers: conditions without an effect draw the same tokens as
    the baseline on every example; a real intervention changes some; reruns are reproducible;
    the draws of an example do not depend on the other conditions or on the chunking."""
    adapter = tiny_adapters["transformer_lens"]
    cfg = GenerationConfig(max_new_tokens=8, do_sample=True, temperature=1.5, seed=3, progress=False)
    conds = {"baseline": [], "noop": [(RESID0, scale([1, 2], 1.0))], "zero": [(RESID0, zero_ablate(None))]}
    a = sweep(adapter, PROMPTS, conds, cfg)
    toks = _tokens(a)
    assert toks["noop"] == toks["baseline"]  # paired: the same draws, and the hook changes nothing
    assert toks["zero"] != toks["baseline"]
    assert _tokens(sweep(adapter, PROMPTS, conds, cfg)) == toks  # seeded
    alone = sweep(adapter, PROMPTS, {"baseline": []}, cfg)  # fewer conditions in the batch
    assert _tokens(alone)["baseline"] == toks["baseline"]
    chunked = sweep(adapter, PROMPTS, conds, cfg, sweep_config=SweepConfig(max_rows=2))  # conditions split over chunks
    assert _tokens(chunked) == toks
    # different examples get different draws (not one shared stream): equal prompts, different keys
    twin = sweep(adapter, ["hello world", "hello world"], {"baseline": []}, cfg)
    assert twin["baseline"].generations[0].response_ids != twin["baseline"].generations[1].response_ids
