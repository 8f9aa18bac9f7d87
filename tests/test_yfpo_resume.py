"""A stopped YFPO study resumes: finished fine-tunes and the pilot's step selection are read back from
OUT where everything they depend on is unchanged, and trained again where anything differs."""

import dataclasses
import json

import pytest
import torch

from reward_circuits.studies.yfpo import experiment, resume
from reward_circuits.studies.yfpo.config import YFPOConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def _task():
    from reward_circuits.tasks import Example, Task

    examples = [Example(id=f"q{i}", question=f"{i}+{i}?", answer=str(2 * i)) for i in range(50)]
    return Task("planted", examples, lambda response, ex: float("7" in response), max_new_tokens=6)


def _count_training(counter, monkeypatch):
    """Record every fine-tune (its seed) and the pilot run ("pilot") the study trains."""
    real_train, real_trainer = experiment._train_one, experiment._make_trainer

    def train_one(*a, **k):  # (cfg, model, tokenizer, dataset, reward, beta_aux, seed, run_dir)
        counter.append(a[6])
        return real_train(*a, **k)

    def make_trainer(*a, **k):  # the pilot is the one trainer built outside _train_one
        if "pilot" in str(a[-1]):
            counter.append("pilot")
        return real_trainer(*a, **k)

    monkeypatch.setattr(experiment, "_train_one", train_one)
    monkeypatch.setattr(experiment, "_make_trainer", make_trainer)


def _run(cfg):
    from reward_circuits.models.tiny import tiny_hf_model

    hf, tok = tiny_hf_model(seed=0)
    return experiment.run_yfpo(cfg, progress=False, hf_model=hf, tokenizer=tok, task=_task())


