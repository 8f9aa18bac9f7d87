"""mkdocs hooks: every number on a results page comes from a committed ``summary.json``.

- ``<!-- tutorial: tutorials/NAME.py -->`` in a page becomes the tutorial itself: the jupytext percent
  script converted to Markdown, so the docs show exactly the code CI executes (tests/test_tutorials.py).
- ``{{ result("main", "value.best_layer") }}`` is a figure read from ``docs/results/<run>/summary.json`` at
  build time (see :data:`FUNCTIONS` for the others: ``interval``, ``stat``, ``run``). ``<run>`` is a folder
  under ``docs/results/`` or an alias the page declares with ``<!-- results: main=2026-12-06/main paper=paper -->``.
  Keys are dotted paths (``value.prune_curve.0.99``: a key that itself holds dots is matched whole).
  Each figure cites its source (hover: the summary, the commit that last changed it, the key) and the
  page ends with the list of the summaries it quotes. A missing key fails the build, naming the page,
  the summary and the key.
- ``{{ claim("paper", "srs.ablation_vs_random", "layer {value.best_layer}, uniform") }}`` is the claim
  registry's result for that claim and scope in that run (the summary's ``claims`` list; a summary written
  before the registry is re-judged by the same rules): ``estimate [low, high], n = N, Holm p = …: verdict``
  (``show="verdict"``: the verdict alone). A page never states a verdict of its own: a study's
  unadjusted interval reading is not the claim's verdict.
- ``<!-- claims -->`` becomes the Claims table of ``docs/gen_claims.py``'s ``render()`` when that file exists.
- The figures of ``docs/gen_figures.py`` are drawn from the committed summaries at build time.
"""

from __future__ import annotations

import ast
import html
import importlib.util
import json
import re
import statistics
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
MARKER = re.compile(r"<!--\s*tutorial:\s*(\S+)\s*-->")
PLACEHOLDER = re.compile(r"\{\{\s*(.+?)\s*\}\}", re.DOTALL)
ALIASES = re.compile(r"<!--\s*results:\s*(.*?)\s*-->", re.DOTALL)
CLAIMS = re.compile(r"<!--\s*claims\s*-->")


class ResultError(Exception):
    """A placeholder that cannot be resolved: the message names the page, the summary and the key."""


def tutorial_markdown(path: str | Path) -> str:
    import jupytext

    nb = jupytext.read(ROOT / path)
    nb.metadata = {}
    text = jupytext.writes(nb, fmt="md")
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.DOTALL)  # no YAML header
    source = f"tutorials/{Path(path).name}"
    note = (f'!!! info "Source"\n    `{source}` (a jupytext percent script: `jupytext --to ipynb {source}` '
            f"makes it a notebook). Run it with `python {source}`; `RC_TUTORIAL_SMALL=1` runs the small "
            "size CI executes.\n\n")
    title = re.match(r"\s*(# [^\n]*\n)", text)  # the note goes under the tutorial's own title
    return title.group(1) + "\n" + note + text[title.end():] if title else note + text


# ---------------------------------------------------------------- summaries


def summary_path(run: str, results: Path = RESULTS) -> Path:
    return results / run / "summary.json"


@lru_cache(maxsize=None)
def _load_summary(path: str) -> dict:
    return json.loads(Path(path).read_text())


def load_summary(run: str, results: Path = RESULTS) -> dict:
    path = summary_path(run, results)
    if not path.is_file():
        runs = sorted(str(p.parent.relative_to(results)) for p in results.rglob("summary.json"))
        raise ResultError(f"no summary {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}; "
                          f"committed runs: {', '.join(runs)}")
    return _load_summary(str(path))


@lru_cache(maxsize=None)
def last_commit(path: str) -> str:
    """The short hash of the commit that last changed ``path``; "uncommitted" outside git or for an untracked file."""
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%h %cs", "--", path], cwd=ROOT, capture_output=True,
                             text=True, timeout=30, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return out.split()[0] if out else "uncommitted"


@lru_cache(maxsize=None)
def first_committed(path: str) -> str:
    """The date the summary was first committed (the run's date; later commits may only fix its paths)."""
    try:
        out = subprocess.run(["git", "log", "--diff-filter=A", "--format=%cs", "--", path], cwd=ROOT,
                             capture_output=True, text=True, timeout=30, check=False).stdout.split()
    except (OSError, subprocess.SubprocessError):
        out = []
    return out[-1] if out else "uncommitted"


