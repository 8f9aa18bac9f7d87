# ---
# jupyter:
#   jupytext:
#     formats: py:percent,ipynb
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Compose our ablation hooks with your own circuit analysis (TransformerLens)
#
# Every intervention in `reward_circuits` is a plain TransformerLens hook function
# `fn(activation, hook) -> activation`. It goes into `run_with_hooks`, `model.hooks(...)` and
# `run_with_cache` next to yours, in any order, at the same or another hook point, and is removed
# with yours. This tutorial
#
# 1. runs a hook of yours and ours at the *same* hook point in both orders and shows what each sees;
# 2. shows two edits that commute (disjoint dimensions) and two that do not (overlapping ones);
# 3. runs your own circuit analysis, activation patching of the residual stream on a
#    clean/corrupted arithmetic pair, with and without our value-neuron ablation in the same run.
#
# Runs on the packaged model in about a minute; `RC_TUTORIAL_SMALL=1` patches fewer layers.

# %%
import os

import torch

from reward_circuits import NeuronSet, load_model, zero_ablate
from reward_circuits.interventions import scale

SMALL = os.environ.get("RC_TUTORIAL_SMALL") == "1"
torch.set_num_threads(int(os.environ.get("RC_TUTORIAL_THREADS", "1")))
torch.set_grad_enabled(False)  # inference only

adapter = load_model("default", backend="transformer_lens")
model = adapter.model  # the HookedTransformer itself: everything below is plain TransformerLens
print(type(model).__name__, model.cfg.n_layers, "layers, d_model", model.cfg.d_model)

# %% [markdown]
# ## Value neurons
# Load the set saved by the first tutorial (`NeuronSet.load("value_neurons.json")`, pointed to by
# `RC_VALUE_NEURONS`), or use a stand-in set of six dimensions so that this tutorial runs on its
# own. A `NeuronSet` knows its hook point and width; our hook refuses to run anywhere else.

# %%
path = os.environ.get("RC_VALUE_NEURONS")
if path:
    neurons = NeuronSet.load(path)
else:
    neurons = NeuronSet("blocks.20.hook_resid_post", indices=[11, 70, 155, 300, 421, 512], d=model.cfg.d_model,
                        kind="value", provenance={"note": "stand-in: run tutorial 01 for real value neurons"})
H = neurons.hook_name
ours = zero_ablate(neurons)
print(H, neurons.indices, ours)

prompt = adapter.chat_prompt([{"role": "user", "content": "What is 3 + 4?"}]) + "3 + 4 = "
tokens = model.to_tokens(prompt, prepend_bos=False)

# %% [markdown]
# ## 1. Your hook and ours at the same hook point, both orders
# TransformerLens runs the hooks of one hook point in the order they were added, each on the
# previous one's output. A hook that returns `None` only observes.

# %%
seen = {}


def record(tag):
    def hook_fn(activation, hook):  # the second parameter must be called `hook`
        seen[tag] = activation[0, -1, neurons.indices].clone()
    return hook_fn


model.run_with_hooks(tokens, fwd_hooks=[(H, record("yours first")), (H, ours)])
model.run_with_hooks(tokens, fwd_hooks=[(H, ours), (H, record("ours first"))])
print("your hook before ours sees", seen["yours first"])
print("your hook after ours sees ", seen["ours first"])
assert seen["yours first"].abs().sum() > 0 and torch.all(seen["ours first"] == 0)
assert not model.hook_dict[H].fwd_hooks  # both removed after each call

# %% [markdown]
# ## 2. Edits that commute, and edits that do not
# Your edit doubles dimensions 0–9; ours zeroes the value neurons. Disjoint dimensions: the order
# does not matter. If your edit touches a value neuron, the later hook wins there.

# %%
yours = scale(list(range(10)), 2.0)  # or any function of your own: def my_edit(act, hook): ...
a = model.run_with_hooks(tokens, fwd_hooks=[(H, yours), (H, ours)])
b = model.run_with_hooks(tokens, fwd_hooks=[(H, ours), (H, yours)])
print("disjoint edits, max |logit difference| between orders:", float((a - b).abs().max()))
assert torch.allclose(a, b)


def double_value_neurons(activation, hook):
    out = activation.clone()
    out[..., neurons.indices] *= 2.0
    return out


a = model.run_with_hooks(tokens, fwd_hooks=[(H, double_value_neurons), (H, ours)])  # zeroed last
b = model.run_with_hooks(tokens, fwd_hooks=[(H, ours), (H, double_value_neurons)])  # 2 × 0 = 0
c = model.run_with_hooks(tokens, fwd_hooks=[(H, ours)])
print("overlapping edits: both orders end at zero here:", torch.allclose(a, c), torch.allclose(b, c))

# %% [markdown]
# ## 3. Your activation patching, with our ablation in the same run
# Clean: "3 + 4 = ", corrupted: "3 + 2 = " (same length). Metric: logit('7') − logit('5') at the
# last position, normalised so that clean = 1 and corrupted = 0. Your patching hook writes the
# clean residual stream of one layer, at the last position, into the corrupted run: the curve
# shows from which layer on the answer is carried at that position. Ours ablates the value
# neurons in every run (clean cache included, via `model.hooks`).

# %%
corrupt = model.to_tokens(prompt.replace("3 + 4", "3 + 2"), prepend_bos=False)
assert corrupt.shape == tokens.shape
seven, five = model.to_single_token("7"), model.to_single_token("5")


def logit_diff(logits):
    return float(logits[0, -1, seven] - logits[0, -1, five])


def patching_curve(layers, extra_hooks=()):
    with model.hooks(fwd_hooks=list(extra_hooks)):  # our ablation, if any, in every run below
        names = [f"blocks.{l}.hook_resid_post" for l in layers]
        clean_logits, clean_cache = model.run_with_cache(tokens, names_filter=names)
        corrupt_logits = model(corrupt)
        lo, hi = logit_diff(corrupt_logits), logit_diff(clean_logits)
        curve = {}
        for l, name in zip(layers, names):
            def patch(activation, hook, name=name):  # your own hook: the clean last position at this layer
                out = activation.clone()
                out[:, -1] = clean_cache[name][:, -1]
                return out
            curve[l] = (logit_diff(model.run_with_hooks(corrupt, fwd_hooks=[(name, patch)])) - lo) / (hi - lo)
    return hi, lo, curve


layers = [0, 10, 20, 29] if SMALL else list(range(0, model.cfg.n_layers, 2)) + [model.cfg.n_layers - 1]
plain = patching_curve(layers)
ablated = patching_curve(layers, extra_hooks=[(H, ours)])
print(f"clean logit diff {plain[0]:.2f}, corrupted {plain[1]:.2f}; with value neurons ablated {ablated[0]:.2f}, {ablated[1]:.2f}")
print("layer  patched (plain)  patched (value neurons ablated)")
for l in layers:
    print(f"{l:5d}  {plain[2][l]:15.2f}  {ablated[2][l]:31.2f}")

# %% [markdown]
# `adapter.forward(batch, fwd_hooks=...)` and `adapter.generate(prompts, fwd_hooks=...)` take the
# same list of `(name, fn)` pairs, so the composition above also holds during generation, and on
# the nnsight backend (next tutorial).
