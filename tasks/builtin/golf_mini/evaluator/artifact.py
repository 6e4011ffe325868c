"""golf-mini artifact format (evaluator-owned, staged read-only into every workspace).

    b"GOLFMINI"  u8 format version (1)  u8 compressor (0 none, 1 zlib, 2 lzma, 3 zstd)  payload

``payload`` is the compressed body:

    u32 little-endian header length  |  header (UTF-8 JSON)  |  tensor blobs, in header order

The header is ``{"config": {...model config...}, "merges": [[a, b], ...],
"tensors": [{"name": str, "shape": [..], "bits": int, "group": int}, ...]}``. A tensor with
``bits`` 2..8 is quantized symmetrically per group of ``group`` consecutive values (row-major,
the last group zero-padded): its blob is the float16 scales (one per group) followed by the codes
``q + (2**(bits-1) - 1)`` bit-packed little-endian, ``bits`` bits each. ``bits`` 16 or 32 store
the values raw as float16 / float32 (``group`` is then ignored, write 0). The blobs must use the
body exactly; anything else is rejected with a message saying what is wrong.
"""

from __future__ import annotations

import io
import json
import lzma
import math
import struct
import zlib

import numpy as np

MAGIC = b"GOLFMINI"
VERSION = 1
COMPRESSORS = {"none": 0, "zlib": 1, "lzma": 2, "zstd": 3}
MAX_BODY = 256 << 20  # refuse to inflate anything larger (decompression bombs)
MAX_TENSORS = 4096


class ArtifactError(ValueError):
    """The artifact cannot be read; the message says why."""


# ---------------------------------------------------------------------------------------------
# quantization


def quantize(values: np.ndarray, bits: int, group: int) -> bytes:
    """The blob (scales + packed codes) of ``values`` at ``bits`` bits per group of ``group``."""
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be 2..8 for quantized tensors, got {bits}")
    if group < 1:
        raise ValueError(f"group must be >= 1, got {group}")
    flat = np.asarray(values, dtype=np.float32).reshape(-1)
    n_groups = max(1, math.ceil(flat.size / group))
    padded = np.zeros(n_groups * group, dtype=np.float32)
    padded[: flat.size] = flat
    g = padded.reshape(n_groups, group)
    qmax = 2 ** (bits - 1) - 1
    scale = (np.abs(g).max(axis=1) / qmax).astype(np.float16)
    scale[scale == 0] = np.float16(1.0)
    s32 = scale.astype(np.float32)[:, None]
    q = np.clip(np.rint(g / s32), -qmax, qmax).astype(np.int16) + qmax
    return scale.tobytes() + pack_bits(q.reshape(-1).astype(np.uint8), bits)


def dequantize(blob: bytes, n: int, bits: int, group: int) -> np.ndarray:
    n_groups = max(1, math.ceil(n / group))
    scale = np.frombuffer(blob[: 2 * n_groups], dtype=np.float16).astype(np.float32)
    codes = unpack_bits(blob[2 * n_groups:], n_groups * group, bits).astype(np.float32)
    qmax = 2 ** (bits - 1) - 1
    values = (codes - qmax).reshape(n_groups, group) * scale[:, None]
    return values.reshape(-1)[:n]


def quantized_size(n: int, bits: int, group: int) -> int:
    n_groups = max(1, math.ceil(n / group))
    return 2 * n_groups + math.ceil(n_groups * group * bits / 8)


def pack_bits(codes: np.ndarray, bits: int) -> bytes:
    if bits == 8:
        return codes.astype(np.uint8).tobytes()
    planes = (codes[:, None] >> np.arange(bits, dtype=np.uint8)) & 1
    return np.packbits(planes.reshape(-1).astype(np.uint8), bitorder="little").tobytes()


def unpack_bits(buf: bytes, n: int, bits: int) -> np.ndarray:
    raw = np.frombuffer(buf, dtype=np.uint8)
    if bits == 8:
        return raw[:n]
    planes = np.unpackbits(raw, count=n * bits, bitorder="little").reshape(n, bits)
    return (planes.astype(np.uint16) << np.arange(bits, dtype=np.uint16)).sum(axis=1)


# ---------------------------------------------------------------------------------------------
# writing


def pack(config: dict, tensors: dict[str, np.ndarray], merges, plan: dict[str, tuple[int, int]],
         compressor: str = "zlib", level: int | None = None) -> bytes:
    """The artifact bytes. ``plan[name] = (bits, group)``: bits 2..8 quantize, 16/32 store raw."""
    if compressor not in COMPRESSORS:
        raise ValueError(f"compressor must be one of {sorted(COMPRESSORS)}, got {compressor!r}")
    entries, blobs = [], []
    for name, value in tensors.items():
        arr = np.asarray(value, dtype=np.float32)
        bits, group = plan[name]
        if bits == 16:
            blob, group = arr.astype(np.float16).tobytes(), 0
        elif bits == 32:
            blob, group = arr.astype(np.float32).tobytes(), 0
        else:
            blob = quantize(arr, bits, group)
        entries.append({"name": name, "shape": list(arr.shape), "bits": int(bits), "group": int(group)})
        blobs.append(blob)
    header = json.dumps({"config": config, "merges": [list(m) for m in merges], "tensors": entries},
                        separators=(",", ":")).encode()
    body = struct.pack("<I", len(header)) + header + b"".join(blobs)
    return MAGIC + bytes([VERSION, COMPRESSORS[compressor]]) + _compress(body, compressor, level)


