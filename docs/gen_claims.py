"""The Claims page's table: every registered claim, the paper's figure, ours per model and run, and the
verdict, built from the ``claims`` lists of the committed ``summary.json`` files under docs/results/.
The docs hook (docs/hooks.py) puts ``render()`` in place of docs/claims.md's ``<!-- claims -->`` marker at
build time, so the page is never stale.

    PYTHONPATH=. python docs/gen_claims.py                # print the page (a preview)
    PYTHONPATH=. python docs/gen_claims.py --cross-model  # print only the claim × model table (markdown)
    PYTHONPATH=. python docs/gen_claims.py --changes      # claims that moved between a decision and none

The page opens with the cross-model table (:func:`render_cross_model`): one row per claim, one column
per model, each cell the estimate [95% interval], n and verdict of that model's run with the most
evidence for the claim (largest total n over its scopes; ties: the newest summary), layers written in
relative depth ("L18/30 (0.62)" = layer 18 of 30 blocks, at 18/29 of the way from the first to the last, so 135M, 270M and 0.5B models compare), and
"not run" where no committed run of that model measured the claim.

A main-job summary written before the registry (no ``claims`` list) is re-judged from the fields it
holds (:func:`~reward_circuits.analysis.claims.evidence_from_summary`; the run is marked
"re-judged" and each method says what the fields allowed, e.g. a rank among 5 random draws).

Only summaries git tracks are read (a file left in the tree by a local run is not a committed
result); each row cites the summary it comes from and the commit that last changed it. A claim no
committed run measures is listed as "not measured yet", so gaps stay visible.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

from reward_circuits.models.loading import DEFAULT_MODEL, is_default, relative_depth
from reward_circuits.analysis.claims import FAMILIES, REGISTRY, claims_summary, evidence_from_summary, verdict

HERE = Path(__file__).resolve().parent
PAGE = HERE / "claims.md"
FAMILY_TITLES = {"sparse_reward": "Sparse Reward Subsystem", "sae_td": "Demircan et al. (SAE × TD)",
                 "irm": "Marks et al. (implicit reward models)", "yfpo": "YFPO", "ours": "Ours (applications)"}


def committed_summaries(results: Path) -> list[Path]:
    """``summary.json`` files under ``results`` that git tracks (every one found when ``results`` is not in a repository)."""
    found = sorted(results.rglob("summary.json"))
    try:
        out = subprocess.run(["git", "ls-files", "--", "."], cwd=results, capture_output=True, text=True, check=True).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        return found
    tracked = {(results / line).resolve() for line in out.splitlines()}
    return [p for p in found if p.resolve() in tracked] if tracked else found


def last_commit(path: Path, fmt: str = "%h") -> str:
    """The commit that last changed ``path`` (``fmt``: git's, e.g. ``%ct`` for its time), or "uncommitted"."""
    try:
        return subprocess.run(["git", "log", "-1", f"--format={fmt}", "--", path.name], cwd=path.parent,
                              capture_output=True, text=True, check=True).stdout.strip() or "uncommitted"
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "uncommitted"


def claim_rows(results: Path) -> dict[str, list[dict]]:
    """Claim id → the results of every committed summary that carries a ``claims`` list, each with
    its run (the summary's folder under ``results``), model and commit."""
    rows: dict[str, list[dict]] = {}
    for path in committed_summaries(results):
        summary = json.loads(path.read_text())
        claims, run = summary.get("claims"), path.parent.relative_to(results).as_posix() or "."
        if not isinstance(claims, list):  # written before the registry: re-judge what the summary holds
            claims = claims_summary(verdict(evidence_from_summary(summary)))
            run += " (re-judged)" if claims else ""
        if not claims:
            continue
        model = str(summary.get("model") or (summary.get("config") or {}).get("model") or "?")
        local = Path(model).is_absolute() or model.startswith(".")
        model = Path(model).name if "/" in model and local else model  # a local path: its last part
        model = DEFAULT_MODEL if is_default(model) else model  # "default": the library's default model
        commit, n_layers, when = last_commit(path), summary.get("n_layers"), last_commit(path, "%ct")
        when = int(when) if when.isdigit() else 0
        smoke = bool((summary.get("config") or {}).get("quick"))  # a --quick run: a smoke test, not evidence
        # a run folder holding SUPERSEDED (which run replaces it, and why) is history, never a model's evidence
        superseded = (path.parent / "SUPERSEDED").exists()
        run += " (superseded)" if superseded else ""
        for c in claims:
            rows.setdefault(c["id"], []).append({**c, "run": run, "model": model, "commit": commit, "n_layers": n_layers,
                                                 "committed_at": when, "quick": smoke,
                                                 "superseded": superseded})
    return rows


LAYER = re.compile(r"\blayer (\d+)\b")


def scope_in_depth(scope: str, n_layers: int | None) -> str:
    """``"layer 18, matched"`` of a 30-layer model → ``"L18/30 (0.62), matched"`` (layer / (n_layers - 1),
    :func:`reward_circuits.models.loading.relative_depth`: 0 the first block, 1 the last);
    unchanged when the run did not record its depth."""
    if not n_layers:
        return scope
    return LAYER.sub(lambda m: f"L{m.group(1)}/{n_layers} ({relative_depth(int(m.group(1)), int(n_layers)):.2f})", scope)


def _run_key(results: list[dict]) -> tuple:
    """Which run of one model speaks for a claim: not a ``--quick`` smoke run, the most evidence
    (total n over its scopes), the most recently committed, a run's own folder before a variant in a
    subfolder of it (``paper`` before ``paper/td0``), then the name."""
    first = results[0]
    return (not first.get("quick"), sum(r.get("n") or 0 for r in results), first.get("committed_at", 0),
            -first["run"].count("/"), first["run"])


SCOPE_LAYER = re.compile(r"\s*\blayer \d+\b\s*")


def scope_key(scope: str | None) -> str:
    """What a scope measures apart from its layer (``"two_step, layer 17"`` → ``"two_step"``, ``"layer 18,
    uniform"`` → ``"uniform"``): the unit on which runs of one model compete for a cell."""
    return ", ".join(p for p in (part.strip() for part in SCOPE_LAYER.sub(" ", scope or "").split(",")) if p)


def choose_runs(results: list[dict]) -> list[dict]:
    """One model's results for one claim → per scope (:func:`scope_key`) the results of the run chosen by
    :func:`_run_key`, grouped by run: a 30-experiment run of one task speaks for that task, and the
    older run still speaks for the tasks it alone measured."""
    by_key: dict[str, dict[str, list[dict]]] = {}
    for r in results:
        by_key.setdefault(scope_key(r.get("scope")), {}).setdefault(r["run"], []).append(r)
    chosen = [r for runs in by_key.values() for r in max(runs.values(), key=_run_key)]
    order = list(dict.fromkeys(r["run"] for r in chosen))
    return sorted(chosen, key=lambda r: order.index(r["run"]))


def cross_model(rows: dict[str, list[dict]]) -> tuple[list[str], dict[str, dict[str, list[dict]]]]:
    """The models (in order of first appearance) and, per claim id and model, the chosen results
    (:func:`choose_runs`; superseded runs never)."""
    models = list(dict.fromkeys(r["model"] for got in rows.values() for r in got))
    # a summary that did not record its depth (e.g. sae-td's) borrows it from another run of the same model
    depth = {r["model"]: r["n_layers"] for got in rows.values() for r in got if r.get("n_layers")}
    rows = {cid: [{**r, "n_layers": r.get("n_layers") or depth.get(r["model"])} for r in got] for cid, got in rows.items()}
    table: dict[str, dict[str, list[dict]]] = {}
    for cid, got in rows.items():
        for model in models:
            mine = [r for r in got if r["model"] == model and not r.get("superseded")]
            if mine:
                table.setdefault(cid, {})[model] = choose_runs(mine)
    return models, table


def cross_cell(results: list[dict]) -> str:
    """One model's cell: per scope, estimate [interval], n and verdict; after each run's scopes, the run."""
    out = []
    for run in dict.fromkeys(r["run"] for r in results):
        parts = []
        mine = [r for r in results if r["run"] == run]
        for r in mine:
            lo, hi = (r.get("interval") or [None, None])[:2]
            scope = scope_in_depth(r.get("scope") or "", r.get("n_layers"))
            parts.append(f"{scope + ': ' if scope else ''}{_num(r.get('estimate'))} [{_num(lo)}, {_num(hi)}], "
                         f"n = {r.get('n')}, **{r['verdict']}**")
        out.append("<br>".join(parts) + f"<br>({run}, {mine[0]['commit']})")
    return "<br>".join(out)


DECIDED = ("reproduces", "does not reproduce")


def _decision(results: list[dict]) -> str:
    """One run's verdict on a claim over its scopes: the decided ones (e.g. "reproduces"), else the rest."""
    got = sorted({r["verdict"] for r in results})
    decided = [v for v in got if v in DECIDED]
    return " / ".join(decided or got)


def verdict_changes(results: Path = HERE / "results") -> list[str]:
    """Claims whose verdict on a model moved between a decision and no decision (or between the two
    decisions) from one committed run to a later one, scope by scope (:func:`scope_key`), against the
    run the table shows (:func:`choose_runs`); ``--quick`` smoke runs are not evidence and are left out.
    One markdown line each."""
    rows = claim_rows(results)
    _, table = cross_model(rows)
    lines = []
    for cid, by_model in table.items():
        for model, shown in by_model.items():
            for key in dict.fromkeys(scope_key(r.get("scope")) for r in shown):
                chosen = [r for r in shown if scope_key(r.get("scope")) == key]
                runs: dict[str, list[dict]] = {}
                for r in rows[cid]:
                    if (r["model"] == model and r["run"] != chosen[0]["run"] and not r.get("quick")
                            and scope_key(r.get("scope")) == key):
                        runs.setdefault(r["run"], []).append(r)
                lines += [_change_line(cid, model, got, chosen) for got in runs.values()]
    return [ln for ln in lines if ln]


def _change_line(cid: str, model: str, got: list[dict], chosen: list[dict]) -> str:
    """One line of :func:`verdict_changes`, or "" where the two runs' decisions agree."""
    a, b = sorted((got, chosen), key=lambda x: (x[0].get("committed_at", 0), x is chosen))
    va, vb = _decision(a), _decision(b)
    if va == vb or not (va in DECIDED or vb in DECIDED):
        return ""
    key = scope_key(a[0].get("scope"))
    return (f"- `{cid}`{' (' + key + ')' if key else ''} on {model}: {va} ({a[0]['run']}, n = {sum(r.get('n') or 0 for r in a)}) → "
            f"{vb} ({b[0]['run']}, n = {sum(r.get('n') or 0 for r in b)})")


def render_cross_model(results: Path = HERE / "results") -> str:
    """The claim × model table (markdown): every registered claim some committed run measured, one
    column per model; "not run" where that model's runs did not measure it."""
    models, table = cross_model(claim_rows(results))
    if not models:
        return "No committed summary carries claim results yet."
    lines = ["| claim | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for cid in REGISTRY:
        if cid in table:
            cells = [cross_cell(table[cid][m]) if m in table[cid] else "not run" for m in models]
            lines.append(f"| `{cid}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _num(x) -> str:
    return "–" if x is None else f"{x:.3g}" if isinstance(x, float) else str(x)


def ours_cell(r: dict) -> str:
    lo, hi = (r.get("interval") or [None, None])[:2]
    scope = f", {r['scope']}" if r.get("scope") else ""
    return (f"{r['model']} ({r['run']}{scope}, {r['commit']}): {_num(r.get('estimate'))} [{_num(lo)}, {_num(hi)}], "
            f"n = {r.get('n')}; p {_num(r.get('p'))}, Holm {_num(r.get('p_adjusted'))}; MDE {_num(r.get('minimum_detectable_effect'))}")


def render(results: Path = HERE / "results") -> str:
    """The page's text."""
    rows = claim_rows(results)
    measured = sum(1 for cid in REGISTRY if cid in rows)
    lines = ["# Claims", "",
             "Generated by `docs/gen_claims.py` from the `claims` lists of the committed `summary.json` files under "
             "`docs/results/`; do not edit by hand. p is one-sided in the paper's direction, Holm-adjusted within each "
             "paper's claim family of a run; MDE is the minimum detectable effect at 80% power. \"re-judged\": a summary "
             "written before the claim registry, judged from the fields it holds (the run's report has the methods).", "",
             f"{measured} of {len(REGISTRY)} registered claims have a verdict in a committed run.", "",
             "## Across models", "",
             "Each cell: per scope (a task, a control; layers aside), the model's run with the most evidence for it "
             "(largest total n; ties: the newest; never a --quick smoke run or a SUPERSEDED one), "
             "per scope the estimate [95% CI], n and verdict; layers in relative depth (L18/30 (0.62) = layer 18 of 30 blocks: 0 the first, 1 the last). "
             "\"not run\": no committed run of that model measured the claim.", "",
             render_cross_model(results), ""]
    for family in FAMILIES:
        lines += [f"## {FAMILY_TITLES[family]}", "", "| claim | paper figure | ours (model, run, estimate [95% CI], n) | verdict |",
                  "|---|---|---|---|"]
        for cid, claim in REGISTRY.items():
            if claim.family != family:
                continue
            got = rows.get(cid, [])
            ours = "<br>".join(ours_cell(r) for r in got) or "not measured yet"
            verdicts = "<br>".join(r["verdict"] for r in got) or "–"
            where = f"{claim.statement} ({claim.where}; `{cid}`)"
            lines.append(f"| {where} | {claim.paper_figure} | {ours} | {verdicts} |".replace("\n", " "))
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Print the Claims page, or only its claim × model table.")
    parser.add_argument("--cross-model", action="store_true", help="print only the claim × model table (markdown)")
    parser.add_argument("--changes", action="store_true",
                        help="print the claims whose verdict on a model moved between a decision and none, run to run")
    parser.add_argument("--results", type=Path, default=HERE / "results", help="folder of summary.json files")
    args = parser.parse_args(argv)
    if args.changes:
        print("\n".join(verdict_changes(args.results)) or "No claim's verdict moved between a decision and none.")
    else:
        print(render_cross_model(args.results) if args.cross_model else render(args.results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
