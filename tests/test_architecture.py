"""Guards of the package's architecture: the folder tree is the data flow, one concept per module."""

import ast
import importlib
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parents[1] / "reward_circuits"
SUBPACKAGES = sorted([p.name for p in PKG.iterdir() if (p / "__init__.py").exists()]
                     + [f"studies.{p.name}" for p in (PKG / "studies").iterdir() if (p / "__init__.py").exists()])


def _modules():
    return sorted(PKG.rglob("*.py"))


# Readable units (issue 26): no function over ~80 lines or with more than 8 parameters (a config
# object instead). Modules are split by concept, not by a line budget. The functions below predate
# the rule: each may not grow, and is removed from here when it is split. Keyed by function name,
# so a module move does not trip it.
MAX_FUNCTION_LINES, MAX_PARAMS = 80, 8
LONG_FUNCTIONS: dict[str, int] = {}
WIDE_FUNCTIONS: dict[str, int] = {}


def _functions():
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                params = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
                params += ["*"] * bool(a.vararg) + ["**"] * bool(a.kwarg)
                yield f"{path.relative_to(PKG)}:{node.name}", node.name, node.end_lineno - node.lineno + 1, len(params)


def test_no_function_is_long_or_wide():
    long = {where: n for where, name, n, _ in _functions()
            if n > max(MAX_FUNCTION_LINES, LONG_FUNCTIONS.get(name, 0))}
    wide = {where: n for where, name, _, n in _functions() if n > max(MAX_PARAMS, WIDE_FUNCTIONS.get(name, 0))}
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them): {long}"
    assert not wide, f"functions with more than {MAX_PARAMS} parameters (take a config object): {wide}"


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


# The layers, lowest first: a module may import only from its own unit or from a lower layer. A unit is a
# subpackage or a top-level module; units in one layer do not import each other. The package's
# ``__init__`` (the curated top-level API) is the facade and may import anything.
# every study is a package under studies/, named as its command (``studies/run`` is ``reward-circuits run``)
STUDIES = ("studies.sae_td", "studies.irm", "studies.yfpo", "studies.applications", "studies.run", "studies.calibrate")
LAYERS = (
    ("errors", "io", "configs", "reprs", "options"),  # foundation: import nothing of the package
    ("report",),  # what every result renders to; analyses build their own Sections, so it sits below them
    ("models", "neurons"),  # the engine's inputs: a model, and NeuronSet (the dims to touch; a leaf value type)
    ("interventions",),  # the engine (hooks, position scopes, sweeps, scoring): needs only a model and NeuronSet
    ("tasks",),
    ("data",),
    ("analysis",),  # analyses of a store, and the studies that run the engine (causal, confidence)
    ("sae",),
    STUDIES + ("studies",),  # studies/__init__.py: the command → package table, imports nothing
    ("cli",),
)
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
FACADE = "__init__"

# Imports that break the layering or the studies' independence today, each with its reason. Keep it empty;
# an entry is "<unit> -> <unit>" and is allowed only while the code still has that import.
ALLOWED_UPWARD: dict[str, str] = {}
ALLOWED_BETWEEN_STUDIES: dict[str, str] = {}


def _unit_of(path: pathlib.Path) -> str:
    rel = path.relative_to(PKG)
    if rel.parts[0] == "studies" and len(rel.parts) > 2:
        return f"studies.{rel.parts[1]}"  # each study is its own unit
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported_modules(path: pathlib.Path, source: str | None = None) -> list[tuple[int, str]]:
    """Every ``reward_circuits`` module ``path`` imports, as absolute dotted names, with line numbers.

    Covers ``import reward_circuits.x``, ``from reward_circuits.x import y``, ``from reward_circuits import x``
    and relative imports at any level (resolved against the module's own package), wherever they are:
    ``ast.walk`` reaches imports inside functions, methods and ``if TYPE_CHECKING:`` blocks too.
    """
    rel = path.relative_to(PKG.parent).with_suffix("")
    package = list(rel.parts[:-1])  # a module's package; for an __init__.py, the package itself
    found = []
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level - 1 >= len(package):
                    raise AssertionError(f"{rel}:{node.lineno}: relative import climbs above the package")
                base = ".".join(package[: len(package) - (node.level - 1)])
            else:
                base = node.module or ""
                if not base.startswith("reward_circuits"):
                    continue
            module = f"{base}.{node.module}" if node.level and node.module else base
            # ``from <package> import name``: the submodule when name is one, else a name of <package>
            found += [(node.lineno, f"{module}.{a.name}" if _is_module(f"{module}.{a.name}") else module)
                      for a in node.names]
    return [(line, m) for line, m in found if m == "reward_circuits" or m.startswith("reward_circuits.")]


