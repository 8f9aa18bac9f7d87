"""Short reprs: what a notebook shows when it prints a task, a neuron set, a store or a result.

A repr names the object's key facts (hook, count, task, text) in a line or two, never its whole
contents: the helpers here shorten a text or a list to a fixed budget.
"""

from __future__ import annotations

from typing import Any, Iterable

REPR_BUDGET = 300
"""The most characters a repr of this package's objects prints (tests hold them to it)."""


def short_text(text: Any, n: int = 60) -> str:
    """``repr`` of ``text`` cut to its first ``n`` characters (``…`` marks the cut)."""
    s = str(text)
    return repr(s) if len(s) <= n else repr(s[:n]) + "…"


def short_path(path: Any, n: int = 50) -> str:
    """``repr`` of a path cut to its last ``n`` characters (``…`` marks the cut)."""
    s = str(path)
    return repr(s) if len(s) <= n else "…" + repr(s[-n:])


def short_list(items: Iterable[Any], k: int = 4) -> str:
    """``[a, b, c, …]``: the first ``k`` items' reprs, then how many more there are."""
    items = list(items)
    head = ", ".join(repr(x) for x in items[:k])
    if len(items) <= k:
        return f"[{head}]"
    return f"[{head}, … +{len(items) - k}]"


def short_dict(d: dict, k: int = 4, fmt: str = ".3g") -> str:
    """``{'a': 0.5, 'b': 0.25, …}``: the first ``k`` entries (floats formatted by ``fmt``)."""
    def value(v):
        return format(v, fmt) if isinstance(v, float) else repr(v)
    items = list(d.items())
    head = ", ".join(f"{key!r}: {value(v)}" for key, v in items[:k])
    return "{" + head + (f", … +{len(items) - k}" if len(items) > k else "") + "}"


def store_repr(store) -> str:
    """``ActivationStore('…/runs/x/store', model=…, 400 rollouts, 9000 states, hooks=[…], dtype=float16)``."""
    done = "" if store.complete else ", incomplete"
    return (f"{type(store).__name__}({short_path(store.path)}, model={store.model!r}, {len(store)} rollouts, "
            f"{store.n_states} states, hooks={short_list(store.hook_names, 2)}, dtype={store.manifest.get('dtype')}{done})")
