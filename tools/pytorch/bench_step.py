"""The PyTorch peer for `deno task bench --vs-torch`: one U-GAT-IT training iteration of the model
in ugatit_torch.py (built from SPEC.md) with the reference's losses, Adam and order (D step on
detached fakes, G step, rho clipping), timed over N iterations; prints one JSON line. With --forward: the A2B generator's forward pass
alone (a translation, no gradients), for `deno task bench:forward --vs-torch`.

    /usr/bin/python3 tools/pytorch/bench_step.py --light --img_size 64 --ch 32 --n_res 4 --n_dis 4 --steps 5
    python3 tools/pytorch/bench_step.py --device cuda --light --img_size 256 --ch 64 --n_dis 6"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ugatit_torch import Discriminator, Generator, discriminator_loss, generator_losses  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--light", action="store_true")
    ap.add_argument("--img_size", type=int, default=64)
    ap.add_argument("--ch", type=int, default=32)
    ap.add_argument("--n_res", type=int, default=4)
    ap.add_argument("--n_dis", type=int, default=4)
    ap.add_argument("--batch_size", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (eager, PyTorch's defaults)")
    ap.add_argument("--serve", action="store_true", help="run iterations on request (stdin)")
    ap.add_argument("--forward", action="store_true", help="time the A2B generator's forward pass")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    S = a.img_size
    if a.forward:
        serve(a, dev, *translation(a, dev))
        return
    gA2B, gB2A = (Generator(a.ch, a.n_res, S, a.light).to(dev) for _ in range(2))
    dGA, dGB = (Discriminator(a.ch, a.n_dis + 1).to(dev) for _ in range(2))
    dLA, dLB = (Discriminator(a.ch, a.n_dis - 1).to(dev) for _ in range(2))
    G = [gA2B, gB2A]
    D = [dGA, dGB, dLA, dLB]
    for m in G + D:
        m.train()
    opt = dict(lr=1e-4, betas=(0.5, 0.999), weight_decay=1e-4)
    optG = torch.optim.Adam([p for m in G for p in m.parameters()], **opt)
    optD = torch.optim.Adam([p for m in D for p in m.parameters()], **opt)
    real_A = (torch.rand(a.batch_size, 3, S, S) * 2 - 1).to(dev)
    real_B = (torch.rand(a.batch_size, 3, S, S) * 2 - 1).to(dev)

    def step():
        optD.zero_grad()
        discriminator_loss(*G, *D, real_A, real_B).backward()
        optD.step()
        optG.zero_grad()
        adv, cycle, identity, cam = generator_losses(*G, *D, real_A, real_B)
        (adv + 10 * cycle + 10 * identity + 1000 * cam).backward()
        optG.step()
        with torch.no_grad():
            for m in G:
                for name, p in m.named_parameters():
                    if name.endswith("rho"):
                        p.clamp_(0, 1)

    serve(a, dev, step, "step_ms_median")


def translation(a, dev):
    """The A2B generator alone (eval mode, no autograd) and one forward pass of it."""
    g = Generator(a.ch, a.n_res, a.img_size, a.light).to(dev).eval()
    x = (torch.rand(a.batch_size, 3, a.img_size, a.img_size) * 2 - 1).to(dev)

    def forward():
        with torch.inference_mode():
            g(x)
    return forward, "g_forward_ms_median"


def serve(a, dev, step, key):
    """Times `step`: on request from stdin (--serve) or --steps times, printing JSON lines."""
    cuda = dev.type == "cuda"

    def timed():
        # CUDA runs asynchronously: an iteration is done when the device has finished it.
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) * 1000

    def info():
        out = {
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "backend": f"torch {torch.__version__} {a.device}" + (
                f" ({torch.cuda.get_device_name(dev)}, eager, TF32 convolutions "
                f"{'on' if torch.backends.cudnn.allow_tf32 else 'off'})" if cuda
                else f", {a.threads} threads"),
        }
        if cuda:
            out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
        return out

    timed()  # warm-up
    if a.serve:
        # Driven by `deno task bench`: each stdin line "N" runs N iterations and answers with their
        # times, so that ours and these alternate in rounds and share the machine's slow spells.
        for line in sys.stdin:
            if not line.strip():
                continue
            times = [timed() for _ in range(int(line))]
            print(json.dumps({"times_ms": [round(t, 1) for t in times], **info()}), flush=True)
        return
    times = [timed() for _ in range(a.steps)]
    print(json.dumps({
        "impl": "pytorch",
        key: round(statistics.median(times), 1),
        "steps": a.steps,
        **info(),
    }))


if __name__ == "__main__":
    main()
