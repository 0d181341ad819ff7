"""A minimal, streaming GGUF v3 writer that needs only the Python standard library (numpy optional).

Used by gen-shaped-model.py on machines without the `gguf` PyPI package. Only what that script needs:
scalar, string and array metadata, and F32 / F16 / BF16 tensors whose bytes come from a callback, so a
16 GB file never sits in memory.

File layout (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md), all little-endian:
    "GGUF" | u32 version=3 | u64 n_tensors | u64 n_kv
    n_kv x      (string key, u32 value type, value)          string = u64 byte length + UTF-8 bytes
    n_tensors x (string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset)
    zero padding to `alignment`, then the data section: each tensor at its offset (relative to the
    section start), each padded with zeros to a multiple of `alignment`.
ne[0] is the fastest-varying dimension, i.e. a numpy array of shape (rows, cols) has ne = [cols, rows].

usage:
    w = GGUFWriter("model.gguf")
    w.add_string("general.architecture", "llama"); w.add_uint32("llama.block_count", 16)
    w.add_array("tokenizer.ggml.tokens", VT.STRING, tokens)
    w.add_tensor("token_embd.weight", (vocab, hidden), GGML_F16, lambda f: ...write bytes to f...)
    w.write()
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterable


class VT:
    """GGUF metadata value types."""

    UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)


_SCALAR_FMT = {
    VT.UINT8: "<B", VT.INT8: "<b", VT.UINT16: "<H", VT.INT16: "<h", VT.UINT32: "<I", VT.INT32: "<i",
    VT.FLOAT32: "<f", VT.BOOL: "<?", VT.UINT64: "<Q", VT.INT64: "<q", VT.FLOAT64: "<d",
}

# ggml tensor types (ggml.h enum ggml_type) and their bytes per element.
GGML_F32, GGML_F16, GGML_BF16 = 0, 1, 30
_TYPE_SIZE = {GGML_F32: 4, GGML_F16: 2, GGML_BF16: 2}

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3


def _string(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _value(vtype: int, value) -> bytes:
    if vtype == VT.STRING:
        return _string(value)
    return struct.pack(_SCALAR_FMT[vtype], value)


@dataclass
class _Tensor:
    name: str
    shape: tuple[int, ...]  # numpy order (slowest first); written reversed as ne
    ggml_type: int
    write: Callable[[BinaryIO], None]
    offset: int = 0

    @property
    def nbytes(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n * _TYPE_SIZE[self.ggml_type]


class GGUFWriter:
    def __init__(self, path: str, alignment: int = 32):
        self.path = path
        self.alignment = alignment
        self._kv: list[bytes] = []
        self._keys: set[str] = set()
        self._tensors: list[_Tensor] = []
        if alignment != 32:
            self.add_uint32("general.alignment", alignment)

    # ---------------------------------------------------------------------------------------- metadata

    def _add(self, key: str, payload: bytes) -> None:
        if key in self._keys:
            raise ValueError(f"duplicate metadata key {key}")
        self._keys.add(key)
        self._kv.append(_string(key) + payload)

    def add_scalar(self, key: str, vtype: int, value) -> None:
        self._add(key, struct.pack("<I", vtype) + _value(vtype, value))

    def add_uint32(self, key: str, value: int) -> None:
        self.add_scalar(key, VT.UINT32, value)

    def add_float32(self, key: str, value: float) -> None:
        self.add_scalar(key, VT.FLOAT32, value)

    def add_bool(self, key: str, value: bool) -> None:
        self.add_scalar(key, VT.BOOL, value)

    def add_string(self, key: str, value: str) -> None:
        self.add_scalar(key, VT.STRING, value)

    def add_array(self, key: str, elem_type: int, values: Iterable) -> None:
        values = list(values)
        if elem_type == VT.STRING:
            body = b"".join(_string(v) for v in values)
        else:
            fmt = _SCALAR_FMT[elem_type]
            body = struct.pack("<" + fmt[1] * len(values), *values)
        self._add(key, struct.pack("<IIQ", VT.ARRAY, elem_type, len(values)) + body)

    # ------------------------------------------------------------------------------------------ tensors

    def add_tensor(self, name: str, shape: tuple[int, ...], ggml_type: int,
                   write: Callable[[BinaryIO], None]) -> None:
        """`write(f)` must write exactly prod(shape) * element-size bytes, row-major in numpy order."""
        if ggml_type not in _TYPE_SIZE:
            raise ValueError(f"{name}: unsupported ggml type {ggml_type}")
        if any(t.name == name for t in self._tensors):
            raise ValueError(f"duplicate tensor {name}")
        self._tensors.append(_Tensor(name, tuple(int(d) for d in shape), ggml_type, write))

    def _pad(self, n: int) -> int:
        return (self.alignment - n % self.alignment) % self.alignment

    def data_size(self) -> int:
        return sum(t.nbytes + self._pad(t.nbytes) for t in self._tensors)

    def write(self, progress: Callable[[str, int], None] | None = None) -> None:
        offset = 0
        infos = []
        for t in self._tensors:
            t.offset = offset
            ne = tuple(reversed(t.shape))
            infos.append(_string(t.name) + struct.pack(f"<I{len(ne)}QIQ", len(ne), *ne, t.ggml_type, offset))
            offset += t.nbytes + self._pad(t.nbytes)
        head = (GGUF_MAGIC + struct.pack("<IQQ", GGUF_VERSION, len(self._tensors), len(self._kv))
                + b"".join(self._kv) + b"".join(infos))
        head += b"\0" * self._pad(len(head))
        with open(self.path, "wb") as f:
            f.write(head)
            data_start = f.tell()
            for t in self._tensors:
                start = f.tell()
                t.write(f)
                written = f.tell() - start
                if written != t.nbytes:
                    raise RuntimeError(f"{t.name}: wrote {written} bytes, expected {t.nbytes}")
                if data_start + t.offset != start:
                    raise RuntimeError(f"{t.name}: at {start - data_start}, expected offset {t.offset}")
                f.write(b"\0" * self._pad(written))
                if progress:
                    progress(t.name, f.tell() - data_start)
