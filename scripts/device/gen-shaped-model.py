#!/usr/bin/env python3
"""Write a random-weight model at a real model's shape, for speed benchmarks (hearth vs llama.cpp).

usage: gen-shaped-model.py --shape llama-1b|llama-8b|tiny --format gguf-f16|safetensors-bf16 --out PATH
                           [--context 4096] [--seed 0]

  gguf-f16          PATH is the .gguf file: llama metadata as llama.cpp's convert_hf_to_gguf.py --outtype f16
                    writes it (2-D weights F16, norms and rope_freqs.weight F32), a synthetic gpt2-style
                    tokenizer (llama-bpe pre-tokenizer, Llama 3 special tokens and chat template).
  safetensors-bf16  PATH is a Hugging Face directory: config.json (LlamaForCausalLM), model.safetensors
                    (model-0000N-of-0000M.safetensors + model.safetensors.index.json above 5 GB), tokenizer.json
                    (byte-level BPE of the same vocabulary), tokenizer_config.json, special_tokens_map.json,
                    generation_config.json.

Shapes: llama-1b = Llama-3.2-1B (tied embeddings, llama3 rope scaling x32), llama-8b = Llama-3.1-8B (untied,
llama3 rope scaling x8), tiny = 2 layers of 256 with a 2048-token vocabulary (for local tests).
The weights are noise (normal, std 0.02; norm gains about 1) so that a forward pass stays finite; they mean
nothing, and the GGUF and HF files of one shape are not the same model (no Q/K rope permutation is done).
To be fast, one block of noise is generated and every tensor is a window of it (8B f16 is 16 GB: disk speed).
Needs only numpy: GGUF, safetensors and tokenizer.json are written by hand (gguf_writer.py, hf_writer.py).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gguf_writer import GGML_F16, GGML_F32, VT, GGUFWriter  # noqa: E402
from hf_writer import llama3_tokenizer_json, write_json, write_safetensors_dir  # noqa: E402


@dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    tied: bool
    rope_theta: float
    rope_scaling: dict | None
    rms_eps: float = 1e-5
    n_special: int = 256  # Llama 3: the last 256 ids are special tokens


def llama3_scaling(factor: float) -> dict:
    return {"factor": factor, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192, "rope_type": "llama3"}


SHAPES = {
    "tiny": Shape(256, 2, 4, 2, 64, 768, 2048, True, 500000.0, llama3_scaling(32.0)),
    "llama-1b": Shape(2048, 16, 32, 8, 64, 8192, 128256, True, 500000.0, llama3_scaling(32.0)),
    "llama-8b": Shape(4096, 32, 32, 8, 128, 14336, 128256, False, 500000.0, llama3_scaling(8.0)),
}

# Llama 3 Instruct's chat template (the 3.0 one, short).
CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' "
    "+ message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 "
    "== 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt "
    "%}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


# ---------------------------------------------------------------------------------------------- vocabulary


def byte_chars() -> list[str]:
    """GPT-2's bytes_to_unicode: the character standing for each byte value 0..255."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)]


@dataclass
class Vocab:
    tokens: list[str]
    types: list[int]  # GGUF token types: 1 normal, 3 control
    merges: list[str]
    bos: int
    eos: int  # <|eot_id|>, as in the Instruct models
    specials: list[int]