def lookup(summary, key: str):
    """``summary[a][b]...`` for the dotted ``key``; at each level the longest run of parts that is a key
    wins (``prune_curve.0.99``, ``layers.blocks.15.hook_resid_post``). KeyError names where it stopped."""
    parts, node, i = key.split("."), summary, 0
    while i < len(parts):
        if isinstance(node, dict):
            for j in range(len(parts), i, -1):
                if ".".join(parts[i:j]) in node:
                    node, i = node[".".join(parts[i:j])], j
                    break
            else:
                have = ", ".join(list(map(str, node))[:12])
                raise KeyError(f"no key {'.'.join(parts[i:])!r} under {'.'.join(parts[:i]) or 'the top level'} "
                               f"(it has: {have}{', …' if len(node) > 12 else ''})")
        elif isinstance(node, list) and parts[i].lstrip("-").isdigit() and -len(node) <= int(parts[i]) < len(node):
            node, i = node[int(parts[i])], i + 1
        else:
            raise KeyError(f"{'.'.join(parts[:i])} is {type(node).__name__}, not indexable by {parts[i]!r}")
    return node


def _fmt(value, fmt: str = "", scale: float = 1.0) -> str:
    if value is None:
        raise ValueError("the value is null")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        value = value * scale if scale != 1.0 else value
        text = format(value, fmt) if fmt else str(value)
        if text.startswith("-") and not any(c in "123456789" for c in text):
            text = text[1:]  # a value that rounds to zero shows no sign
        return text.replace("-", "−", 1) if text.startswith("-") else text
    if isinstance(value, dict) and {"estimate", "low", "high"} <= set(value):
        return f"{_fmt(value['estimate'], fmt, scale)} {_interval(value, fmt, scale)}"
    if isinstance(value, str):
        return value
    raise ValueError(f"a {type(value).__name__} is not a figure (point the key at a number, a string or an interval)")


def _interval(value, fmt: str, scale: float) -> str:
    lo, hi = (value["low"], value["high"]) if isinstance(value, dict) else value
    return f"[{_fmt(lo, fmt, scale)}, {_fmt(hi, fmt, scale)}]"


def _numbers(value, field: str | None = None) -> list:
    """The values of a dict or list: an interval's estimate, or ``item[field]`` of each item."""
    items = value.values() if isinstance(value, dict) else value
    out = []
    for v in items:
        v = lookup(v, field) if field else v
        out.append(v["estimate"] if isinstance(v, dict) and "estimate" in v else v)
    return [v for v in out if v is not None]


def _stat(values, how: str, fmt: str = "", scale: float = 1.0, field: str | None = None, match=True) -> str:
    nums = _numbers(values, field)
    if how == "count":  # items equal to ``match`` (True: the layers where a flag holds)
        return str(sum(1 for v in nums if v == match and type(v) is type(match)))
    if how == "len":
        return str(len(nums))
    if how == "range":
        return f"{_fmt(min(nums), fmt, scale)}–{_fmt(max(nums), fmt, scale)}"
    funcs = {"min": min, "max": max, "mean": statistics.fmean}
    if how not in funcs:
        raise ValueError(f"stat {how!r} is not one of count, len, range, {', '.join(funcs)}")
    return _fmt(funcs[how](nums), fmt, scale)


FUNCTIONS = {
    # result(run, key, fmt="", scale=1): the value (an interval dict renders as "est [low, high]")
    "result": lambda value, fmt="", scale=1.0: _fmt(value, fmt, scale),
    # interval(run, key, fmt=""): only "[low, high]" of an interval dict or a [low, high] list
    "interval": lambda value, fmt="", scale=1.0: _interval(value, fmt, scale),
    # stat(run, key, how, fmt=""): count (of true), len, range (min–max), min, max, mean of a dict's or list's values
    # field="iou": each item's field; match="reproduces": count the items equal to it
    "stat": _stat,
}


def fill_keys(summary: dict, text: str) -> str:
    """``text`` with each ``{dotted.key}`` replaced by that figure of ``summary`` (``"layer {value.best_layer}"``)."""
    return re.sub(r"\{([^{}]+)\}", lambda m: str(lookup(summary, m.group(1))), text)