def _is_module(dotted: str) -> bool:
    path = PKG.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _target_unit(module: str) -> str:
    """The unit a dotted ``reward_circuits`` name lands in, or the facade for the bare package."""
    parts = module.split(".")
    if len(parts) == 1:
        return FACADE
    if parts[1] == "studies" and len(parts) > 2:
        return f"studies.{parts[2]}"
    if (PKG / parts[1]).is_dir() or (PKG / f"{parts[1]}.py").exists():
        return parts[1]
    return FACADE  # ``from reward_circuits import Report``: a name of the facade


def _cross_unit_imports():
    """``(unit, target_unit, "file:line imports module")`` for every import between two different units."""
    for path in _modules():
        here = _unit_of(path)
        if here == FACADE:
            continue
        for line, module in _imported_modules(path):
            there = _target_unit(module)
            if there != here:
                yield here, there, f"{path.relative_to(PKG)}:{line} imports {module}"


def test_every_unit_has_a_layer():
    units = {_unit_of(p) for p in _modules()} - {FACADE}
    assert units == set(RANK), f"place every subpackage and top-level module in LAYERS: {units ^ set(RANK)}"


def test_the_import_resolver_sees_every_form():
    """The guard below is only as good as its resolver: every import form resolves to the right module."""
    source = (
        "import reward_circuits.studies.run.config\n"
        "from reward_circuits.studies.sae_td import agent\n"
        "from reward_circuits import report\n"
        "from reward_circuits import Report\n"
        "from . import stats\n"
        "from .. import cli\n"
        "from ..sae.hooks import remove_latents\n"
        "def f():\n"
        "    from ..studies.irm import study\n"
        "import numpy\n")
    got = {m for _, m in _imported_modules(PKG / "analysis" / "any_module.py", source)}
    expected = {"reward_circuits.studies.run.config", "reward_circuits.studies.sae_td.agent", "reward_circuits.report",
                "reward_circuits.analysis.stats", "reward_circuits.cli", "reward_circuits.sae.hooks",
                "reward_circuits.studies.irm.study", "reward_circuits"}
    assert got == expected, got ^ expected
    assert {_target_unit(m) for m in got} == {"studies.run", "studies.sae_td", "report", "analysis", "cli", "sae", "studies.irm", FACADE}


def test_no_module_imports_a_later_layer():
    """io/errors/configs → report → models, neurons → interventions → tasks → data → analysis → sae → studies → cli.

    Every import form counts (absolute, relative at any level, inside functions); the facade
    ``reward_circuits/__init__.py`` is exempt, and importing it from inside the package is upward.
    """
    bad, used = [], set()
    for here, there, where in _cross_unit_imports():
        if RANK.get(there, len(LAYERS)) < RANK[here]:  # the facade ranks above everything
            continue
        if RANK.get(there) == RANK[here] and here in STUDIES and there in STUDIES:
            continue  # studies among themselves: test_studies_do_not_import_each_other
        key = f"{here} -> {there}"
        if key in ALLOWED_UPWARD:
            used.add(key)
            continue
        bad.append(where)
    assert not bad, "imports of a later layer, or of another unit of the same layer (move the code down):\n" + "\n".join(bad)
    stale = set(ALLOWED_UPWARD) - used
    assert not stale, f"allow-listed upward imports that no longer exist (remove them): {stale}"


def test_studies_do_not_import_each_other():
    """The studies (run, sae_td, irm, yfpo, applications) are siblings: what two of them share moves down a layer."""
    bad, used = [], set()
    for here, there, where in _cross_unit_imports():
        if here in STUDIES and there in STUDIES:
            key = f"{here} -> {there}"
            if key in ALLOWED_BETWEEN_STUDIES:
                used.add(key)
                continue
            bad.append(where)
    assert not bad, "a study imports another study:\n" + "\n".join(bad)
    stale = set(ALLOWED_BETWEEN_STUDIES) - used
    assert not stale, f"allow-listed imports between studies that no longer exist (remove them): {stale}"
