"""Converts a reference U-GAT-IT checkpoint (a torch.save'd dict with genA2B, genB2A, disGA,
disGB, disLA, disLB state_dicts) to one safetensors file with names `<network>.<state_dict name>`,
which `readReferenceCheckpoint` loads into the toolkit, and back.

    /usr/bin/python3 tools/pytorch/convert_checkpoint.py to-safetensors model.pt model.safetensors
    /usr/bin/python3 tools/pytorch/convert_checkpoint.py to-torch model.safetensors model.pt"""
import argparse
import collections
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import read_safetensors, write_safetensors  # noqa: E402

NETWORKS = ("genA2B", "genB2A", "disGA", "disGB", "disLA", "disLB")


def to_safetensors(src, dst):
    ckpt = torch.load(src, map_location="cpu")
    missing = [n for n in NETWORKS if n not in ckpt]
    if missing:
        sys.exit(f"{src}: not a U-GAT-IT checkpoint, missing {', '.join(missing)}")
    write_safetensors(dst, {f"{net}.{k}": v for net in NETWORKS for k, v in ckpt[net].items()})


def to_torch(src, dst):
    tensors = read_safetensors(src)
    ckpt = {net: collections.OrderedDict() for net in NETWORKS}
    for name, t in tensors.items():
        net, _, key = name.partition(".")
        if net not in ckpt:
            sys.exit(f"{src}: tensor {name} belongs to no network of {', '.join(NETWORKS)}")
        ckpt[net][key] = t
    torch.save(ckpt, dst)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("direction", choices=["to-safetensors", "to-torch"])
    ap.add_argument("src")
    ap.add_argument("dst")
    a = ap.parse_args()
    (to_safetensors if a.direction == "to-safetensors" else to_torch)(a.src, a.dst)
    print(f"wrote {a.dst}")


if __name__ == "__main__":
    main()
