"""Every artefact we write with a format version refuses, clearly, a version this code cannot read
(issue 15, part C): the activation store (reader and resuming writer), a saved ``ValueProbe``, and an
SAE saved by a newer sae-lens. The message names the file, the found and the supported versions,
and the fix (upgrade reward_circuits, ``pip install -U``), and every such error is a
:class:`~reward_circuits.errors.FormatVersionError` as well as the loader's own error type.

Seen failing: the probe's newer-format message (before ``errors.check_format_version``) said
"probe format 2 not supported (expected 1)" with no fix and no file name; ``load_sae`` with the
version check removed handed back sae-lens' raw error (or, for a readable file, loaded it silently).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from reward_circuits.errors import FormatVersionError, ProbeError, check_format_version

pytestmark = pytest.mark.usefixtures("one_thread")


def _store(path, n=12, d=4):
    from reward_circuits.data.store import write_store_from_arrays

    g = torch.Generator().manual_seed(0)
    acts = {"h": [torch.randn(3, d, generator=g) for _ in range(n)]}
    return write_store_from_arrays(path, acts, [float(i % 2) for i in range(n)])


def _assert_names_versions_and_fix(msg: str, file_name: str, found, supported) -> None:
    assert file_name in msg, f"file not named: {msg!r}"
    assert f"version {found}" in msg and "newer" in msg, f"found version not named: {msg!r}"
    assert str(supported) in msg.split("newer", 1)[1], f"supported version not named: {msg!r}"
    assert re.search(r"[Uu]pgrade reward_circuits", msg) and "pip install -U" in msg, f"fix not named: {msg!r}"


def _bump(path, key, value):
    meta = json.loads(path.read_text())
    meta[key] = value
    path.write_text(json.dumps(meta))


def test_store_newer_format_names_file_versions_and_upgrade(tmp_path):
    from reward_circuits.data.store import (
        FORMAT_VERSION,
        MANIFEST,
        ActivationStore,
        ActivationStoreWriter,
        StoreError,
    )

    _store(tmp_path / "s")
    _bump(tmp_path / "s" / MANIFEST, "format_version", FORMAT_VERSION + 1)
    for open_it in (lambda: ActivationStore(tmp_path / "s"),
                    lambda: ActivationStoreWriter(tmp_path / "s", ["h"], model="arrays")):
        with pytest.raises(StoreError) as ei:
            open_it()
        assert isinstance(ei.value, FormatVersionError)
        _assert_names_versions_and_fix(str(ei.value), str(tmp_path / "s" / MANIFEST), FORMAT_VERSION + 1, FORMAT_VERSION)


def test_probe_newer_format_names_file_versions_and_upgrade(tmp_path):
    from reward_circuits.analysis.probes import (
        PROBE_FORMAT_VERSION,
        ValueProbe,
        ValueProbeConfig,
    )

    store = _store(tmp_path / "s")
    ValueProbe(ValueProbeConfig(epochs=1)).fit(store, ["h"]).save(tmp_path / "p")
    cfg = tmp_path / "p" / "value_probe.json"
    _bump(cfg, "format_version", PROBE_FORMAT_VERSION + 1)
    with pytest.raises(ProbeError) as ei:
        ValueProbe.load(tmp_path / "p")
    assert isinstance(ei.value, FormatVersionError)
    _assert_names_versions_and_fix(str(ei.value), str(cfg), PROBE_FORMAT_VERSION + 1, PROBE_FORMAT_VERSION)


@pytest.mark.parametrize("found, words", [(0, "older"), ("1", "not an integer"), (None, "not an integer"), (True, "not an integer")])
def test_older_or_malformed_versions_ask_for_a_rewrite(found, words):
    with pytest.raises(FormatVersionError) as ei:
        check_format_version("x/manifest.json", found, 1, "activation store", rewrite="rebuild the store")
    msg = str(ei.value)
    assert "x/manifest.json" in msg and words in msg and "rebuild the store" in msg and "version 1" in msg, msg
    assert check_format_version("x", 1, 1, "thing", rewrite="-") == 1


# ---- SAEs (sae-lens format: its cfg.json records the sae-lens version that saved it) -----------------

@pytest.fixture
def saved_sae(tmp_path):
    from sae_lens import StandardSAE, StandardSAEConfig

    from reward_circuits.sae import save_sae

    torch.manual_seed(0)
    sae = StandardSAE(StandardSAEConfig(d_in=4, d_sae=8))
    return sae, save_sae(sae, tmp_path / "sae")


def _set_sae_cfg(path, version=None, **fields):
    cfg = json.loads((path / "cfg.json").read_text())
    if version is not None:
        cfg["metadata"]["sae_lens_version"] = version
    cfg.update(fields)
    (path / "cfg.json").write_text(json.dumps(cfg))


def test_sae_from_a_newer_sae_lens_major_version_fails_clearly(saved_sae):
    import sae_lens

    from reward_circuits.sae import load_sae

    _, path = saved_sae
    _set_sae_cfg(path, "99.0.0")
    with pytest.raises(FormatVersionError) as ei:
        load_sae(path)
    msg = str(ei.value)
    assert str(path / "cfg.json") in msg and "99.0.0" in msg and sae_lens.__version__ in msg, msg
    assert "Upgrade reward_circuits" in msg and "pip install -U" in msg and "sae-lens" in msg, msg


def test_sae_from_a_newer_minor_version_loads_when_readable_and_fails_clearly_when_not(saved_sae):
    from reward_circuits.sae import load_sae

    sae, path = saved_sae
    major, minor = map(int, __import__("sae_lens").__version__.split(".")[:2])
    _set_sae_cfg(path, f"{major}.{minor + 1}.0")
    again = load_sae(path)
    assert torch.equal(again.W_enc, sae.W_enc.detach())
    _set_sae_cfg(path, architecture="a_future_architecture")
    with pytest.raises(FormatVersionError, match=rf"sae-lens {major}\.{minor + 1}\.0, newer.*Upgrade"):
        load_sae(path)


def test_an_sae_the_installed_sae_lens_cannot_read_for_another_reason_is_not_called_a_version_problem(saved_sae):
    from reward_circuits.sae import load_sae

    _, path = saved_sae
    _set_sae_cfg(path, architecture="a_future_architecture")
    with pytest.raises(Exception) as ei:
        load_sae(path)
    assert not isinstance(ei.value, FormatVersionError)


def test_the_version_errors_are_what_the_loaders_document():
    from reward_circuits.data.store import StoreError, StoreVersionError
    from reward_circuits.errors import ProbeVersionError

    assert issubclass(StoreVersionError, StoreError) and issubclass(StoreVersionError, FormatVersionError)
    assert issubclass(ProbeVersionError, ProbeError) and issubclass(ProbeVersionError, FormatVersionError)
    assert np.all([issubclass(e, ValueError) for e in (FormatVersionError, StoreVersionError, ProbeVersionError)])
