#!/usr/bin/env python3
"""Write tiny random-weight models for architectures without a shipped test model.

usage: gen-tiny-models.py OUT_DIR [--arch NAME ...] [--models-dir DIR]

For each architecture it writes, deterministically (fixed seeds, so a re-run gives identical bytes):
    OUT_DIR/<arch>/model-f32.gguf    GGUF as llama.cpp's convert_hf_to_gguf.py --outtype f32 would write it
    OUT_DIR/<arch>/model-q8_0.gguf   the same with --outtype q8_0 (2-D weights Q8_0, 1-D tensors F32)
    OUT_DIR/<arch>/hf/               config.json, model.safetensors (f32), tokenizer.json, tokenizer_config.json,
                                     special_tokens_map.json, generation_config.json: the Hugging Face
                                     checkpoint of the same model (hf_reference_logprobs checks that)
The tokenizer is SmolLM2's (read from its GGUF), so vocab = 49152 and the chat template is ChatML.
Architectures: qwen2 (qkv bias), qwen3 (q/k RMSNorm, head_dim 32 != hidden/heads), mistral (llama arch, 8 query
heads over 2 kv heads, untied output), llama3 (llama arch, llama3 rope scaling -> rope_freqs.weight).
Requires the dev venv (scripts/setup-venv.sh).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np
from safetensors.numpy import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONTEXT_LENGTH = 2048


@dataclass(frozen=True)
class TinySpec:
    """One tiny model: its HF identity, its GGUF identity and its shape."""

    arch: str  # our name, also the output sub-directory
    hf_model_type: str
    hf_class: str
    gguf_arch: str
    seed: int
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 16
    intermediate: int = 256
    tied: bool = True
    qkv_bias: bool = False
    qk_norm: bool = False
    write_head_dim: bool = True  # whether HF's config for this model_type carries `head_dim`
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None
    rms_eps: float = 1e-6
    # Init scales: see make_weights.
    embed_std: float = 0.1
    output_gain: float = 12.0
    extra_config: dict = field(default_factory=dict)


SPECS = {
    s.arch: s
    for s in [
        TinySpec(
            arch="qwen2", hf_model_type="qwen2", hf_class="Qwen2ForCausalLM", gguf_arch="qwen2", seed=2002,
            qkv_bias=True, write_head_dim=False, rope_theta=1000000.0,
            extra_config={"use_sliding_window": False, "sliding_window": None, "max_window_layers": 2},
        ),
        TinySpec(
            # head_dim 32 with 4 heads: q/o projections are 128 wide while hidden is 64.
            arch="qwen3", hf_model_type="qwen3", hf_class="Qwen3ForCausalLM", gguf_arch="qwen3", seed=3003,
            head_dim=32, qk_norm=True, rope_theta=1000000.0,
            extra_config={"attention_bias": False, "use_sliding_window": False, "sliding_window": None,
                          "max_window_layers": 2},
        ),
        TinySpec(
            # GQA 8 query heads over 2 kv heads, untied output head, three layers.
            arch="mistral", hf_model_type="mistral", hf_class="MistralForCausalLM", gguf_arch="llama", seed=4004,
            layers=3, heads=8, kv_heads=2, head_dim=8, tied=False, rms_eps=1e-5, rope_theta=1000000.0,
            extra_config={"sliding_window": None},
        ),
        TinySpec(
            # Llama 3.x rope scaling. original_max_position_embeddings is small so that the scaled
            # frequencies change the rotation noticeably within a few hundred positions.
            arch="llama3", hf_model_type="llama", hf_class="LlamaForCausalLM", gguf_arch="llama", seed=5005,
            rms_eps=1e-5, rope_theta=500000.0,
            rope_scaling={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                          "original_max_position_embeddings": 256, "rope_type": "llama3"},
            extra_config={"attention_bias": False, "mlp_bias": False, "pretraining_tp": 1},
        ),
    ]
}


# ---------------------------------------------------------------------------------------------- tokenizer


@dataclass
class SmolTokenizer:
    """The gpt2-style tokenizer metadata of SmolLM2's GGUF."""

    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    bos_id: int
    eos_id: int
    unk_id: int
    pad_id: int
    chat_template: str
    pre: str

    def special_ids(self) -> list[int]:
        return [i for i, t in enumerate(self.token_types) if t == gguf.TokenType.CONTROL]


