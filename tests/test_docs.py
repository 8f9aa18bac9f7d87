"""The documentation site: builds with `mkdocs build --strict`, shows every tutorial, and its page of
rejected inputs equals what the API raises today (docs/gen_errors.py)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site, built once with `mkdocs build --strict` (any warning fails the build)."""
    pytest.importorskip("mkdocs", reason="docs extra not installed: pip install -e '.[docs]' (scripts/test.sh does)")
    site = tmp_path_factory.mktemp("docs") / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return site


def test_site_builds_strictly(site):
    # the pages a reader needs exist, with their content rendered
    api = (site / "api" / "interventions" / "index.html").read_text()
    assert "zero_ablate" in api and "PositionScope" in api  # docstrings rendered, not just a heading
    errors = (site / "errors" / "index.html").read_text()
    assert errors.count("<tr>") > 50
    for md in (ROOT / "docs" / "tutorials").glob("*.md"):
        if md.stem == "index":
            continue
        page = (site / "tutorials" / md.stem / "index.html").read_text()
        assert "language-python" in page or "highlight" in page, md  # the tutorial's code was embedded
    for png in re.findall(r"\(\.\./assets/figures/([\w.]+\.png)\)", "".join(p.read_text() for p in (ROOT / "docs" / "analyses").glob("*.md"))):
        assert (site / "assets" / "figures" / png).stat().st_size > 5000, png


def test_site_pages_render_in_a_browser(site, tmp_path):
    """A reader's view of a few pages: no broken image, empty table or console error (offline)."""
    check = _load(ROOT / "scripts" / "check_report.py", "check_report_docs")
    if check.find_chromium() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    for page in ("analyses/value", "analyses/report", "errors", "tutorials/compose-hooks"):
        r = check.render_report(site / page / "index.html", tmp_path / (page.replace("/", "_") + ".png"))
        assert not r.problems, (page, r.problems)
        assert r.facts["text_length"] > 1000, page


def test_every_tutorial_has_a_page_in_the_nav():
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    flat = re.findall(r"tutorials/[\w-]+\.md", str(nav))
    embedded = {}
    for md in flat:
        m = re.search(r"<!--\s*tutorial:\s*(\S+)\s*-->", (ROOT / "docs" / md).read_text())
        if m:
            embedded[m.group(1)] = md
    assert TUTORIALS, "no tutorials found"
    missing = [t.name for t in TUTORIALS if f"tutorials/{t.name}" not in embedded]
    assert not missing, f"tutorials without a docs page (add docs/tutorials/<name>.md with <!-- tutorial: tutorials/NAME.py --> and list it in mkdocs.yml): {missing}"


def test_api_reference_covers_every_subpackage():
    """One API page per subpackage that exists (new subpackages need their page: docs/api/<name>.md)."""
    pages = {p.stem for p in (ROOT / "docs" / "api").glob("*.md")}
    subpackages = ({p.parent.name for p in (ROOT / "reward_circuits").glob("*/__init__.py")}
                   | {p.parent.name for p in (ROOT / "reward_circuits" / "studies").glob("*/__init__.py")})
    assert subpackages <= pages, (f"subpackages without an API page: {sorted(subpackages - pages)}; add "
                                  "docs/api/<name>.md holding `::: reward_circuits.<name>` and list it in mkdocs.yml's nav")
    nav = str(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    assert all(f"api/{p}.md" in nav for p in pages), f"API pages missing from mkdocs.yml's nav: {sorted(p for p in pages if f'api/{p}.md' not in nav)}"
    for page in pages:
        assert any((ROOT / "reward_circuits" / where / page / "__init__.py").exists() for where in ("", "studies")), \
            f"docs/api/{page}.md documents a missing subpackage"


def test_rejected_inputs_page_is_current():
    gen = _load(ROOT / "docs" / "gen_errors.py", "gen_errors")
    fresh = gen.render()
    committed = (ROOT / "docs" / "errors.md").read_text()
    assert committed == fresh, ("docs/errors.md differs from what the API raises today: "
                                "run `PYTHONPATH=. python docs/gen_errors.py` and commit the page.")
    # it lists real rejections: each row names an exception type and a message
    rows = [ln for ln in fresh.splitlines() if ln.startswith("| ") and "**" in ln]
    assert len(rows) >= 80


def test_rejected_inputs_page_would_catch_a_changed_message(monkeypatch):
    """The page check can fail: a changed message makes the rendered page differ."""
    gen = _load(ROOT / "docs" / "gen_errors.py", "gen_errors_broken")
    from reward_circuits.models import base

    original = base.GenerationConfig.__post_init__

    def changed(self):
        if self.max_new_tokens < 1:
            raise ValueError("bad")
        original(self)

    models = [c for c in gen.CASES if c[0] == "Models"]
    before = gen.render(models)
    monkeypatch.setattr(base.GenerationConfig, "__post_init__", changed)
    after = gen.render(models)
    assert before != after and "**ValueError**: bad |" in after
