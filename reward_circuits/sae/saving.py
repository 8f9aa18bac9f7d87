"""Save and load SAEs in the sae-lens format (``sae_weights.safetensors`` + ``cfg.json``).

:func:`save_sae` writes the directory atomically (a temporary sibling directory renamed into
place), so a crash never leaves half an SAE. :func:`load_sae` is ``SAE.load_from_disk``; a saved
directory is also what ``SAE.from_pretrained(repo_id, folder)`` reads once it sits in a Hugging
Face repo (or in the local hub cache), so users can share SAEs trained here.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from packaging.version import InvalidVersion, Version

from ..errors import FormatVersionError

__all__ = ["load_sae", "save_sae"]


def save_sae(sae, path: str | os.PathLike) -> Path:
    """Write ``sae`` (an inference or training sae-lens SAE) to directory ``path``; returns it.

    A training SAE is saved as its inference version (what ``load_sae`` gives back). An existing
    directory at ``path`` is replaced only once the new one is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        if hasattr(sae, "save_inference_model"):
            sae.save_inference_model(tmp)
        else:
            sae.save_model(tmp)
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def load_sae(path: str | os.PathLike, device: str = "cpu"):
    """``SAE.load_from_disk(path)``: the inference SAE saved by :func:`save_sae` (or any sae-lens SAE dir).

    An SAE saved by a newer sae-lens major version than the installed one, or one the installed
    sae-lens fails to read while the file is from a newer version, raises
    :class:`~reward_circuits.errors.FormatVersionError` naming both versions and the upgrade.
    """
    import sae_lens
    from sae_lens import SAE

    path = Path(path)
    cfg_path = path / "cfg.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"no sae-lens SAE at {path} (no cfg.json): save one with save_sae(sae, path).")
    try:
        saved = json.loads(cfg_path.read_text(encoding="utf-8")).get("metadata", {}).get("sae_lens_version")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise ValueError(f"{cfg_path} is truncated or not an sae-lens config ({e}): save the SAE again with "
                         "save_sae(sae, path).") from None
    installed = sae_lens.__version__
    newer = _is_newer(saved, installed)
    if newer and Version(str(saved)).major > Version(installed).major:
        raise FormatVersionError(_newer_sae_message(cfg_path, saved, installed))
    try:
        return SAE.load_from_disk(path, device=device).eval()
    except Exception as e:
        if newer:
            raise FormatVersionError(f"{_newer_sae_message(cfg_path, saved, installed)} (sae-lens said: {e})") from e
        raise


def _is_newer(saved, installed: str) -> bool:
    try:
        return saved is not None and Version(str(saved)) > Version(installed)
    except InvalidVersion:
        return False


def _newer_sae_message(cfg_path: Path, saved, installed: str) -> str:
    return (f"{cfg_path} was saved by sae-lens {saved}, newer than the installed sae-lens {installed}, which "
            "cannot read it. Upgrade reward_circuits and sae-lens (`pip install -U reward-circuits sae-lens`) "
            "to read it, or save the SAE again with this version.")
