"""Options of a function with many settings: one dataclass, given to the function as its fields.

A function with more settings than a reader can hold takes ``*args, **options`` and resolves them with
:func:`options_of` into a dataclass of defaults. Calls keep working as before: by keyword (``seed=1``), in
the old positional order, or as one instance (``options=AblationOptions(seed=1)``, with keywords on top).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence, TypeVar

T = TypeVar("T")


def options_of(cls: type[T], args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, *, where: str,
               order: Sequence[str] | None = None, names: Sequence[str] | None = None) -> T:
    """The ``cls`` instance for a call of ``where`` with extra positional ``args`` and keyword ``kwargs``.

    ``order``: the fields that may be given by position, in that order (default: the dataclass's
    non-keyword-only fields); ``names``: the fields this function accepts (default: all). An
    ``options=`` keyword gives a ``cls`` instance, updated with any other option given. Unknown names,
    too many positional values or a value given twice raise ``TypeError``, as a plain signature would.
    """
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = [f.name for f in fields] if names is None else list(names)
    order = [f.name for f in fields if not f.kw_only and f.name in names] if order is None else list(order)
    if len(args) > len(order):
        raise TypeError(f"{where}() takes at most {len(order)} positional options ({', '.join(order)}), "
                        f"got {len(args)}.")
    given = dict(zip(order, args))
    base = None
    for key, value in (kwargs or {}).items():
        if key == "options":
            base = value
        elif key not in names:
            raise TypeError(f"{where}() got an unexpected keyword argument {key!r}; its options are "
                            f"{', '.join(names)}.")
        elif key in given:
            raise TypeError(f"{where}() got multiple values for argument {key!r}.")
        else:
            given[key] = value
    if base is None:
        return cls(**given)
    if not isinstance(base, cls):
        raise TypeError(f"{where}(options=...) takes a {cls.__name__}, got {type(base).__name__}.")
    return dataclasses.replace(base, **given) if given else base