def read_smol_tokenizer(models_dir: Path) -> SmolTokenizer:
    path = models_dir / SMOLLM2_GGUF
    if not path.is_file():
        sys.exit(f"gen-tiny-models: {path} is missing (run scripts/fetch-models.sh)")
    fields = gguf.GGUFReader(path).fields

    def value(key: str):
        if key not in fields:
            sys.exit(f"gen-tiny-models: {path} has no {key}")
        return fields[key].contents()

    return SmolTokenizer(
        tokens=value("tokenizer.ggml.tokens"),
        token_types=[int(t) for t in value("tokenizer.ggml.token_type")],
        merges=value("tokenizer.ggml.merges"),
        bos_id=value("tokenizer.ggml.bos_token_id"),
        eos_id=value("tokenizer.ggml.eos_token_id"),
        unk_id=value("tokenizer.ggml.unknown_token_id"),
        pad_id=value("tokenizer.ggml.padding_token_id"),
        chat_template=value("tokenizer.chat_template"),
        pre=value("tokenizer.ggml.pre"),
    )


def build_hf_tokenizer(tok: SmolTokenizer) -> Tokenizer:
    """Byte-level BPE equal to llama.cpp's `smollm` pre-tokenizer: single digits, then the GPT-2 split."""
    vocab = {t: i for i, t in enumerate(tok.tokens)}
    merges = [tuple(m.split(" ", 1)) for m in tok.merges]
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True),
         pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)]
    )
    tk.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    tk.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    tk.add_special_tokens([AddedToken(tok.tokens[i], special=True, normalized=False) for i in tok.special_ids()])
    return tk


def hf_tokenizer_config(tok: SmolTokenizer) -> dict:
    added = {
        str(i): {"content": tok.tokens[i], "lstrip": False, "normalized": False, "rstrip": False,
                 "single_word": False, "special": True}
        for i in tok.special_ids()
    }
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": [tok.tokens[tok.bos_id], tok.tokens[tok.eos_id]],
        "bos_token": tok.tokens[tok.bos_id],
        "chat_template": tok.chat_template,
        "clean_up_tokenization_spaces": False,
        "eos_token": tok.tokens[tok.eos_id],
        "model_max_length": CONTEXT_LENGTH,
        "pad_token": tok.tokens[tok.pad_id],
        "tokenizer_class": "GPT2Tokenizer",
        "unk_token": tok.tokens[tok.unk_id],
        "vocab_size": len(tok.tokens),
    }


# ------------------------------------------------------------------------------------------------ weights