def _compress(body: bytes, compressor: str, level: int | None) -> bytes:
    if compressor == "none":
        return body
    if compressor == "zlib":
        return zlib.compress(body, 9 if level is None else level)
    if compressor == "lzma":
        return lzma.compress(body, preset=9 if level is None else level)
    import zstandard

    return zstandard.ZstdCompressor(level=19 if level is None else level).compress(body)


# ---------------------------------------------------------------------------------------------
# reading


def _decompress(payload: bytes, kind: int) -> bytes:
    try:
        if kind == 0:
            body = payload
        elif kind == 1:
            d = zlib.decompressobj()
            body = d.decompress(payload, MAX_BODY)
            if d.unconsumed_tail or not d.eof:
                raise ArtifactError("zlib payload is truncated or inflates past the size limit")
        elif kind == 2:
            d = lzma.LZMADecompressor()
            body = d.decompress(payload, max_length=MAX_BODY)
            if not d.eof:
                raise ArtifactError("lzma payload is truncated or inflates past the size limit")
        elif kind == 3:
            import zstandard

            with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(payload)) as r:
                body = r.read(MAX_BODY + 1)
            if len(body) > MAX_BODY:
                raise ArtifactError("zstd payload inflates past the size limit")
        else:
            raise ArtifactError(f"unknown compressor id {kind} (expected 0 none, 1 zlib, 2 lzma, 3 zstd)")
    except ArtifactError:
        raise
    except Exception as e:  # zlib.error, lzma.LZMAError, zstandard.ZstdError, MemoryError, ...
        raise ArtifactError(f"payload does not decompress: {e}") from None
    if len(body) > MAX_BODY:
        raise ArtifactError("payload inflates past the size limit")
    return body


def unpack(blob: bytes) -> tuple[dict, list, dict[str, np.ndarray]]:
    """``(config, merges, tensors)`` from artifact bytes; tensors dequantized to float32."""
    if len(blob) < len(MAGIC) + 2 or not blob.startswith(MAGIC):
        raise ArtifactError(f"not a golf-mini artifact (expected it to start with {MAGIC!r})")
    version, kind = blob[len(MAGIC)], blob[len(MAGIC) + 1]
    if version != VERSION:
        raise ArtifactError(f"artifact format version {version}, this evaluator reads version {VERSION}")
    body = _decompress(blob[len(MAGIC) + 2:], kind)
    if len(body) < 4:
        raise ArtifactError("body too short for its header length")
    (hlen,) = struct.unpack("<I", body[:4])
    if 4 + hlen > len(body):
        raise ArtifactError(f"header length {hlen} runs past the end of the body")
    try:
        header = json.loads(body[4: 4 + hlen].decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"header is not valid JSON: {e}") from None
    if not isinstance(header, dict) or set(header) != {"config", "merges", "tensors"}:
        raise ArtifactError("header must be an object with exactly: config, merges, tensors")
    entries = header["tensors"]
    if not isinstance(entries, list) or len(entries) > MAX_TENSORS:
        raise ArtifactError("header 'tensors' must be a list (at most 4096 entries)")
    pos, tensors = 4 + hlen, {}
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or set(e) != {"name", "shape", "bits", "group"}:
            raise ArtifactError(f"tensor entry {i} must have exactly: name, shape, bits, group")
        name, shape, bits, group = e["name"], e["shape"], e["bits"], e["group"]
        if not isinstance(name, str) or name in tensors:
            raise ArtifactError(f"tensor entry {i} has a missing or duplicate name")
        if (not isinstance(shape, list) or len(shape) > 4
                or not all(isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 1 << 24 for d in shape)):
            raise ArtifactError(f"tensor {name}: bad shape {shape!r}")
        n = math.prod(shape)
        if n > 1 << 28:
            raise ArtifactError(f"tensor {name}: {n} values is too many")
        if bits in (16, 32):
            size = n * bits // 8
        elif isinstance(bits, int) and 2 <= bits <= 8 and isinstance(group, int) and 1 <= group <= 1 << 20:
            size = quantized_size(n, bits, group)
        else:
            raise ArtifactError(f"tensor {name}: bits={bits!r} group={group!r} (bits 2..8 with a group, or 16/32)")
        chunk = body[pos: pos + size]
        if len(chunk) != size:
            raise ArtifactError(f"tensor {name}: data runs past the end of the body")
        pos += size
        if bits == 16:
            arr = np.frombuffer(chunk, dtype=np.float16).astype(np.float32)
        elif bits == 32:
            arr = np.frombuffer(chunk, dtype=np.float32).copy()
        else:
            arr = dequantize(chunk, n, bits, group)
        tensors[name] = arr.reshape(shape)
    if pos != len(body):
        raise ArtifactError(f"{len(body) - pos} trailing bytes after the last tensor")
    return header["config"], header["merges"], tensors