def _claims_of(summary: dict) -> list[dict]:
    """The summary's registry results; a summary written before the registry is re-judged alike."""
    if isinstance(summary.get("claims"), list) and summary["claims"]:
        return summary["claims"]  # an empty list (a run whose claims were lost) is re-judged like an old summary
    sys.path.insert(0, str(ROOT))
    from reward_circuits.analysis.claims import claims_summary, evidence_from_summary, verdict

    return claims_summary(verdict(evidence_from_summary(summary)))


def claim_text(summary: dict, claim_id: str, scope: str = "", fmt: str = ".2f", show: str = "full") -> tuple[str, str]:
    """The registry's result for ``claim_id`` at ``scope`` (``{dotted.key}`` inside it is that figure of the
    summary) as page text, and the citation key. ``show``: ``full`` or ``verdict``."""
    scope = fill_keys(summary, scope)
    claims = _claims_of(summary)
    found = [c for c in claims if c["id"] == claim_id and (c.get("scope") or "") == scope]
    if not found:
        have = sorted({f"{c['id']} @ {c.get('scope') or '(no scope)'}" for c in claims if c["id"] == claim_id})
        raise KeyError(f"no claim {claim_id!r} at scope {scope!r} (it has: {', '.join(have) or 'none of that id'})")
    if len(found) > 1:
        raise ValueError(f"{len(found)} claims {claim_id!r} at scope {scope!r}: a scope must name one result")
    c = found[0]
    key = f"claims: {claim_id} @ {scope or '(no scope)'}"
    if show == "verdict":
        return c["verdict"], key
    if show != "full":
        raise ValueError(f"show must be 'full' or 'verdict', got {show!r}")
    lo, hi = c["interval"]
    iv = "no interval" if lo is None or hi is None else f"[{_fmt(lo, fmt)}, {_fmt(hi, fmt)}]"
    p = c.get("p_adjusted") if c.get("p_adjusted") is not None else c.get("p")
    p_shown = "< 0.001" if p is not None and p < 0.001 else f"= {_fmt(p, '.2g')}" if p is not None else ""
    p_text = "" if p is None else f", {'Holm ' if c.get('p_adjusted') is not None else ''}p {p_shown}"
    est = "–" if c["estimate"] is None else _fmt(c["estimate"], fmt)
    return f"{est} {iv}, n = {c['n']}{p_text}: {c['verdict']}", key


class Page:
    """One page's placeholders, resolved against the committed summaries; ``sources`` are the summaries quoted."""

    def __init__(self, name: str, markdown: str, results: Path = RESULTS, cite: bool = True):
        self.name, self.results, self.cite = name, results, cite
        self.aliases: dict[str, str] = {}
        for decl in ALIASES.findall(markdown):
            for item in decl.split():
                alias, _, run = item.partition("=")
                if not run:
                    raise ResultError(f"{name}: results declaration {item!r} is not alias=run (e.g. main=2026-12-06/main)")
                self.aliases[alias] = run
        self.sources: dict[str, str] = {}

    def run_of(self, name: str) -> str:
        return self.aliases.get(name, name)

    def resolve(self, expr: str) -> str:
        func, args, kwargs = self._parse(expr)
        run = self.run_of(args[0])
        where = f"{self.name}: {{{{ {expr} }}}}"
        try:
            summary = load_summary(run, self.results)
        except ResultError as e:
            raise ResultError(f"{where}: {e}") from None
        rel = f"docs/results/{run}/summary.json"  # how the page names it
        commit = last_commit(str(summary_path(run, self.results)))
        self.sources[run] = commit
        if func == "run":
            return self._cite(run_label(run, summary, commit), rel, commit, "")
        if func == "claim":
            try:
                text, key = claim_text(summary, *args[1:], **kwargs)
            except (KeyError, ValueError, TypeError) as e:
                msg = e.args[0] if e.args else str(e)
                raise ResultError(f"{where}: {rel} (commit {commit}): {msg}") from None
            return self._cite(text, rel, commit, key)
        key = args[1]
        try:  # "{value.best_layer}" inside a key is that figure of the same summary
            key = fill_keys(summary, key)
            value = lookup(summary, key)
            text = FUNCTIONS[func](value, *args[2:], **kwargs)
        except (KeyError, ValueError, TypeError) as e:
            msg = e.args[0] if e.args else str(e)
            raise ResultError(f"{where}: {rel} (commit {commit}) has no figure at key {key!r}: {msg}") from None
        return self._cite(text, rel, commit, key)

    def _parse(self, expr: str):
        try:
            call = ast.parse(expr, mode="eval").body
            ok = (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                  and call.func.id in (*FUNCTIONS, "run", "claim") and call.args)
            args = [ast.literal_eval(a) for a in call.args] if ok else []
            kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords} if ok else {}
        except (SyntaxError, ValueError):
            ok = False
        if not ok or (call.func.id != "run" and len(args) < 2):
            raise ResultError(f"{self.name}: cannot read the placeholder {{{{ {expr} }}}}: write "
                              f"{{{{ result(\"RUN\", \"dotted.key\", \".3f\") }}}} (or interval, stat, run)")
        return call.func.id, args, kwargs

    def _cite(self, text: str, rel: str, commit: str, key: str) -> str:
        if not self.cite:  # plain Markdown (README): the block names its sources itself
            return text
        # "|" would split a Markdown table cell: escaped like the quotes
        title = html.escape(f"{rel} @ {commit}" + (f": {key}" if key else ""), quote=True).replace("|", "&#124;")
        return f'<span class="rc-figure" title="{title}">{text}</span>'

    def footer(self) -> str:
        if not self.sources:
            return ""
        lines = ["", "", "---", "",
                 "**Sources.** Every figure on this page is read at build time from a committed `summary.json` "
                 "(hover a figure for its summary, commit and key):", ""]
        for run, commit in sorted(self.sources.items()):
            summary = load_summary(run, self.results)
            lines.append(f"- `docs/results/{run}/summary.json`: {run_label(run, summary, commit)}")
        return "\n".join(lines) + "\n"


