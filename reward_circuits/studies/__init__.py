"""The studies: one package per command, each of the same shape.

Every study is a package named as its command and holds

- ``config.py``: a validated config dataclass (its CLI options are generated from the fields;
  :class:`reward_circuits.configs.StudyConfig` holds the fields every study shares),
- ``run(config) -> Result``: computes and writes nothing but its own artefacts,
- a typed ``Result`` with ``to_section(out_dir) -> Section`` and ``to_dict()``,
- ``commands.py``: ``register(subparsers)``, where the command assembles the :class:`~reward_circuits.report.Report`.

The studies are siblings: none imports another; what two of them share lives in a layer below
(``analysis/``, ``interventions/``, ``report/``...).
"""

#: command name(s) → the study package that registers them (``reward_circuits.cli`` imports ``<package>.commands``)
STUDY_PACKAGES = {
    "run": "reward_circuits.studies.run",  # also ``probe`` and ``architectures``
    "sae-td": "reward_circuits.studies.sae_td",
    "irm": "reward_circuits.studies.irm",
    "yfpo": "reward_circuits.studies.yfpo",
    "applications": "reward_circuits.studies.applications",  # also ``compare``
    "calibrate": "reward_circuits.studies.calibrate",
}

__all__ = ["STUDY_PACKAGES"]