def make_weights(spec: TinySpec, vocab: int) -> dict[str, np.ndarray]:
    """HF-named f32 weights.

    Random weights at default scales give near-flat next-token distributions, and with tied embeddings a large
    embedding makes each token predict itself. So: linear layers at 1/sqrt(fan_in) (block outputs of unit
    scale), small embeddings (0.1) that the blocks outweigh in the residual stream, and a final norm gain of
    12 that spreads the logits (std about 10). llama.cpp's top-1/top-2 gap is then >= 0.1 nats at ~95% of
    greedy steps, and continuations do not collapse into repeating one token."""
    rng = np.random.default_rng(spec.seed)

    def normal(shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def linear(out_dim, in_dim, gain=1.0):
        return normal((out_dim, in_dim), gain / math.sqrt(in_dim))

    def norm(dim, gain=1.0):
        return (gain * (1.0 + 0.2 * rng.standard_normal(dim))).astype(np.float32)

    h, q_dim, kv_dim = spec.hidden, spec.heads * spec.head_dim, spec.kv_heads * spec.head_dim
    w = {"model.embed_tokens.weight": normal((vocab, h), spec.embed_std)}
    for i in range(spec.layers):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm(h)
        # q and k a little larger than unit so attention patterns are far from uniform.
        w[p + "self_attn.q_proj.weight"] = linear(q_dim, h, 2.0)
        w[p + "self_attn.k_proj.weight"] = linear(kv_dim, h, 2.0)
        w[p + "self_attn.v_proj.weight"] = linear(kv_dim, h)
        if spec.qkv_bias:
            w[p + "self_attn.q_proj.bias"] = normal(q_dim, 0.5)
            w[p + "self_attn.k_proj.bias"] = normal(kv_dim, 0.5)
            w[p + "self_attn.v_proj.bias"] = normal(kv_dim, 0.5)
        if spec.qk_norm:
            w[p + "self_attn.q_norm.weight"] = norm(spec.head_dim, 1.5)
            w[p + "self_attn.k_norm.weight"] = norm(spec.head_dim, 1.5)
        w[p + "self_attn.o_proj.weight"] = linear(h, q_dim)
        w[p + "post_attention_layernorm.weight"] = norm(h)
        w[p + "mlp.gate_proj.weight"] = linear(spec.intermediate, h, 2.0)
        w[p + "mlp.up_proj.weight"] = linear(spec.intermediate, h)
        w[p + "mlp.down_proj.weight"] = linear(h, spec.intermediate)
    w["model.norm.weight"] = norm(h, spec.output_gain)
    if not spec.tied:
        w["lm_head.weight"] = normal((vocab, h), spec.embed_std)
    return w


def llama_rope_permute(weight: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's converter reorders each head's rows from HF's half-split rope layout to interleaved pairs."""
    return (weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
            .swapaxes(1, 2)
            .reshape(weight.shape))


def llama3_rope_factors(spec: TinySpec) -> np.ndarray:
    """Per-frequency divisors for Llama 3 rope scaling, as the converter writes them to rope_freqs.weight."""
    rs = spec.rope_scaling or {}
    dim = spec.head_dim
    freqs = 1.0 / (np.float32(spec.rope_theta) ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)))
    factor, old_ctx = rs["factor"], rs["original_max_position_embeddings"]
    low_wavelen = old_ctx / rs["low_freq_factor"]
    high_wavelen = old_ctx / rs["high_freq_factor"]
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / float(freq)
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (old_ctx / wavelen - rs["low_freq_factor"]) / (rs["high_freq_factor"] - rs["low_freq_factor"])
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


# HF tensor name suffix -> GGUF name suffix (per block).
BLOCK_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
GLOBAL_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                "lm_head.weight": "output.weight"}


