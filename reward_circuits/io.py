"""Atomic file writes: a reader never sees a half-written file, a crash never loses the old one."""

from __future__ import annotations

import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    On an exception the temporary file is removed and ``path`` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it is swapped onto ``path`` (a reader sees the
    old directory or the new one, never half of one); on an exception it is removed."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old / "d")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# what atomic_path / atomic_dir leave when killed: ".NAME.XXXXXXXX.tmp" files, ".NAME.XXXXXXXX" and
# ".NAME.old.XXXXXXXX" directories (XXXXXXXX: tempfile's 8 random characters)
_ATOMIC_LEFTOVER = re.compile(r"\..+\.(old\.)?[a-z0-9_]{8}(\.tmp)?")
# what safetensors' own writer leaves when killed: it writes ".tmpXXXXXX" (Rust's tempfile crate: six
# alphanumerics) beside its target, then renames it onto the target
SAFETENSORS_TEMP = re.compile(r"\.tmp[A-Za-z0-9]{6}")


def remove_atomic_leftovers(root: str | os.PathLike) -> list[Path]:
    """Delete the temporaries that writers killed inside :func:`atomic_path` / :func:`atomic_dir`
    left anywhere under ``root`` (a rerun's first step); returns what was removed.

    Only names of that exact shape are touched; call it when no other writer is using ``root``.
    """
    import shutil

    root = Path(root)
    removed = []
    for dirpath, dirnames, filenames in os.walk(root) if root.is_dir() else ():
        for name in list(dirnames) + filenames:
            ours = _ATOMIC_LEFTOVER.fullmatch(name) and (name.endswith(".tmp") or name in dirnames)
            if ours or (SAFETENSORS_TEMP.fullmatch(name) and name in filenames):
                p = Path(dirpath) / name
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                removed.append(p)
                if name in dirnames:
                    dirnames.remove(name)
    return removed


def atomic_save_dataset(ds, path: str | os.PathLike, **save_kwargs) -> None:
    """``ds.save_to_disk`` into :func:`atomic_dir`."""
    with atomic_dir(path) as tmp:
        ds.save_to_disk(str(tmp), **save_kwargs)


def atomic_save_pretrained(model, tokenizer, path: str | os.PathLike) -> None:
    """An HF model (safetensors) and its tokenizer saved into :func:`atomic_dir`: a half-written
    directory never looks complete."""
    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def relative_paths(x: Any, run_dir: str | os.PathLike) -> Any:
    """JSON-ready copy in which every absolute filesystem path (a string like ``/work/run/x`` or a
    ``Path``) is written relative to ``run_dir`` (``run_dir`` itself becomes ``"."``), so a committed
    ``summary.json`` names no directory of the machine it ran on. Other strings are kept."""
    base = os.path.abspath(run_dir)
    if isinstance(x, Mapping):
        return {k: relative_paths(v, base) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [relative_paths(v, base) for v in x]
    if isinstance(x, os.PathLike):
        x = os.fspath(x)
    if isinstance(x, str) and _is_absolute_path(x):
        return os.path.relpath(x, base)
    return x


def _is_absolute_path(s: str) -> bool:
    return len(s) > 1 and os.path.isabs(s) and not any(c.isspace() for c in s) and "://" not in s


def nan_to_none(x: Any) -> Any:
    """JSON-ready copy: NaN/inf → None, numpy scalars and arrays → Python values."""
    import math

    import numpy as np

    if isinstance(x, Mapping):
        return {k: nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [nan_to_none(v) for v in x]
    if isinstance(x, np.ndarray):
        return nan_to_none(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")
