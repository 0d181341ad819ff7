#!/usr/bin/env python3
"""Bytes one decode step must read from device memory, and the roofline decode rate they allow.

usage: roofline.py BANDWIDTH_GBPS MODEL [MODEL...]     (MODEL: a .gguf file or a safetensors directory)
Per model prints: name, weight bytes read per decode step (every weight once; the token embedding only
for its one row unless it doubles as the output layer), and BANDWIDTH / bytes = the most tokens per second
single-stream decode can reach. KV-cache reads are left out (a 512-token context adds < 3% on these shapes).
"""
import json
import struct
import sys
from pathlib import Path

# ggml type id -> (block elements, block bytes)
GGML = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 10: (256, 84),
        11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292), 30: (1, 2)}
SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def read_gguf_tensors(path):
    with open(path, "rb") as f:
        def unpack(fmt):
            return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))[0]

        def string():
            return f.read(unpack("Q")).decode("utf-8", "replace")

        def skip_value(t):
            if t == 8:
                string()
            elif t == 9:
                inner, n = unpack("I"), unpack("Q")
                for _ in range(n):
                    skip_value(inner)
            else:
                f.read(SCALAR[t])

        if f.read(4) != b"GGUF":
            raise SystemExit(f"{path}: not a GGUF file")
        unpack("I")
        n_tensors, n_kv = unpack("Q"), unpack("Q")
        for _ in range(n_kv):
            string()
            skip_value(unpack("I"))
        tensors = {}
        for _ in range(n_tensors):
            name = string()
            dims = [unpack("Q") for _ in range(unpack("I"))]
            kind = unpack("I")
            unpack("Q")
            elems = 1
            for d in dims:
                elems *= d
            block, size = GGML[kind]
            tensors[name] = (elems // block * size, dims)
        return tensors


def read_safetensors(path):
    tensors = {}
    for file in sorted(Path(path).glob("*.safetensors")):
        with open(file, "rb") as f:
            header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
        for name, info in header.items():
            if name != "__metadata__":
                tensors[name] = (info["data_offsets"][1] - info["data_offsets"][0], info["shape"])
    return tensors


def step_bytes(path):
    p = Path(path)
    tensors = read_gguf_tensors(p) if p.is_file() else read_safetensors(p)
    embed = next((n for n in tensors if n in ("token_embd.weight", "model.embed_tokens.weight")), None)
    tied = not any(n in tensors for n in ("output.weight", "lm_head.weight"))
    total = sum(size for size, _ in tensors.values())
    if embed and not tied:
        size, dims = tensors[embed]
        total -= size - size // max(dims[-1] if p.is_file() else dims[0], 1)
    return total


def main():
    bandwidth = float(sys.argv[1]) * 1e9
    print("| model | bytes per decode step | roofline tok/s |")
    print("|---|---|---|")
    for model in sys.argv[2:]:
        b = step_bytes(model)
        print(f"| {Path(model).name} | {b / 1e9:.3f} GB | {bandwidth / b:.0f} |")


if __name__ == "__main__":
    main()
