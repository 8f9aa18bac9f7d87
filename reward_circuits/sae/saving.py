"""Save and load SAEs in the sae-lens format (``sae_weights.safetensors`` + ``cfg.json``).

:func:`save_sae` writes the directory atomically (a temporary sibling directory renamed into
place), so a crash never leaves half an SAE. :func:`load_sae` is ``SAE.load_from_disk``; a saved
directory is also what ``SAE.from_pretrained(repo_id, folder)`` reads once it sits in a Hugging
Face repo (or in the local hub cache), so users can share SAEs trained here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

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
    """``SAE.load_from_disk(path)``: the inference SAE saved by :func:`save_sae` (or any sae-lens SAE dir)."""
    from sae_lens import SAE

    path = Path(path)
    if not (path / "cfg.json").exists():
        raise FileNotFoundError(f"no sae-lens SAE at {path} (no cfg.json): save one with save_sae(sae, path).")
    return SAE.load_from_disk(path, device=device).eval()