def build_vocab(vocab_size: int, n_special: int) -> Vocab:
    """256 byte characters, merged pairs of [Ġa-zA-Z] (real merges), filler "tok<id>", then Llama 3's specials."""
    regular = vocab_size - n_special
    tokens = byte_chars()
    letters = ["Ġ"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    pairs = [(a, b) for a in letters for b in letters][: max(0, regular - len(tokens))]
    tokens += [a + b for a, b in pairs]
    tokens += [f"tok{i}" for i in range(len(tokens), regular)]
    names = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
             "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>", "<|start_header_id|>",
             "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]
    names += [f"<|reserved_special_token_{i}|>" for i in range(3, 3 + n_special - len(names))]
    tokens += names[:n_special]
    assert len(tokens) == vocab_size == len(set(tokens)), "vocabulary must be exactly vocab_size unique tokens"
    types = [1] * regular + [3] * n_special
    return Vocab(tokens, types, [f"{a} {b}" for a, b in pairs], bos=regular, eos=regular + 9,
                 specials=list(range(regular, vocab_size)))


# ------------------------------------------------------------------------------------------------- tensors


def tensor_list(s: Shape) -> list[tuple[str, str, tuple[int, ...], str]]:
    """(HF name, GGUF name, numpy shape (out, in), kind) with kind "w" (noise) or "norm" (gain ~1)."""
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    out = [("model.embed_tokens.weight", "token_embd.weight", (s.vocab, s.hidden), "w")]
    for i in range(s.layers):
        p, g = f"model.layers.{i}.", f"blk.{i}."
        out += [
            (p + "input_layernorm.weight", g + "attn_norm.weight", (s.hidden,), "norm"),
            (p + "self_attn.q_proj.weight", g + "attn_q.weight", (q, s.hidden), "w"),
            (p + "self_attn.k_proj.weight", g + "attn_k.weight", (kv, s.hidden), "w"),
            (p + "self_attn.v_proj.weight", g + "attn_v.weight", (kv, s.hidden), "w"),
            (p + "self_attn.o_proj.weight", g + "attn_output.weight", (s.hidden, q), "w"),
            (p + "post_attention_layernorm.weight", g + "ffn_norm.weight", (s.hidden,), "norm"),
            (p + "mlp.gate_proj.weight", g + "ffn_gate.weight", (s.ffn, s.hidden), "w"),
            (p + "mlp.up_proj.weight", g + "ffn_up.weight", (s.ffn, s.hidden), "w"),
            (p + "mlp.down_proj.weight", g + "ffn_down.weight", (s.hidden, s.ffn), "w"),
        ]
    out.append(("model.norm.weight", "output_norm.weight", (s.hidden,), "norm"))
    if not s.tied:
        out.append(("lm_head.weight", "output.weight", (s.vocab, s.hidden), "w"))
    return out


class Noise:
    """One block of N(0, 0.02) noise; each tensor is a window of it (wrapping), starting somewhere new."""

    BLOCK = 16_777_259  # a prime: rows of any width do not line up with the wrap

    def __init__(self, seed: int, dtype: str):
        self.rng = np.random.default_rng(seed)
        f32 = self.rng.standard_normal(self.BLOCK, dtype=np.float32) * np.float32(0.02)
        self.block = f32.astype(np.float16) if dtype == "f16" else bf16_bits(f32)
        self.start = 0

    def write(self, f, n: int) -> None:
        self.start = (self.start + 7_340_033) % self.BLOCK
        pos = self.start
        while n > 0:
            chunk = self.block[pos: pos + n]
            f.write(chunk.data)
            n -= len(chunk)
            pos = 0

    def norm(self, n: int) -> np.ndarray:
        return (1.0 + 0.02 * self.rng.standard_normal(n)).astype(np.float32)


def bf16_bits(a: np.ndarray) -> np.ndarray:
    """bfloat16 as uint16: the upper half of each float32 (truncation; the values do not matter)."""
    return (np.ascontiguousarray(a, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)


def llama3_rope_factors(s: Shape) -> np.ndarray:
    """Per-frequency divisors for Llama 3 rope scaling, as the converter writes them to rope_freqs.weight."""
    rs = s.rope_scaling
    freqs = 1.0 / (s.rope_theta ** (np.arange(0, s.head_dim, 2, dtype=np.float64) / s.head_dim))
    factor, old_ctx = rs["factor"], rs["original_max_position_embeddings"]
    lo, hi = rs["low_freq_factor"], rs["high_freq_factor"]
    wavelen = 2 * math.pi / freqs
    smooth = (old_ctx / wavelen - lo) / (hi - lo)
    out = np.where(wavelen < old_ctx / hi, 1.0,
                   np.where(wavelen > old_ctx / lo, factor, 1 / ((1 - smooth) / factor + smooth)))
    return out.astype(np.float32)


class Progress:
    def __init__(self, total: int):
        self.total, self.t0, self.next = total, time.time(), 1 << 30

    def __call__(self, _name: str, done: int) -> None:
        if done >= self.next or done >= self.total:
            rate = done / max(time.time() - self.t0, 1e-9) / 1e9
            print(f"  {done / 1e9:6.2f} / {self.total / 1e9:.2f} GB  ({rate:.2f} GB/s)", file=sys.stderr)
            self.next = (done // (1 << 30) + 1) << 30


# ------------------------------------------------------------------------------------------------- GGUF


def write_gguf(name: str, s: Shape, vocab: Vocab, context: int, path: Path, seed: int, window: int = 0) -> None:
    w = GGUFWriter(str(path))
    w.add_string("general.architecture", "llama")
    w.add_string("general.type", "model")
    w.add_string("general.name", f"hearth shaped {name} (random weights)")
    a = "llama."
    for key, value in [("block_count", s.layers), ("context_length", context), ("embedding_length", s.hidden),
                       ("feed_forward_length", s.ffn), ("attention.head_count", s.heads),
                       ("attention.head_count_kv", s.kv_heads)]:
        w.add_uint32(a + key, value)
    w.add_float32(a + "rope.freq_base", s.rope_theta)
    w.add_float32(a + "attention.layer_norm_rms_epsilon", s.rms_eps)
    w.add_uint32(a + "attention.key_length", s.head_dim)
    w.add_uint32(a + "attention.value_length", s.head_dim)
    w.add_uint32("general.file_type", 1)  # LLAMA_FTYPE_MOSTLY_F16
    w.add_uint32(a + "vocab_size", s.vocab)
    w.add_uint32(a + "rope.dimension_count", s.head_dim)
    if window:
        # Even layers slide, odd ones see everything (Gemma 3's mix, in two-layer periods), so a decode
        # step reads both a windowed and a whole slot list.
        w.add_uint32(a + "attention.sliding_window", window)
        w.add_array(a + "attention.sliding_window_pattern", VT.INT32, [1 - i % 2 for i in range(s.layers)])
    w.add_uint32("general.quantization_version", 2)
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_string("tokenizer.ggml.pre", "llama-bpe")
    w.add_array("tokenizer.ggml.tokens", VT.STRING, vocab.tokens)
    w.add_array("tokenizer.ggml.token_type", VT.INT32, vocab.types)
    w.add_array("tokenizer.ggml.merges", VT.STRING, vocab.merges)
    w.add_uint32("tokenizer.ggml.bos_token_id", vocab.bos)
    w.add_uint32("tokenizer.ggml.eos_token_id", vocab.eos)
    w.add_bool("tokenizer.ggml.add_bos_token", True)
    w.add_string("tokenizer.chat_template", CHAT_TEMPLATE)

    noise = Noise(seed, "f16")
    if s.rope_scaling and s.rope_scaling.get("rope_type") == "llama3":
        factors = llama3_rope_factors(s)
        w.add_tensor("rope_freqs.weight", factors.shape, GGML_F32, lambda f, d=factors: f.write(d.tobytes()))
    for _hf, gname, shape, kind in tensor_list(s):
        if kind == "norm":
            gain = noise.norm(shape[0])
            w.add_tensor(gname, shape, GGML_F32, lambda f, d=gain: f.write(d.tobytes()))
        else:
            w.add_tensor(gname, shape, GGML_F16, lambda f, n=math.prod(shape): noise.write(f, n))
    w.write(Progress(w.data_size()))


# ------------------------------------------------------------------------------------------ Hugging Face


def write_hf(s: Shape, vocab: Vocab, context: int, out: Path, seed: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    entries = [(hf, shape, kind) for hf, _g, shape, kind in tensor_list(s)]
    noise = Noise(seed, "bf16")
    progress, done = Progress(sum(math.prod(e[1]) * 2 for e in entries)), 0

    def write(f, entry):
        nonlocal done
        name, shape, kind = entry
        if kind == "norm":
            f.write(bf16_bits(noise.norm(shape[0])).tobytes())
        else:
            noise.write(f, math.prod(shape))
        done += math.prod(shape) * 2
        progress(name, done)

    write_safetensors_dir(out, entries, "BF16", write)
    t = vocab.tokens
    write_json(out / "config.json", {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": vocab.bos, "eos_token_id": vocab.eos, "head_dim": s.head_dim, "hidden_act": "silu",
        "hidden_size": s.hidden, "initializer_range": 0.02, "intermediate_size": s.ffn,
        "max_position_embeddings": context, "mlp_bias": False, "model_type": "llama",
        "num_attention_heads": s.heads, "num_hidden_layers": s.layers, "num_key_value_heads": s.kv_heads,
        "pretraining_tp": 1, "rms_norm_eps": s.rms_eps, "rope_scaling": s.rope_scaling, "rope_theta": s.rope_theta,
        "tie_word_embeddings": s.tied, "torch_dtype": "bfloat16", "transformers_version": "4.45.0",
        "use_cache": True, "vocab_size": s.vocab})
    write_json(out / "generation_config.json", {
        "bos_token_id": vocab.bos, "eos_token_id": [vocab.bos + 1, vocab.bos + 8, vocab.eos],
        "do_sample": True, "temperature": 0.6, "top_p": 0.9, "transformers_version": "4.45.0"})
    write_json(out / "tokenizer.json", llama3_tokenizer_json(t, vocab.merges, vocab.specials[0], vocab.bos))
    write_json(out / "tokenizer_config.json", {
        "bos_token": t[vocab.bos], "chat_template": CHAT_TEMPLATE, "clean_up_tokenization_spaces": True,
        "eos_token": t[vocab.eos], "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": context, "tokenizer_class": "PreTrainedTokenizerFast"})
    write_json(out / "special_tokens_map.json", {"bos_token": t[vocab.bos], "eos_token": t[vocab.eos]})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", required=True, choices=sorted(SHAPES))
    ap.add_argument("--format", required=True, choices=["gguf-f16", "safetensors-bf16"])
    ap.add_argument("--out", required=True, type=Path, help="the .gguf file, or the HF directory")
    ap.add_argument("--context", type=int, default=4096, help="context length the metadata advertises")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sliding-window", type=int, default=0,
                    help="GGUF only: a window of this many tokens on even layers (tests the sliding-window paths)")
    args = ap.parse_args()
    s = SHAPES[args.shape]
    vocab = build_vocab(s.vocab, s.n_special)
    t0 = time.time()
    if args.format == "gguf-f16":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_gguf(args.shape, s, vocab, args.context, args.out, args.seed, args.sliding_window)
    else:
        write_hf(s, vocab, args.context, args.out, args.seed)
    print(f"gen-shaped-model: wrote {args.out} ({args.shape}, {args.format}) in {time.time() - t0:.1f}s",
          file=sys.stderr)


if __name__ == "__main__":
    main()
