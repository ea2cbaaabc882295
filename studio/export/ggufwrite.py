"""A merged model as one GGUF file, written with llama.cpp's own ``gguf`` package: its writer, its tensor
name map, its quantizers. Only the Llama family is supported (Llama, Mistral, Qwen2, SmolLM, the tiny model).

What follows llama.cpp's ``convert_hf_to_gguf.py`` (read, not copied): Llama-style Q/K rows are permuted
for llama.cpp's rotary layout; 1-D tensors (norms, biases) stay float32; a tied ``lm_head`` is left out;
Llama 3.1 rope scaling becomes a ``rope_freqs`` tensor; the tokenizer goes in as ``gpt2`` (byte-level BPE)
vocabulary, merges, token types and special ids, with the chat template the run trained with.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorastudio.export.staging import ExportError
from lorastudio.progress import Progress

ARCHITECTURES = {"llama": "LLAMA", "mistral": "LLAMA", "qwen2": "QWEN2"}
"""transformers ``model_type`` -> gguf ``MODEL_ARCH`` member."""

QUANTS = ("f16", "q8_0", "bf16", "f32", "q5_1", "q5_0", "q4_1", "q4_0")
"""Types gguf-py can write from Python (it dequantizes k-quants and i-quants but cannot make them)."""

_FILE_TYPES = {
    "f32": "ALL_F32",
    "f16": "MOSTLY_F16",
    "bf16": "MOSTLY_BF16",
    "q8_0": "MOSTLY_Q8_0",
    "q5_1": "MOSTLY_Q5_1",
    "q5_0": "MOSTLY_Q5_0",
    "q4_1": "MOSTLY_Q4_1",
    "q4_0": "MOSTLY_Q4_0",
}

SUPPORTED_TEXT = (
    "Llama, Mistral, Qwen2, SmolLM and studio's tiny model (transformers model_type llama, mistral, qwen2)"
)


def check_quant(quant: str) -> str:
    quant = quant.lower()
    if quant not in QUANTS:
        raise ExportError(
            f"--quant {quant}: gguf can write {', '.join(QUANTS)} (k-quants such as q4_k_m need "
            "llama.cpp's llama-quantize on the f16 file)"
        )
    return quant


def check_architecture(config: Any) -> str:
    """The gguf architecture name for a transformers config, or a clear refusal."""
    import gguf

    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise ExportError(
            f"--format gguf: {model_type!r} models are not supported; GGUF export covers "
            f"{SUPPORTED_TEXT}. Export --format merged and convert it with llama.cpp's "
            "convert_hf_to_gguf.py"
        )
    rope = _rope_scaling(config)
    if rope and rope.get("rope_type", rope.get("type")) not in (None, "default", "llama3", "linear"):
        raise ExportError(
            f"--format gguf: rope scaling {rope.get('rope_type')!r} is not supported by studio's "
            "GGUF writer; export --format merged and use convert_hf_to_gguf.py"
        )
    return gguf.MODEL_ARCH_NAMES[getattr(gguf.MODEL_ARCH, ARCHITECTURES[model_type])]


def _rope_scaling(config: Any) -> dict[str, Any] | None:
    rope = getattr(config, "rope_scaling", None) or getattr(config, "rope_parameters", None)
    return dict(rope) if rope else None


def _rope_theta(config: Any) -> float:
    theta = getattr(config, "rope_theta", None)
    if theta is None:
        theta = (_rope_scaling(config) or {}).get("rope_theta", 10000.0)
    return float(theta)


def _head_dim(config: Any) -> int:
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


def permute_qk(weights: Any, n_head: int, n_head_kv: int | None = None) -> Any:
    """HF's rotary half-split layout -> llama.cpp's interleaved one (transformers' GGUF loader undoes it)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def llama3_rope_factors(config: Any) -> Any:
    """Per-frequency scale factors for Llama 3.1-style rope scaling, as llama.cpp reads ``rope_freqs``."""
    import numpy as np

    rope = _rope_scaling(config) or {}
    factor = rope.get("factor", 8.0)
    low, high = rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old_context = rope.get("original_max_position_embeddings", 8192)
    dim = _head_dim(config)
    freqs = 1.0 / (_rope_theta(config) ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    low_wavelen, high_wavelen = old_context / low, old_context / high
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old_context / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


# -- tokenizer --------------------------------------------------------------------------------------
_LLAMA3_REGEX_START = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
_QWEN2_REGEX_START = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"


def _pre_tokenizer_name(pre: dict[str, Any] | None) -> str:
    """llama.cpp's name for the way text is split before BPE (``tokenizer.ggml.pre``)."""
    if not pre:
        return "default"
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [p.get("type") for p in parts]
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits"):
        return "smollm"
    for part in parts:
        if part.get("type") == "Split":
            pattern = (part.get("pattern") or {}).get("Regex", "")
            if pattern.startswith(_LLAMA3_REGEX_START):
                return "llama-bpe"
            if pattern.startswith(_QWEN2_REGEX_START):
                return "qwen2"
    return "default"


@dataclass(frozen=True)
class GGUFVocab:
    tokens: list[str]
    types: list[int]
    merges: list[str]
    pre: str


def gguf_vocab(tokenizer: Any, n_vocab: int) -> GGUFVocab:
    """Tokens by id (padded to the embedding rows), their llama.cpp types, merges and pre-tokenizer name."""
    from gguf import TokenType

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model = spec.get("model", {})
    decoder = spec.get("decoder") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback") or decoder.get("type") != "ByteLevel":
        raise ExportError(
            "--format gguf: studio writes byte-level BPE vocabularies (Llama 3, Qwen2, SmolLM, tiny); "
            "this tokenizer is sentencepiece-style (Llama 2, Mistral 7B v0.1). Export --format merged "
            "and convert it with llama.cpp's convert_hf_to_gguf.py"
        )
    added = {t.content: t for t in tokenizer.added_tokens_decoder.values()}
    by_id = {i: tok for tok, i in tokenizer.get_vocab().items()}
    tokens, types = [], []
    for i in range(n_vocab):
        tok = by_id.get(i)
        if tok is None:
            tokens.append(f"[PAD{i}]")
            types.append(int(TokenType.UNUSED))
        elif tok in added:
            tokens.append(tok)
            types.append(int(TokenType.CONTROL if added[tok].special else TokenType.USER_DEFINED))
        else:
            tokens.append(tok)
            types.append(int(TokenType.NORMAL))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return GGUFVocab(tokens, types, merges, _pre_tokenizer_name(spec.get("pre_tokenizer")))


def _adds(tokenizer: Any) -> tuple[bool, bool]:
    ids = tokenizer("a")["input_ids"]
    return (
        bool(ids) and ids[0] == tokenizer.bos_token_id and tokenizer.bos_token_id is not None,
        bool(ids) and ids[-1] == tokenizer.eos_token_id and tokenizer.eos_token_id is not None,
    )


# -- sizes ------------------------------------------------------------------------------------------
def tensor_type(name: str, shape: tuple[int, ...], quant: str) -> Any:
    """The GGML type a tensor gets: 1-D stays F32; rows that do not fill whole blocks fall back to F16."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    if len(shape) <= 1 or quant == "f32":
        return GGMLQuantizationType.F32
    qtype = getattr(GGMLQuantizationType, quant.upper())
    block, _ = GGML_QUANT_SIZES[qtype]
    if shape[-1] % block:
        return GGMLQuantizationType.F16
    return qtype


def tensor_bytes(shape: tuple[int, ...], qtype: Any) -> int:
    from gguf import GGML_QUANT_SIZES

    block, size = GGML_QUANT_SIZES[qtype]
    return math.prod(shape) // block * size


# -- writing ----------------------------------------------------------------------------------------
def gguf_tensors(model: Any, arch: str) -> list[tuple[str, Any]]:
    """(gguf name, float32 numpy array) for every tensor to write, in llama.cpp's layout."""
    import gguf
    import torch

    config = model.config
    name_map = gguf.get_tensor_name_map(
        getattr(gguf.MODEL_ARCH, ARCHITECTURES[config.model_type]), config.num_hidden_layers
    )
    tied = bool(getattr(config, "tie_word_embeddings", False))
    out = []
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue
        base, _, suffix = hf_name.rpartition(".")
        gguf_name = name_map.get_name(base)
        if gguf_name is None:
            raise ExportError(
                f"--format gguf: no GGUF name for tensor {hf_name!r} of this {config.model_type} model"
            )
        data = tensor.detach().to(torch.float32).cpu().numpy()
        if arch == "llama" and base.endswith("self_attn.q_proj"):
            data = permute_qk(data, config.num_attention_heads, config.num_attention_heads)
        elif arch == "llama" and base.endswith("self_attn.k_proj"):
            data = permute_qk(data, config.num_attention_heads, config.num_key_value_heads)
        out.append((f"{gguf_name}.{suffix}", data))
    rope = _rope_scaling(config) or {}
    if rope.get("rope_type", rope.get("type")) == "llama3":
        out.append((gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", llama3_rope_factors(config)))
    return out


def write_gguf(
    model: Any,
    tokenizer: Any,
    path: Path,
    quant: str,
    *,
    name: str,
    chat_template: str | None,
    end_of_turn: str | None,
    chat: Any = None,
    add_bos: bool | None = None,
    progress: Progress | None = None,
) -> None:
    """Write ``model`` (merged, any dtype) and its tokenizer to ``path`` as one GGUF file. ``add_bos`` says
    whether the runtime adds the BOS token itself (default: as the tokenizer does)."""
    import gguf
    import numpy as np

    report = progress or (lambda f, m: None)
    config = model.config
    arch = check_architecture(config)
    quant = check_quant(quant)
    tensors = gguf_tensors(model, arch)
    n_vocab = model.get_input_embeddings().weight.shape[0]
    vocab = gguf_vocab(tokenizer, n_vocab)

    writer = gguf.GGUFWriter(path, arch)
    try:
        writer.add_type("model")
        writer.add_name(name)
        writer.add_context_length(int(config.max_position_embeddings))
        writer.add_embedding_length(int(config.hidden_size))
        writer.add_block_count(int(config.num_hidden_layers))
        writer.add_feed_forward_length(int(config.intermediate_size))
        writer.add_head_count(int(config.num_attention_heads))
        writer.add_head_count_kv(int(config.num_key_value_heads or config.num_attention_heads))
        head_dim = _head_dim(config)
        writer.add_rope_dimension_count(head_dim)
        if head_dim != config.hidden_size // config.num_attention_heads:
            writer.add_key_length(head_dim)
            writer.add_value_length(head_dim)
        writer.add_rope_freq_base(_rope_theta(config))
        rope = _rope_scaling(config) or {}
        if rope.get("rope_type", rope.get("type")) == "linear":
            writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            writer.add_rope_scaling_factor(float(rope["factor"]))
        writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
        writer.add_vocab_size(n_vocab)
        writer.add_file_type(int(getattr(gguf.LlamaFileType, _FILE_TYPES[quant])))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(vocab.pre)
        writer.add_token_list(vocab.tokens)
        writer.add_token_types(vocab.types)
        writer.add_token_merges(vocab.merges)
        for kind in ("bos", "eos", "unk", "pad"):
            tid = getattr(tokenizer, f"{kind}_token_id", None)
            if isinstance(tid, int) and 0 <= tid < n_vocab:
                getattr(writer, f"add_{kind}_token_id")(tid)
        if end_of_turn:
            tid = tokenizer.convert_tokens_to_ids(end_of_turn)
            if isinstance(tid, int) and tid != tokenizer.unk_token_id and 0 <= tid < n_vocab:
                writer.add_eot_token_id(tid)
        adds_bos, add_eos = _adds(tokenizer)
        writer.add_add_bos_token(adds_bos if add_bos is None else add_bos)
        writer.add_add_eos_token(add_eos)
        if chat_template:
            writer.add_chat_template(chat_template)
        if chat is not None:  # llama.cpp reads these as the model's default sampling
            writer.add_sampling_temp(0.0 if chat.greedy else float(chat.temperature))
            writer.add_sampling_top_p(float(chat.top_p))
            if chat.top_k:
                writer.add_sampling_top_k(int(chat.top_k))
            if chat.min_p:
                writer.add_sampling_min_p(float(chat.min_p))
            if chat.repetition_penalty != 1.0:
                writer.add_sampling_penalty_repeat(float(chat.repetition_penalty))

        for i, (tname, data) in enumerate(tensors):
            qtype = tensor_type(tname, data.shape, quant)
            if qtype == gguf.GGMLQuantizationType.F32:
                writer.add_tensor(tname, data.astype(np.float32))
            elif qtype == gguf.GGMLQuantizationType.F16:
                writer.add_tensor(tname, data.astype(np.float16))
            else:
                writer.add_tensor(tname, gguf.quants.quantize(data, qtype), raw_shape=None, raw_dtype=qtype)
            report((i + 1) / len(tensors) * 0.8, f"{quant}: {tname}")
        report(0.85, f"writing {path.name}")
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    report(1.0, "written")