def test_a_stopped_study_resumes_what_it_finished_and_retrains_what_changed(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    cfg = YFPOConfig(out=str(tmp_path), train_prompts=44, eval_prompts=6, samples_per_prompt=6, max_new_tokens=6,
                     relevance_prompts=4, probe_layers=(0, 1), n_neurons=4, probe_epochs=2, seeds=(0,), steps=4,
                     batch_pairs=2, lora_r=2, lora_targets=("q_proj",), temperature=1.5, conditions=("dpo", "value"),
                     select_steps=True, step_check_every=2, save_adapters=False)
    calls: list = []
    _count_training(calls, monkeypatch)
    import reward_circuits.data.rollouts as rollouts_module

    sampled: list = []
    real_generate = rollouts_module.generate_rollouts
    monkeypatch.setattr(rollouts_module, "generate_rollouts", lambda *a, **k: sampled.append(1) or real_generate(*a, **k))
    first = _run(cfg)
    assert len(sampled) == 1 and (tmp_path / "rollouts" / "train.settings.json").exists()
    assert calls.count("pilot") == 1 and len([c for c in calls if c != "pilot"]) == 2
    saved = {p.name for p in (tmp_path / "runs").iterdir()}
    assert saved == {"dpo_s0.json", "value_s0.json"} and (tmp_path / "step_selection.json").exists()

    # the same study again: nothing is sampled or trained, every number is the first run's
    calls.clear()
    again = _run(cfg)
    assert calls == [] and len(sampled) == 1
    assert [dataclasses.asdict(r) for r in again.runs] == [dataclasses.asdict(r) for r in first.runs]
    assert {**again.step_selection, "resumed": False} == first.step_selection and again.config.steps == first.config.steps
    assert again.step_selection["resumed"] and not first.step_selection["resumed"] and first.step_selection["seconds"] > 0
    # the time summed over invocations: this one's, plus the runs and the pilot it read back
    assert first.resumed == [] and first.seconds_total == first.seconds
    assert again.resumed == ["dpo_s0", "value_s0"]
    want = again.seconds + sum(r.seconds for r in first.runs) + first.step_selection["seconds"]
    assert abs(again.seconds_total - want) < 1e-9
    assert again.to_section(None).summary["seconds_total"] == again.seconds_total
    assert again.to_section(None).summary["conditions"] == first.to_section(None).summary["conditions"]
    # each run keeps its CPU time beside its wall time (a shared machine's wall time alone misleads)
    assert all(0 < r.cpu_seconds for r in first.runs)
    assert [r["cpu_seconds"] for r in again.to_section(None).summary["runs"]] == [r.cpu_seconds for r in first.runs]
    # a record saved before CPU time was kept still reads back (its CPU time unknown: None, not 0)
    rec = json.loads((tmp_path / "runs" / "dpo_s0.json").read_text())
    del rec["record"]["cpu_seconds"]
    (tmp_path / "runs" / "dpo_s0.json").write_text(json.dumps(rec))
    calls.clear()
    old = _run(cfg)
    assert calls == [] and [r.cpu_seconds for r in old.runs if r.condition == "dpo"] == [None]

    # stopped during value_s0 (its record never written), and a seed added: only the missing runs train
    (tmp_path / "runs" / "value_s0.json").unlink()
    calls.clear()
    grown = _run(dataclasses.replace(cfg, seeds=(0, 1)))
    assert sorted(c for c in calls if c != "pilot") == [0, 1, 1] and "pilot" not in calls  # value_s0, dpo_s1, value_s1
    assert [r.correct for r in grown.runs if r.seed == 0 and r.condition == "dpo"] == \
        [r.correct for r in first.runs if r.condition == "dpo"]

    # a setting that changes the outcome (β) misses every saved record: pilot and runs train again
    calls.clear()
    _run(dataclasses.replace(cfg, beta=0.2, conditions=("dpo",)))
    assert calls == ["pilot", 0] and len(sampled) == 1  # the same rollouts: β does not change them

    # another sampling temperature: the kept rollouts are not these; sampled again, then kept
    _run(dataclasses.replace(cfg, temperature=1.2, conditions=("dpo",)))
    assert len(sampled) == 2
    assert json.loads((tmp_path / "rollouts" / "train.settings.json").read_text())["generation"]["temperature"] == 1.2
    # ... and the store the value neurons are chosen on is the new rollouts' (it resumes by rollout id, and
    # ids do not change with the temperature: kept, it would hold the old responses' states and rewards)
    from reward_circuits.data.rollouts import load_rollouts
    from reward_circuits.data.store import ActivationStore

    new = {r.id: r.reward for r in load_rollouts(tmp_path / "rollouts" / "train")}
    store = ActivationStore(tmp_path / "store")
    assert dict(zip(store.rollout_ids, map(float, store.rewards))) == new


def test_a_record_of_another_study_or_a_damaged_one_is_never_read(tmp_path):
    path = tmp_path / "runs" / "dpo_s0.json"
    resume.save(path, {"condition": "dpo"}, "abc")
    assert resume.load_saved(path, "abc") == {"condition": "dpo"}
    assert resume.load_saved(path, "another") is None
    path.write_text('{"fingerprint": "abc", "rec')  # cut short
    assert resume.load_saved(path, "abc") is None
    assert resume.load_saved(tmp_path / "absent.json", "abc") is None
    path.write_text(json.dumps([1, 2]))
    assert resume.load_saved(path, "abc") is None


def test_the_fingerprint_ignores_where_a_study_writes_and_sees_what_decides_a_run():
    from reward_circuits.studies.yfpo.neuron_reward import NeuronReward
    from reward_circuits.studies.yfpo.pairs import PreferencePair

    task = _task()
    pairs = [PreferencePair("q1", "1+1?", " 2", " 3")]
    rewards = {"value": NeuronReward("value", [(0, 1)], [1.0], [0.5], [2.0])}
    base = YFPOConfig(out="a", seeds=(0,))
    fp = resume.fingerprint(base, "m", pairs, rewards, task)
    assert fp == resume.fingerprint(dataclasses.replace(base, out="b", progress=False, seeds=(0, 1, 2)), "m", pairs, rewards, task)
    assert fp != resume.fingerprint(dataclasses.replace(base, lr=1e-4), "m", pairs, rewards, task)
    assert fp != resume.fingerprint(base, "other model", pairs, rewards, task)
    assert fp != resume.fingerprint(base, "m", pairs + [PreferencePair("q2", "2+2?", " 4", " 5")], rewards, task)
    moved = {"value": NeuronReward("value", [(0, 1)], [1.0], [0.6], [2.0])}
    assert fp != resume.fingerprint(base, "m", pairs, moved, task)
    last_bits = {"value": NeuronReward("value", [(0, 1)], [1.0], [0.5 + 1e-12], [2.0])}
    assert fp == resume.fingerprint(base, "m", pairs, last_bits, task)  # a thread-count rounding difference


def test_kept_rollouts_are_read_back_only_for_the_same_settings_and_grading(tmp_path):
    """The rollout cache: read back when the record matches and the task still grades each rollout as
    stored; another setting, a changed grader or a damaged record samples again."""
    from reward_circuits.data.rollouts import Rollout
    from reward_circuits.models.tiny import tiny_hf_model
    from reward_circuits.models import GenerationConfig

    task = _task()
    hf, tok = tiny_hf_model(seed=0)
    made: list = []

    def generate():
        made.append(1)
        return [Rollout(f"planted/{e.id}/s0", "planted", e.id, [1], [2], "7", 1.0, e.answer) for e in task.examples[:3]]

    cfg = YFPOConfig(out=str(tmp_path))
    gen = GenerationConfig(max_new_tokens=6, do_sample=True, temperature=1.5)
    settings = resume.rollout_settings(cfg, "m", resume.model_digest(hf), task, tok, gen)
    first, reused = resume.training_rollouts(tmp_path, settings, task, generate)
    assert not reused and made == [1]
    again, reused = resume.training_rollouts(tmp_path, settings, task, generate)
    assert reused and made == [1] and [r.id for r in again] == [r.id for r in first]
    # other weights (same class and config), another generation setting: sampled again
    other_hf, _ = tiny_hf_model(seed=1)
    assert resume.rollout_settings(cfg, "m", resume.model_digest(other_hf), task, tok, gen) != settings
    # identical weights give the same digest; one value changed in any tensor (here a middle layer's
    # MLP, as a merged adapter would) changes it
    import copy

    assert resume.model_digest(copy.deepcopy(hf)) == resume.model_digest(hf)
    for name, p in list(hf.named_parameters())[1:-1]:
        edited = copy.deepcopy(hf)
        with torch.no_grad():
            dict(edited.named_parameters())[name].view(-1)[0] += 1.0
        assert resume.model_digest(edited) != resume.model_digest(hf), name
    assert resume.rollout_settings(cfg, "m", resume.model_digest(hf), task, tok, dataclasses.replace(gen, top_p=0.9)) != settings

    class OtherIds:  # a tokenizer that renders the same text into other token ids
        def __getattr__(self, name):
            return getattr(tok, name)

        def __call__(self, *args, **kwargs):
            return {"input_ids": [[i + 1 for i in ids] for ids in tok(*args, **kwargs)["input_ids"]]}

    assert resume.rollout_settings(cfg, "m", resume.model_digest(hf), task, OtherIds(), gen) != settings
    # a grader that no longer agrees with the stored rewards: sampled again
    task.reward_fn = lambda response, ex: 0.0
    resume.training_rollouts(tmp_path, settings, task, generate)
    assert made == [1, 1]
    # a damaged record: sampled again
    (tmp_path / "rollouts" / "train.settings.json").write_text("{")
    resume.training_rollouts(tmp_path, settings, task, generate)
    assert made == [1, 1, 1]
