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
# # The same on an HF model with nnsight; big models with `device_map` or NDIF `remote=True`
#
# The nnsight backend wraps an ordinary Hugging Face model in an nnsight `LanguageModel`. Hook
# points keep their TransformerLens names (`blocks.20.hook_resid_post`), and our interventions
# are the same functions `fn(activation, hook)`: the adapter calls them inside its `trace`, and at
# every step of `generate`. You can also call them inside *your own* trace. This tutorial
#
# 1. maps our hook names onto the HF modules nnsight exposes;
# 2. runs your own nnsight trace that reads a layer and applies our ablation in it, and checks it
#    gives the same logits as `adapter.forward(batch, fwd_hooks=...)`;
# 3. generates with the ablation active at every decoding step;
# 4. shows (without running: no network or GPU here) how a big model is loaded with
#    `device_map="auto"` or run on NDIF with `remote=True`.
#
# Runs on the packaged model in about a minute; `RC_TUTORIAL_SMALL=1` generates fewer tokens.

# %%
import os
from types import SimpleNamespace

import torch

from reward_circuits import GenerationConfig, NeuronSet, load_model, zero_ablate
from reward_circuits.models import hf_site

SMALL = os.environ.get("RC_TUTORIAL_SMALL") == "1"
torch.set_num_threads(int(os.environ.get("RC_TUTORIAL_THREADS", "1")))

adapter = load_model("default", backend="nnsight")
lm = adapter.lm  # the nnsight LanguageModel
print(type(lm).__name__, adapter.n_layers, "layers")

# %% [markdown]
# ## 1. Our hook names on HF modules
# `hf_site(name)` gives the module path and whether the hook point is its input or output.

# %%
for name in ["hook_embed", "blocks.20.hook_resid_pre", "blocks.20.hook_attn_out", "blocks.20.mlp.hook_post",
             "blocks.20.hook_resid_post"]:
    print(f"{name:26s} -> {hf_site(name)}")

# %% [markdown]
# ## 2. Your own trace, with our ablation inside it
# Value neurons: `NeuronSet.load(...)` from the first tutorial (`RC_VALUE_NEURONS`), or a stand-in.
# Our hook is a pure function of the activation; inside a trace it edits the layer's output like
# any nnsight intervention. (Under transformers 5 a decoder layer may return a tensor rather than a
# tuple: handle both.)

# %%
path = os.environ.get("RC_VALUE_NEURONS")
neurons = NeuronSet.load(path) if path else NeuronSet(
    "blocks.20.hook_resid_post", indices=[11, 70, 155, 300, 421, 512], d=adapter.d_model, kind="value")
H = neurons.hook_name
ours = zero_ablate(neurons)
module_path, side = hf_site(H)
layer = int(H.split(".")[1])

prompt = adapter.chat_prompt([{"role": "user", "content": "What is 3 + 4?"}]) + "3 + 4 = "
batch = adapter.tokenize([prompt])
inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}

with torch.no_grad(), lm.trace(inputs):
    out = lm.model.layers[layer].output
    hidden = out[0] if isinstance(out, tuple) else out
    before = hidden[0, -1, neurons.indices].save()           # your own read
    edited = ours(hidden, hook=SimpleNamespace(name=H))     # our ablation
    lm.model.layers[layer].output = (edited,) + tuple(out[1:]) if isinstance(out, tuple) else edited
    after = lm.model.layers[layer + 1].input.save()          # what the next layer receives
    my_logits = lm.lm_head.output.save()

print("value neurons before:", before)
print("next layer receives: ", after[0, -1, neurons.indices])
reference = adapter.forward(batch, fwd_hooks=[(H, ours)])
print("max |your trace - adapter.forward| =", float((my_logits - reference).abs().max()))
assert torch.allclose(my_logits, reference, atol=1e-4)
assert torch.all(after[0, -1, neurons.indices] == 0)

# %% [markdown]
# The adapter also speaks TransformerLens on this backend: `run_with_hooks`, `run_with_cache`
# and a `hooks(...)` context take the same `(name, fn)` pairs, strings or token ids.

# %%
tl_style = adapter.run_with_hooks(prompt, fwd_hooks=[(H, ours)])
_, cache = adapter.run_with_cache(prompt, names_filter=[H])
print("run_with_hooks on nnsight == your trace:", torch.allclose(tl_style, my_logits, atol=1e-4))
print("cached", H, tuple(cache[H].shape))

# %% [markdown]
# ## 3. Generation with the ablation at every step
# `adapter.generate` runs the hooks inside nnsight's `generate` at every decoding step
# (`tracer.iter`), so the ablation is not lost after the first token.

# %%
gen = GenerationConfig(max_new_tokens=6 if SMALL else 24, progress=False)
q = [adapter.chat_prompt([{"role": "user", "content": "What is 3 + 4?"}])]
plain = adapter.generate(q, gen)[0].text
ablated = adapter.generate(q, gen, fwd_hooks=[(H, ours)])[0].text
print("plain:  ", repr(plain))
print("ablated:", repr(ablated))

# %% [markdown]
# ## 4. Big models (shown, not executed here)
#
# **One machine, several GPUs (or GPU + CPU):** `load_model` passes HF keyword arguments through,
# so accelerate's `device_map="auto"` places the layers; everything above works unchanged.
#
# **NDIF (`remote=True`):** the trace is sent to NDIF's servers, which hold the weights; your
# machine only needs the config and tokenizer. Build the `LanguageModel` yourself, *without*
# loading weights, and wrap it: `load_model(..., remote=True)` would first load every weight
# locally. Set your NDIF key once with `nnsight.CONFIG.set_default_api_key(...)`. Hook functions
# run on the server, so keep them to tensor operations (as ours are).

# %%
RUN_BIG = os.environ.get("RC_TUTORIAL_BIG") == "1"  # needs a network (and a GPU or an NDIF key)
if RUN_BIG:
    big = load_model("meta-llama/Llama-3.1-8B-Instruct", backend="nnsight",
                     device_map="auto", dtype=torch.bfloat16)
    print(big.n_layers, big.device)

    from nnsight import LanguageModel

    from reward_circuits.models import NNsightAdapter
    from reward_circuits.models.loading import prepare_tokenizer

    remote_lm = LanguageModel("meta-llama/Llama-3.1-70B-Instruct")  # meta weights: nothing downloaded
    prepare_tokenizer(remote_lm.tokenizer)
    remote = NNsightAdapter(remote_lm, name="llama-3.1-70b", remote=True)
    hook = f"blocks.{remote.n_layers // 2}.hook_resid_post"
    acts = remote.capture(remote.tokenize(["What is 3 + 4?"]), [hook])  # runs on NDIF
    logits = remote.forward(remote.tokenize(["What is 3 + 4?"]), fwd_hooks=[(hook, zero_ablate([1, 2, 3]))])
