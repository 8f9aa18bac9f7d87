"""TD(0) / TD(λ) / Monte-Carlo targets: agreement where theory says so, and the per-layer comparison."""

from __future__ import annotations

import pytest
import torch

from reward_circuits.analysis import (
    ValueProbe,
    ValueProbeConfig,
    monte_carlo_targets,
    td_targets,
)
from reward_circuits.analysis.targets import compare_targets
from reward_circuits.data.synthetic import planted_value_store

pytestmark = pytest.mark.usefixtures("one_thread")
HOOKS = ("blocks.0.hook_resid_post", "blocks.1.hook_resid_post")
CFG = ValueProbeConfig(epochs=15, hidden=16, patience=5)


def test_td_and_mc_targets_agree_on_one_step_episodes():
    """s_0 is the last state: every target is the reward, for any γ and λ."""
    values = torch.tensor([[0.3, 0.9, 0.1, 0.6]])
    reward = torch.tensor([1.0, 0.0, 1.0, 0.0])
    is_last = torch.ones(4, dtype=torch.bool)
    mc = monte_carlo_targets(values, reward)
    for gamma, lam in [(0.99, 0.0), (0.5, 0.7), (1.0, 1.0)]:
        torch.testing.assert_close(td_targets(values, reward, is_last, gamma, lam), mc)


def test_td_lambda_one_gamma_one_is_monte_carlo_on_long_episodes():
    values = torch.rand(1, 7)
    reward = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    is_last = torch.tensor([False, False, True, False, False, False, True])
    torch.testing.assert_close(td_targets(values, reward, is_last, 1.0, 1.0), monte_carlo_targets(values, reward))
    assert not torch.allclose(td_targets(values, reward, is_last, 1.0, 0.0), monte_carlo_targets(values, reward))


@pytest.fixture(scope="module")
def one_step_store(tmp_path_factory):
    store, info = planted_value_store(tmp_path_factory.mktemp("one") / "s", n_rollouts=300, d=16, k=2, T_range=(0, 0),
                                      seed=0, hooks=HOOKS)
    return store, info, *store.split(0.3, seed=0)


def test_td_and_mc_probes_are_identical_on_one_step_episodes(one_step_store):
    store, _, train, test = one_step_store
    td = ValueProbe(CFG).fit(store, list(HOOKS), train, verbose=False)
    mc = ValueProbe(CFG.replace(mode="final_reward")).fit(store, list(HOOKS), train, verbose=False)
    torch.testing.assert_close(td.W1, mc.W1)
    cmp = compare_targets(store, list(HOOKS), train, test, CFG, n_boot=200)
    for h in HOOKS:
        d = cmp.vs_reference["monte_carlo"][h].difference
        assert d.estimate == d.low == d.high == 0.0
        assert cmp.auc["td0"][h].estimate == cmp.auc["monte_carlo"][h].estimate
        assert cmp.vs_reference["monte_carlo"][h].verdict == "inconclusive at this n"


def test_compare_targets_reports_every_layer_with_intervals(tmp_path):
    store, info = planted_value_store(tmp_path / "s", n_rollouts=240, d=16, k=2, T_range=(3, 8), seed=1, hooks=HOOKS)
    train, test = store.split(0.3, seed=0)
    cmp = compare_targets(store, list(HOOKS), train, test, CFG, n_boot=200)
    assert set(cmp.auc) == {"td0", "td_lambda", "monte_carlo"} and set(cmp.vs_reference) == {"td_lambda", "monte_carlo"}
    sig = cmp.auc["td0"][HOOKS[0]]
    assert sig.low < sig.estimate < sig.high and sig.n == len(test)
    assert sig.estimate > 0.75 and cmp.auc["monte_carlo"][HOOKS[0]].estimate > 0.75
    assert cmp.auc["td0"][HOOKS[1]].low < 0.5 + 0.1
    rows = cmp.table_rows()
    assert len(rows) == len(HOOKS) and all(len(r) == len(cmp.table_columns()) for r in rows)
    assert cmp.to_dict()["n_test"] == len(test)
    # rollouts that share a prompt (pairs here): intervals resample prompts and count them, reusing the probes
    pairs = [i // 2 for i in range(len(store))]
    grouped = compare_targets(store, list(HOOKS), train, test, CFG, n_boot=200, fitted=cmp.probes, groups=pairs)
    n_pairs = len({pairs[i] for i in test})
    assert grouped.auc["td0"][HOOKS[0]].n == grouped.vs_reference["monte_carlo"][HOOKS[0]].difference.n == n_pairs < len(test)
    assert grouped.auc["td0"][HOOKS[0]].estimate == sig.estimate
    with pytest.raises(ValueError, match="reference"):
        compare_targets(store, list(HOOKS), train, test, CFG, reference="td2")


def test_results_render_their_sections(one_step_store):
    store, _, train, test = one_step_store
    cmp = compare_targets(store, HOOKS[0], train, test, CFG, n_boot=100)
    sec = cmp.section()
    assert sec.key == "target_variants" and sec.tables[0].rows == cmp.table_rows() and sec.summary["n_test"] == len(test)
