"""Dataclass configs → command-line options, so every CLI is generated from one source of truth.

A config is a dataclass that validates itself in ``__post_init__`` (SAELens style). Give a field a
help text with ``field(default=..., metadata={"help": "..."})``. Supported field types: ``str``,
``int``, ``float``, ``bool`` (a ``--flag`` / ``--no-flag`` pair), ``Literal[...]`` (choices),
``tuple[str, ...]`` / ``tuple[int, ...]`` (comma-separated) and ``X | None``.

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, RunConfig)
    cfg = config_from_args(RunConfig, parser.parse_args())
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Literal, get_args, get_origin


def _strip_optional(tp):
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _csv_parser(item_type):
    def parse(s: str):
        try:
            return tuple(item_type(x.strip()) for x in s.split(",") if x.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {item_type.__name__} values, got {s!r}") from None
    parse.__name__ = f"comma-separated {item_type.__name__}"
    return parse


def check_device(device) -> str:
    """``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``) checked against this machine: a clear
    error naming the fix when it is malformed or its accelerator is absent."""
    import torch

    text = str(device).strip().lower()
    kind, _, index = text.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not (kind == "cuda" and index.isdigit())):
        raise ValueError(f"device {device!r} is not a torch device: use 'cpu', 'cuda', 'cuda:N' (N = GPU index) or 'mps'.")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available on this machine (torch "
                             f"{torch.__version__}, torch.cuda.is_available() is False: no GPU, or a CPU-only "
                             "build of torch). Use --device cpu, or run on a machine with a GPU and a CUDA build of torch.")
        if index and int(index) >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} GPU(s), "
                             f"cuda:0..cuda:{torch.cuda.device_count() - 1}.")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r}: Apple's MPS is not available here. Use --device cpu.")
    return text


def device_argument(text: str) -> str:
    """``check_device`` for argparse: a bad ``--device`` is a usage error with the message above."""
    try:
        return check_device(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_device_argument(parser: argparse.ArgumentParser, help_text: str = "torch device: cpu, cuda, cuda:N") -> None:
    """``--device`` on a command that has no config dataclass (checked at parse time)."""
    parser.add_argument("--device", default="cpu", type=device_argument, help=f"{help_text} (default: cpu)")


EXPLICIT_DEST = "_explicit_options"  # the namespace attribute that lists the options given on the command line


def _given(namespace: argparse.Namespace, dest: str) -> None:
    given = getattr(namespace, EXPLICIT_DEST, None) or set()
    setattr(namespace, EXPLICIT_DEST, given | {dest})


class _StoreGiven(argparse.Action):
    """``store``, remembering that the option was given (a profile must not override it, whatever its value)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        _given(namespace, self.dest)


class _BoolGiven(argparse.BooleanOptionalAction):
    """``--flag`` / ``--no-flag``, remembering that it was given."""

    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, values, option_string)
        _given(namespace, self.dest)


