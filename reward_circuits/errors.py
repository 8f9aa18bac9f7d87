"""Error types shared across subpackages, and the one format-version check of every loader."""

from __future__ import annotations

import os

UPGRADE_HINT = "Upgrade reward_circuits (`pip install -U reward-circuits`) to read it"


class ProbeError(ValueError):
    """Bad input to a value probe or to the TD / stats helpers it uses (shapes, rewards, indices)."""


class FormatVersionError(ValueError):
    """A saved artefact (store, probe, ...) is in a format version this reward_circuits cannot read.

    Each loader raises a subclass that is also its own error type (``StoreError``, ``ProbeError``),
    so ``except FormatVersionError`` catches the version problems of every artefact.
    """


class ProbeVersionError(ProbeError, FormatVersionError):
    """A saved probe in a format version this reward_circuits does not read."""


def check_format_version(path: str | os.PathLike, found, supported: int, what: str, *,
                         rewrite: str, error: type[FormatVersionError] = FormatVersionError) -> int:
    """``found`` (the version a file says it was written in) if this code reads it, else raise ``error``.

    ``path`` names the file, ``what`` the artefact ("activation store", "ValueProbe"), ``rewrite``
    how to make one this version reads (e.g. "rebuild the store with this version"). A newer
    version asks for an upgrade; an older or malformed one for a rewrite.
    """
    if isinstance(found, bool) or not isinstance(found, int):
        raise error(f"{path} has {what} format version {found!r}, not an integer: the file is damaged or not "
                    f"a {what}. Supported: version {supported}. To fix: {rewrite}.")
    if found > supported:
        raise error(f"{path} was written in {what} format version {found}, newer than this reward_circuits "
                    f"reads (up to {supported}). {UPGRADE_HINT}, or {rewrite}.")
    if found < supported:
        raise error(f"{path} was written in {what} format version {found}, older than this reward_circuits "
                    f"reads (version {supported}). To fix: {rewrite}.")
    return found