def gguf_tensors(spec: TinySpec, hf: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    out = []
    if spec.rope_scaling and spec.rope_scaling.get("rope_type") == "llama3":
        out.append(("rope_freqs.weight", llama3_rope_factors(spec)))
    for name, data in hf.items():
        if name in GLOBAL_NAMES:
            out.append((GLOBAL_NAMES[name], data))
            continue
        _, _, bid, suffix = name.split(".", 3)
        if spec.gguf_arch == "llama" and suffix.startswith(("self_attn.q_proj.", "self_attn.k_proj.")):
            n_head = spec.heads if suffix.startswith("self_attn.q_proj.") else spec.kv_heads
            data = llama_rope_permute(data, n_head)
        out.append((f"blk.{bid}.{BLOCK_NAMES[suffix]}", data))
    return out


# -------------------------------------------------------------------------------------- HF reference forward


def hf_inv_freq(cfg: dict, head_dim: int) -> np.ndarray:
    """Rope inverse frequencies as transformers computes them, with Llama 3 scaling when configured."""
    freqs = 1.0 / (cfg["rope_theta"] ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    rs = cfg.get("rope_scaling") or {}
    if rs.get("rope_type") != "llama3":
        return freqs
    factor, old_ctx = rs["factor"], rs["original_max_position_embeddings"]
    lo, hi = rs["low_freq_factor"], rs["high_freq_factor"]
    wavelen = 2 * math.pi / freqs
    scaled = np.where(wavelen > old_ctx / lo, freqs / factor, freqs)
    smooth = (old_ctx / wavelen - lo) / (hi - lo)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_ctx / hi) & (wavelen <= old_ctx / lo)
    return np.where(medium, blended, scaled)


def hf_reference_logprobs(hf_dir: Path, ids: list[int]) -> np.ndarray:
    """Log-softmax over the vocabulary at every position, computed in f64 from the HF checkpoint with HF's
    conventions (half-split rope, repeated kv heads). Used to check that the GGUF and HF files are one model."""
    from safetensors.numpy import load_file

    cfg = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    w = {k: v.astype(np.float64) for k, v in load_file(str(hf_dir / "model.safetensors")).items()}
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or cfg["hidden_size"] // n_head
    eps, t = cfg["rms_norm_eps"], len(ids)

    def rms_norm(x, weight):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * weight

    angles = np.arange(t, dtype=np.float64)[:, None] * hf_inv_freq(cfg, hd)[None, :]
    cos = np.cos(np.concatenate([angles, angles], -1))[:, None, :]
    sin = np.sin(np.concatenate([angles, angles], -1))[:, None, :]

    def rope(x):
        half = x.shape[-1] // 2
        return x * cos + np.concatenate([-x[..., half:], x[..., :half]], -1) * sin

    causal = np.triu(np.full((t, t), -np.inf), 1)
    h = w["model.embed_tokens.weight"][ids]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."

        def proj(name, x):
            y = x @ w[p + name + ".weight"].T
            return y + w[p + name + ".bias"] if p + name + ".bias" in w else y

        x = rms_norm(h, w[p + "input_layernorm.weight"])
        q = proj("self_attn.q_proj", x).reshape(t, n_head, hd)
        k = proj("self_attn.k_proj", x).reshape(t, n_kv, hd)
        v = proj("self_attn.v_proj", x).reshape(t, n_kv, hd)
        if p + "self_attn.q_norm.weight" in w:
            q, k = rms_norm(q, w[p + "self_attn.q_norm.weight"]), rms_norm(k, w[p + "self_attn.k_norm.weight"])
        q, k = rope(q), np.repeat(rope(k), n_head // n_kv, 1)
        v = np.repeat(v, n_head // n_kv, 1)
        scores = np.einsum("qhd,khd->hqk", q, k) / math.sqrt(hd) + causal
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        h = h + proj("self_attn.o_proj", np.einsum("hqk,khd->qhd", probs, v).reshape(t, n_head * hd))
        x = rms_norm(h, w[p + "post_attention_layernorm.weight"])
        gate = proj("mlp.gate_proj", x)
        h = h + proj("mlp.down_proj", gate / (1 + np.exp(-gate)) * proj("mlp.up_proj", x))
    logits = rms_norm(h, w["model.norm.weight"]) @ w.get("lm_head.weight", w["model.embed_tokens.weight"]).T
    top = logits.max(-1, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))


# ------------------------------------------------------------------------------------------------ writers


def hf_config(spec: TinySpec, tok: SmolTokenizer) -> dict:
    cfg = {
        "architectures": [spec.hf_class],
        "attention_dropout": 0.0,
        "bos_token_id": tok.bos_id,
        "eos_token_id": tok.eos_id,
        "hidden_act": "silu",
        "hidden_size": spec.hidden,
        "initializer_range": 0.02,
        "intermediate_size": spec.intermediate,
        "max_position_embeddings": CONTEXT_LENGTH,
        "model_type": spec.hf_model_type,
        "num_attention_heads": spec.heads,
        "num_hidden_layers": spec.layers,
        "num_key_value_heads": spec.kv_heads,
        "rms_norm_eps": spec.rms_eps,
        "rope_scaling": spec.rope_scaling,
        "rope_theta": spec.rope_theta,
        "tie_word_embeddings": spec.tied,
        "torch_dtype": "float32",
        "transformers_version": "4.57.1",
        "use_cache": True,
        "vocab_size": len(tok.tokens),
    }
    if spec.write_head_dim:
        cfg["head_dim"] = spec.head_dim
    cfg.update(spec.extra_config)
    return dict(sorted(cfg.items()))


def write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_hf(spec: TinySpec, weights: dict[str, np.ndarray], tok: SmolTokenizer, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", hf_config(spec, tok))
    write_json(out / "generation_config.json",
               {"bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id, "transformers_version": "4.57.1"})
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    build_hf_tokenizer(tok).save(str(out / "tokenizer.json"))
    write_json(out / "tokenizer_config.json", hf_tokenizer_config(tok))
    write_json(out / "special_tokens_map.json", {
        "additional_special_tokens": [tok.tokens[tok.bos_id], tok.tokens[tok.eos_id]],
        "bos_token": tok.tokens[tok.bos_id], "eos_token": tok.tokens[tok.eos_id],
        "pad_token": tok.tokens[tok.pad_id], "unk_token": tok.tokens[tok.unk_id],
    })


def add_gguf_metadata(w: gguf.GGUFWriter, spec: TinySpec, tok: SmolTokenizer, ftype: gguf.LlamaFileType,
                      n_params: int) -> None:
    """Keys in the order and form convert_hf_to_gguf.py writes them for this architecture."""
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(f"Hearth Tiny {spec.arch}")
    w.add_size_label(gguf.size_label(n_params, 0, 0, 0))
    w.add_block_count(spec.layers)
    w.add_context_length(CONTEXT_LENGTH)
    w.add_embedding_length(spec.hidden)
    w.add_feed_forward_length(spec.intermediate)
    w.add_head_count(spec.heads)
    w.add_head_count_kv(spec.kv_heads)
    w.add_rope_freq_base(spec.rope_theta)
    w.add_layer_norm_rms_eps(spec.rms_eps)
    if spec.write_head_dim:
        w.add_key_length(spec.head_dim)
        w.add_value_length(spec.head_dim)
    w.add_file_type(ftype)
    if spec.gguf_arch == "llama":
        w.add_vocab_size(len(tok.tokens))
        w.add_rope_dimension_count(spec.head_dim)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_add_space_prefix(False)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(tok.pre)
    w.add_token_list(tok.tokens)
    w.add_token_types(tok.token_types)
    w.add_token_merges(tok.merges)
    w.add_bos_token_id(tok.bos_id)
    w.add_eos_token_id(tok.eos_id)
    w.add_unk_token_id(tok.unk_id)
    w.add_pad_token_id(tok.pad_id)
    w.add_add_bos_token(False)
    w.add_chat_template(tok.chat_template)


def tensor_qtype(name: str, data: np.ndarray, ftype: gguf.LlamaFileType) -> gguf.GGMLQuantizationType:
    # As the converter does: 1-D tensors and norms stay F32, the rest follow the file type.
    if ftype == gguf.LlamaFileType.ALL_F32 or data.ndim <= 1 or name.endswith("_norm.weight"):
        return gguf.GGMLQuantizationType.F32
    return gguf.GGMLQuantizationType.Q8_0


def write_gguf(spec: TinySpec, weights: dict[str, np.ndarray], tok: SmolTokenizer, path: Path,
               ftype: gguf.LlamaFileType) -> None:
    w = gguf.GGUFWriter(str(path), spec.gguf_arch)
    n_params = sum(int(a.size) for a in weights.values())
    add_gguf_metadata(w, spec, tok, ftype, n_params)
    for name, data in gguf_tensors(spec, weights):
        qtype = tensor_qtype(name, data, ftype)
        w.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def generate(spec: TinySpec, tok: SmolTokenizer, out_dir: Path) -> None:
    weights = make_weights(spec, len(tok.tokens))
    arch_dir = out_dir / spec.arch
    arch_dir.mkdir(parents=True, exist_ok=True)
    write_gguf(spec, weights, tok, arch_dir / "model-f32.gguf", gguf.LlamaFileType.ALL_F32)
    write_gguf(spec, weights, tok, arch_dir / "model-q8_0.gguf", gguf.LlamaFileType.MOSTLY_Q8_0)
    write_hf(spec, weights, tok, arch_dir / "hf")


def default_models_dir() -> Path:
    if d := os.environ.get("HEARTH_TEST_MODELS"):
        return Path(d)
    cache = os.environ.get("HEARTH_DEV_CACHE") or str(Path.home() / ".cache" / "hearth-dev")
    return Path(cache) / "models"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--arch", action="append", choices=sorted(SPECS), help="only these (default: all)")
    ap.add_argument("--models-dir", type=Path, default=None, help="where SmolLM2's GGUF is")
    args = ap.parse_args()
    tok = read_smol_tokenizer(args.models_dir or default_models_dir())
    for arch in args.arch or list(SPECS):
        generate(SPECS[arch], tok, args.out_dir)
        print(args.out_dir / arch)


if __name__ == "__main__":
    main()
