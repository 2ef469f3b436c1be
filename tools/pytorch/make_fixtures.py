"""Writes the golden fixtures: weights, an input and the outputs of the PyTorch model built from
SPEC.md (ugatit_torch.py), as safetensors plus a JSON of the configuration.

    /usr/bin/python3 tools/pytorch/make_fixtures.py --out tests/fixtures

Tensor names: genA2B.<state_dict name>, disGA.<...> (global D), disLA.<...> (local D), input
(NCHW in [-1, 1]) and the outputs genA2B.out.{image,cam_logit,heatmap},
dis{GA,LA}.out.{logit,cam_logit,heatmap}, all NCHW; discriminators in evaluation mode. Then one
training-mode forward of the global D: disGA.out_train.{logit,cam_logit} and its updated
spectral-norm vectors disGA.after_train.<name>.weight_{u,v}.

With --float64 the same float32 weights and input are widened and every sum (the power iterations,
the forward passes) is computed in float64, then written as float32: the results float32 runs on
any processor are judged against (tests/golden_test.ts)."""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import write_safetensors  # noqa: E402
from ugatit_torch import Discriminator, Generator  # noqa: E402

CONFIGS = {
    "light_s32_ch8": dict(ch=8, n_res=2, img_size=32, light=True, n_layers_global=5, n_layers_local=3),
    "full_s32_ch8": dict(ch=8, n_res=2, img_size=32, light=False, n_layers_global=5, n_layers_local=3),
}


def perturb_norms(gen):
    """Moves rho, gamma and beta off their initial values so that the fixtures exercise them."""
    with torch.no_grad():
        for name, p in gen.named_parameters():
            if name.endswith(".rho"):
                p.copy_(torch.rand_like(p))
            elif name.endswith(".gamma") and p.dim() == 4:
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif name.endswith(".beta") and p.dim() == 4:
                p.copy_(0.2 * torch.randn_like(p))


def make(name, cfg, out_dir, seed, float64=False):
    torch.manual_seed(seed)
    gen = Generator(cfg["ch"], cfg["n_res"], cfg["img_size"], cfg["light"])
    perturb_norms(gen)
    dis_g = Discriminator(cfg["ch"], cfg["n_layers_global"])
    dis_l = Discriminator(cfg["ch"], cfg["n_layers_local"])
    x = torch.rand(2, 3, cfg["img_size"], cfg["img_size"]) * 2 - 1
    tensors = {"input": x}
    if float64:
        gen, dis_g, dis_l, x = gen.double(), dis_g.double(), dis_l.double(), x.double()
    with torch.no_grad():
        # A few power iterations in training mode give converged u, v; then evaluation mode.
        for d in (dis_g, dis_l):
            d.train()
            for _ in range(3):
                d(x)
            d.eval()
        gen.eval()
        for prefix, module in (("genA2B", gen), ("disGA", dis_g), ("disLA", dis_l)):
            for k, v in module.state_dict().items():
                tensors[f"{prefix}.{k}"] = v.clone()  # state_dict shares storage with the module
        image, cam, heat = gen(x)
        tensors.update({"genA2B.out.image": image, "genA2B.out.cam_logit": cam, "genA2B.out.heatmap": heat})
        for prefix, d in (("disGA", dis_g), ("disLA", dis_l)):
            logit, cam, heat = d(x)
            tensors.update({f"{prefix}.out.logit": logit, f"{prefix}.out.cam_logit": cam,
                            f"{prefix}.out.heatmap": heat})
        # One training-mode forward of the global D: its power iteration, then its output.
        dis_g.train()
        logit, cam, heat = dis_g(x)
        tensors.update({"disGA.out_train.logit": logit, "disGA.out_train.cam_logit": cam})
        for k, v in dis_g.state_dict().items():
            if k.endswith(("weight_u", "weight_v")):
                tensors[f"disGA.after_train.{k}"] = v
    write_safetensors(os.path.join(out_dir, f"{name}.safetensors"), tensors)
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump({k: cfg[k] for k in ("ch", "n_res", "img_size", "light", "n_layers_global", "n_layers_local")},
                  f, indent=2)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/fixtures", help="folder for the fixture files")
    ap.add_argument("--float64", action="store_true", help="every sum in float64 (see above)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)  # one thread: the same sums from run to run (their order is the kernels', by processor)
    for i, (name, cfg) in enumerate(sorted(CONFIGS.items())):
        make(name, cfg, args.out, seed=1000 + i, float64=args.float64)
        print(f"wrote {os.path.join(args.out, name)}.safetensors (torch {torch.__version__})")


if __name__ == "__main__":
    main()
