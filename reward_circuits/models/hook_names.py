"""Canonical TransformerLens hook-point names: parsing, execution order, and the HF module each maps to."""

from __future__ import annotations

import re



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



def hf_site(hook_name: str, module_prefix: str = "model") -> tuple[str, str]:
    """(HF module path, 'input' | 'output' | 'output0') of a TransformerLens hook name."""
    if hook_name == "hook_embed":
        return f"{module_prefix}.embed_tokens", "output"
    m = _LAYER_HOOK.match(hook_name)
    if m and m.group(2) in BLOCK_SITES:
        _, suffix, side = BLOCK_SITES[m.group(2)]
        return f"{module_prefix}.layers.{m.group(1)}{suffix}", side
    raise HookNameError(f"no HF module mapping for hook {hook_name!r}.")


