"""Runs a generator file exported with `deno task export --reference_names` in PyTorch: builds the
reference generator from the file's own configuration, loads the weights by their state_dict names
(strict), and translates the input tensor of a safetensors file (`input`, NCHW in [-1, 1]),
writing `image`, `cam_logit` and `heatmap`.

    /usr/bin/python3 tools/pytorch/run_generator.py generator.safetensors A2B input.safetensors out.safetensors"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import read_metadata, read_safetensors, write_safetensors  # noqa: E402
from ugatit_torch import Generator  # noqa: E402


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    path, direction, src, dst = sys.argv[1:]
    meta = read_metadata(path)
    if meta.get("names") != "reference":
        sys.exit(f"{path}: not exported with --reference_names (names: {meta.get('names')})")
    c = json.loads(meta["config"])
    g = Generator(c.get("ch", 64), c.get("nRes", 4), c.get("imgSize", 256), c.get("light", False),
                  c.get("imgCh", 3))
    prefix = f"gen{direction}."
    weights = {k[len(prefix):]: v for k, v in read_safetensors(path).items() if k.startswith(prefix)}
    g.load_state_dict(weights, strict=True)
    g.eval()
    with torch.no_grad():
        image, cam_logit, heatmap = g(read_safetensors(src)["input"])
    write_safetensors(dst, {"image": image, "cam_logit": cam_logit, "heatmap": heatmap})


if __name__ == "__main__":
    main()
