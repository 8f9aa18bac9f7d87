"""Canonical TransformerLens hook-point names: parsing, execution order, and the HF module each maps to."""

from __future__ import annotations

import re
from collections.abc import Sequence



class HookNameError(KeyError):
    """An unknown hook point name."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


# ---- hook names ---------------------------------------------------------------------------------

_LAYER_HOOK = re.compile(r"^blocks\.(\d+)\.(.+)$")
# within-block execution order, and the HF module path / side for the nnsight mapping
BLOCK_SITES: dict[str, tuple[int, str, str]] = {
    "hook_resid_pre": (0, "", "input"),
    "hook_attn_out": (1, ".self_attn", "output0"),
    "hook_resid_mid": (2, ".post_attention_layernorm", "input"),
    "mlp.hook_post": (3, ".mlp.down_proj", "input"),
    "hook_mlp_out": (4, ".mlp", "output"),
    "hook_resid_post": (5, "", "output"),
}


def layer_of(hook_name: str) -> int | None:
    """``"blocks.5.hook_resid_post"`` → 5; ``"hook_embed"`` / ``"hook_pos_embed"`` → -1 (surface); else None."""
    m = _LAYER_HOOK.match(hook_name)
    if m:
        return int(m.group(1))
    return -1 if hook_name in ("hook_embed", "hook_pos_embed") else None


def execution_order(hook_name: str) -> tuple[int, int]:
    if hook_name == "hook_embed":
        return (-1, 0)
    if hook_name.startswith("ln_final"):
        return (10**9, 0)
    m = _LAYER_HOOK.match(hook_name)
    if not m:
        return (10**9, 1)
    return (int(m.group(1)), BLOCK_SITES.get(m.group(2), (9, "", ""))[0])


def resid_hooks(n_layers: int, site: str = "hook_resid_post") -> list[str]:
    return [f"blocks.{l}.{site}" for l in range(n_layers)]


def layers_at_fractions(n_layers: int, fractions: Sequence[float]) -> tuple[int, ...]:
    """The layers nearest ``fraction × n_layers`` for each fraction, sorted and distinct: one setting that
    fits every architecture (0.2, 0.4, 0.6 → 6, 12, 18 of SmolLM2's 30 layers; 4, 7, 11 of Gemma 3's 18).
    Not :func:`~reward_circuits.models.loading.relative_depth` (``layer / (n_layers − 1)``, the depth
    axis of cross-model tables): fractions of ``n_layers`` keep the layers these studies always used."""
    return tuple(sorted({min(n_layers - 1, max(0, round(d * n_layers))) for d in fractions}))


def check_layers_exist(layers: Sequence[int], n_layers: int, model: str, option: str,
                       default: str = "fractions of the model's layers") -> None:
    """Refuse layer numbers the model lacks, naming its range, the option to change and what leaving it out
    gives (``default``), before any work. Every study's layer option is checked here."""
    bad = [x for x in layers if not 0 <= x < n_layers]
    if bad:
        raise ValueError(f"{option.lstrip('-').replace('-', '_')} {bad} do not exist: {model} has layers 0..{n_layers - 1}. "
                         f"Pass {option} with layers below {n_layers}, or leave it out for the default ({default}).")



# the HF module layouts the nnsight adapter maps hook names onto: token embedding, the list of
# blocks, and per site the module (suffix of the block's path) and side, where it differs from Llama's
HF_LAYOUTS: dict[str, dict] = {
    "llama": {"embed": "model.embed_tokens", "blocks": "model.layers", "sites": {}},
    # GPT-2 (absolute position embeddings, LayerNorm, Conv1D MLP)
    "gpt2": {"embed": "transformer.wte", "blocks": "transformer.h",
             "sites": {"hook_attn_out": (".attn", "output0"), "hook_resid_mid": (".ln_2", "input"),
                       "mlp.hook_post": (".mlp.c_proj", "input")}},
}


def hf_layout(model_type: str) -> str:
    """The :data:`HF_LAYOUTS` key of an HF ``config.model_type`` (Llama's for every Llama-like family)."""
    return "gpt2" if model_type == "gpt2" else "llama"


def hf_site(hook_name: str, layout: str = "llama") -> tuple[str, str]:
    """(HF module path, 'input' | 'output' | 'output0') of a TransformerLens hook name."""
    lay = HF_LAYOUTS[layout]
    if hook_name == "hook_embed":
        return lay["embed"], "output"
    m = _LAYER_HOOK.match(hook_name)
    if m and m.group(2) in BLOCK_SITES:
        _, suffix, side = BLOCK_SITES[m.group(2)]
        suffix, side = lay["sites"].get(m.group(2), (suffix, side))
        return f"{lay['blocks']}.{m.group(1)}{suffix}", side
    raise HookNameError(f"no HF module mapping for hook {hook_name!r}.")




def hf_module(model, hook_name: str):
    """``(module, side)`` of a TransformerLens hook name in an HF model (or a PEFT model wrapping
    one): the :func:`hf_site` of the model's layout (``config.model_type``), for code that needs
    the HF module itself, e.g. to keep the autograd graph of an activation while training.
    A PEFT-wrapped module (LoRA) is returned as the wrapper, whose input is the site's input."""
    config = getattr(model, "config", None)
    path, side = hf_site(hook_name, hf_layout(getattr(config, "model_type", "") or ""))
    try:
        return model.get_submodule(path), side
    except AttributeError:
        pass
    for name, module in model.named_modules():  # e.g. PeftModel: base_model.model.<path>
        if name.endswith("." + path):
            return module, side
    raise HookNameError(f"{type(model).__name__} has no module {path!r} for hook {hook_name!r} "
                        f"(layouts: {sorted(HF_LAYOUTS)}).")
