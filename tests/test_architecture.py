"""Guards of the package's architecture: the folder tree is the data flow, one concept per module."""

import ast
import importlib
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parents[1] / "reward_circuits"
SUBPACKAGES = sorted(p.name for p in PKG.iterdir() if (p / "__init__.py").exists())
MAX_LINES = 600


def _modules():
    return sorted(PKG.rglob("*.py"))


def test_no_module_is_over_the_line_budget():
    big = {str(p.relative_to(PKG)): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split them by concept): {big}"


def test_no_private_name_is_imported_across_modules():
    offenders = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("reward_circuits")):
                offenders += [f"{path.relative_to(PKG)}: {a.name}" for a in node.names if a.name.startswith("_")]
    assert not offenders, offenders


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_every_subpackage_declares_its_public_api(name):
    mod = importlib.import_module(f"reward_circuits.{name}")
    assert mod.__doc__ and getattr(mod, "__all__", None), f"reward_circuits.{name} needs a docstring and __all__"
    missing = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert not missing, missing


def test_top_level_api_is_curated():
    import reward_circuits

    assert reward_circuits.__all__ and all(hasattr(reward_circuits, n) for n in reward_circuits.__all__)
    for needed in ("load_model", "ValueProbe", "value_neurons", "zero_ablate", "mean_ablate", "activation_means",
                   "dopamine_neurons", "dopamine_metrics", "build_store", "Store"):
        assert needed in reward_circuits.__all__, needed


def test_analyses_import_nothing_downstream():
    """models → tasks → data → analysis → interventions → pipeline: no module imports a later stage."""
    order = ["models", "tasks", "data", "analysis", "interventions", "pipeline"]
    rank = {n: i for i, n in enumerate(order)}
    bad = []
    for path in _modules():
        rel = path.relative_to(PKG)
        if len(rel.parts) < 2 or rel.parts[0] not in rank:
            continue
        here = rank[rel.parts[0]]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 2 and node.module:
                target = node.module.split(".")[0]
                if target in rank and rank[target] > here:
                    bad.append(f"{rel} imports {node.module}")
    assert not bad, bad
