"""Minimal safetensors reading and writing for float32 tensors (float16 read too) (the format is a little-endian
u64 header length, a JSON header, then raw data), so that no extra Python package is needed."""
import json
import os
import struct

import torch


def write_safetensors(path, tensors):
    """Writes {name: tensor} as float32, names sorted, atomically (temporary file, then rename)."""
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().to(torch.float32)
        data = t.numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_metadata(path):
    """The file's __metadata__ entry (strings)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n)).get("__metadata__", {})


def read_safetensors(path):
    """Reads a file of F32 (or F16, converted) tensors as {name: float32 tensor}."""
    import numpy as np
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        kind = {"F32": "<f4", "F16": "<f2"}.get(e["dtype"])
        if kind is None:
            raise ValueError(f"{path}: tensor {name} is {e['dtype']}, expected F32 or F16")
        b, end = e["data_offsets"]
        arr = np.frombuffer(data[8 + n + b:8 + n + end], dtype=kind).reshape(e["shape"])
        out[name] = torch.from_numpy(arr.astype("<f4"))
    return out