def run_label(run: str, summary: dict, commit: str) -> str:
    """Which run: model, tasks and sizes, the summary's commit and its date."""
    cfg = summary.get("config") if isinstance(summary.get("config"), dict) else {}
    model = summary.get("model") or cfg.get("model")
    bits = [{None: "model not recorded", "default": "the default model (SmolLM2-135M-Instruct)"}.get(model, str(model))]
    if cfg.get("tasks"):
        bits.append(", ".join(map(str, cfg["tasks"])))
    primary = cfg.get("primary_limit")
    if cfg.get("limit") and primary and primary != cfg["limit"] and cfg.get("tasks"):
        bits.append(f"{primary} rollouts of {cfg['tasks'][0]}, {cfg['limit']} of each other task")
    elif cfg.get("limit"):
        bits.append(f"{cfg['limit']} rollouts per task")
    if cfg.get("profile") and cfg.get("profile") != "default":
        bits.append(f"profile {cfg['profile']}")
    if commit == "uncommitted":
        return f"{'; '.join(bits)}; uncommitted"
    return f"{'; '.join(bits)}; first committed {first_committed(str(RESULTS / run / 'summary.json'))}, last changed in {commit}"


def resolve_results(markdown: str, name: str, results: Path = RESULTS, cite: bool = True) -> str:
    """The page with every placeholder replaced by its figure (and, citing, a Sources list at the end)."""
    page = Page(name, markdown, results, cite)
    body = PLACEHOLDER.sub(lambda m: page.resolve(m.group(1)), markdown)
    return body + (page.footer() if cite else "")


# ---------------------------------------------------------------- generated pages and figures


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def claims_markdown() -> str:
    gen = ROOT / "docs" / "gen_claims.py"
    if not gen.exists():
        return "No claims recorded yet: `docs/gen_claims.py` builds this table from the `claims` lists of the committed summaries."
    text = _load(gen, "gen_claims_docs").render()
    return re.sub(r"\A# [^\n]*\n", "", text)  # the page keeps its own title


def on_files(files, config):
    """The figures of docs/gen_figures.py, drawn from the committed summaries into the site."""
    from mkdocs.structure.files import File

    figures = _load(ROOT / "docs" / "gen_figures.py", "gen_figures_docs")
    for name, content in figures.render_all().items():
        uri = f"assets/figures/{name}"
        old = files.get_file_from_path(uri)
        if old is not None:
            files.remove(old)
        files.append(File.generated(config, uri, content=content))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    from mkdocs.exceptions import PluginError

    markdown = MARKER.sub(lambda m: tutorial_markdown(m.group(1)), markdown)
    markdown = CLAIMS.sub(lambda m: claims_markdown(), markdown)
    try:
        return resolve_results(markdown, page.file.src_uri)
    except ResultError as e:
        raise PluginError(str(e)) from None