def add_config_arguments(parser: argparse.ArgumentParser, cls, exclude: typing.Iterable[str] = ()) -> None:
    """Add one option per field of the dataclass ``cls`` (``--field-name``), defaults from the class.

    Each option records that it was given (:func:`config_from_args` passes those names as the config's
    ``explicit``), so a profile or ``--quick`` never overrides an option typed with its default value."""
    hints = typing.get_type_hints(cls)
    skip = set(exclude)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init or f.metadata.get("cli") is False:
            continue
        tp, _optional = _strip_optional(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        kw: dict[str, Any] = {"dest": f.name, "default": default, "help": help_text}
        if tp is bool:
            kw["help"] = kw["help"].replace("%", "%%")  # argparse formats help with %
            parser.add_argument(flag, action=_BoolGiven, **kw)
            continue
        if get_origin(tp) is Literal:
            kw["choices"] = list(get_args(tp))
            kw["type"] = type(get_args(tp)[0])
        elif get_origin(tp) is tuple:
            kw["type"] = _csv_parser(get_args(tp)[0])
            if default is not None:
                kw["help"] = f"{help_text} (default: {','.join(map(str, default))})".strip()
                kw.pop("default")
                kw["default"] = default
        elif f.name == "device":
            kw["type"] = device_argument
        elif tp in (int, float, str):
            kw["type"] = tp
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: type {tp!r} has no command-line form.")
        if "default: " not in kw["help"] and "(default" not in help_text:
            kw["help"] = f"{help_text} (default: {default})".strip()
        kw["help"] = kw["help"].replace("%", "%%")  # argparse formats help with %: "1%" alone crashes --help
        parser.add_argument(flag, action=_StoreGiven, **kw)


def config_from_args(cls, args: argparse.Namespace, **overrides):
    """Build ``cls`` from parsed arguments (fields absent from ``args`` keep their defaults); the
    options given on the command line become the config's ``explicit`` (where it has that field)."""
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    values = {n: getattr(args, n) for n in names if hasattr(args, n) and n != "explicit"}
    if "explicit" in names:
        given = set(getattr(args, EXPLICIT_DEST, None) or ()) | set(overrides)
        values["explicit"] = tuple(sorted(given & names))
    values.update(overrides)
    return cls(**values)


def apply_at_defaults(cfg, overrides: dict) -> None:
    """Set each field of ``overrides`` that ``cfg`` still holds at its class default and that was not
    given explicitly (``cfg.explicit``): a profile's or ``--quick``'s sizes, where an option given
    explicitly wins even when it equals the default (``--profile paper --limit 200`` keeps 200)."""
    defaults = {f.name: f.default for f in dataclasses.fields(cfg)}
    explicit = set(getattr(cfg, "explicit", ()) or ())
    for name, value in overrides.items():
        if name not in explicit and getattr(cfg, name) == defaults[name]:
            setattr(cfg, name, value)


BACKENDS = ("transformer_lens", "nnsight")


def check_backend(backend: str) -> None:
    """Refuse an unknown backend with the two names that exist."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: use 'transformer_lens' (a HookedTransformer) or 'nnsight' "
                         "(an nnsight LanguageModel); results agree on both.")


@dataclasses.dataclass
class StudyConfig:
    """The fields every study shares: which model on which backend and device, which seed, where its
    artefacts and report go, and whether it shows progress bars.

    Each study's config inherits it (``class IrmConfig(StudyConfig)``) and adds its own knobs; a
    study redeclares a field to change its default or help text (``out: str = "runs/irm"``), which
    keeps the field's place. A subclass that defines ``__post_init__`` calls ``super().__post_init__()``."""

    model: str = dataclasses.field(default="default", metadata={
        "help": "'default' (packaged SmolLM2-135M-Instruct, offline), a local HF directory or a hub id"})
    backend: Literal["transformer_lens", "nnsight"] = dataclasses.field(default="transformer_lens", metadata={
        "help": "which library runs the model: a TransformerLens HookedTransformer or an nnsight LanguageModel"})
    device: str = dataclasses.field(default="cpu", metadata={"help": "torch device: cpu, cuda, cuda:N or mps"})
    seed: int = dataclasses.field(default=0, metadata={"help": "seed of the study's draws, splits and bootstraps"})
    out: str | None = dataclasses.field(default=None, metadata={"help": "report directory (summary.json, report.html, artefacts)"})
    progress: bool = dataclasses.field(default=True, metadata={"help": "progress bars and stage lines on stderr"})
    explicit: tuple[str, ...] = dataclasses.field(default=(), compare=False, metadata={
        "cli": False, "help": "fields set on purpose, which a profile or --quick never overrides even at their "
        "default value (the CLI fills it with the options given; in Python, name them: explicit=('limit',))"})

    def __post_init__(self):
        self.explicit = tuple(self.explicit)
        check_backend(self.backend)
        self.device = check_device(self.device)
