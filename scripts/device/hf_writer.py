"""Hugging Face checkpoint pieces written with the standard library alone (no torch, safetensors or tokenizers).

Used by gen-shaped-model.py on machines that may lack those packages:
    write_safetensors_dir(out, entries, dtype, write)   model.safetensors, or 5 GB shards + the index json
    llama3_tokenizer_json(tokens, merges, n_regular, bos)  a Llama 3 style byte-level BPE tokenizer.json
    write_json(path, value)

safetensors layout (https://huggingface.co/docs/safetensors): u64 little-endian header length N, N bytes of
JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}} padded with spaces to a
multiple of 8, then the raw row-major tensor bytes at those offsets (relative to the end of the header).
"""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import BinaryIO, Callable

MAX_SHARD = 5_000_000_000  # transformers' default max_shard_size ("5GB")
DTYPE_SIZE = {"BF16": 2, "F16": 2, "F32": 4}

# Llama 3's pre-tokenizer split (llama.cpp's "llama-bpe").
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")

Entry = tuple  # (name, shape, kind): kind is passed through to the write callback


def write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _nbytes(entry: Entry, dtype: str) -> int:
    return math.prod(entry[1]) * DTYPE_SIZE[dtype]


def write_safetensors(path: Path, entries: list[Entry], dtype: str,
                      write: Callable[[BinaryIO, Entry], None]) -> None:
    """One file; `write(f, entry)` writes each tensor's bytes, in `entries` order."""
    header, off = {}, 0
    for e in entries:
        n = _nbytes(e, dtype)
        header[e[0]] = {"dtype": dtype, "shape": list(e[1]), "data_offsets": [off, off + n]}
        off += n
    header["__metadata__"] = {"format": "pt"}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb)
        for e in entries:
            start = f.tell()
            write(f, e)
            if f.tell() - start != _nbytes(e, dtype):
                raise RuntimeError(f"{e[0]}: wrote {f.tell() - start} bytes, expected {_nbytes(e, dtype)}")


def write_safetensors_dir(out: Path, entries: list[Entry], dtype: str,
                          write: Callable[[BinaryIO, Entry], None], max_shard: int = MAX_SHARD) -> None:
    """model.safetensors, or model-0000i-of-0000n.safetensors shards of at most max_shard bytes (as
    transformers' save_pretrained splits them) with model.safetensors.index.json."""
    shards, cur, size = [], [], 0
    for e in entries:
        n = _nbytes(e, dtype)
        if cur and size + n > max_shard:
            shards.append(cur)
            cur, size = [], 0
        cur.append(e)
        size += n
    shards.append(cur)
    if len(shards) == 1:
        write_safetensors(out / "model.safetensors", entries, dtype, write)
        return
    weight_map = {}
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        write_safetensors(out / fname, shard, dtype, write)
        weight_map.update({e[0]: fname for e in shard})
    total = sum(_nbytes(e, dtype) for e in entries)
    write_json(out / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})


def llama3_tokenizer_json(tokens: list[str], merges: list[str], n_regular: int, bos: int) -> dict:
    """tokenizer.json: BPE over tokens[:n_regular] (byte-level characters), tokens[n_regular:] as special added
    tokens, Llama 3's split regex, and a post-processor that puts BOS first (as Llama 3's does)."""
    b = tokens[bos]
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": tokens[i], "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i in range(n_regular, len(tokens))],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": b, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": b, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": b, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {b: {"id": b, "ids": [bos], "tokens": [b]}}}]},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": {tokens[i]: i for i in range(n_regular)}, "merges": merges},
    }
