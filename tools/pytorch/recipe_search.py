"""A search over training recipes (the objectives' weights, the learning rate) on a GPU, with the
PyTorch model of ugatit_torch.py (the reference's model, losses and order, as bench_step.py) and
the toolkit's own data. The configurations of GRID train side by side in one process: each one's
iteration is captured once as a CUDA graph and replayed on a stream of its own, so that their
small kernels overlap on the GPU (eagerly, one after another, on the CPU). Every --eval_every
iterations each is judged on the held-out pairs by its generators' moving average. Its judge is a
stand-in for `deno task eval`'s (the same network shape and schedule, PyTorch's initialisation), so
its figures rank configurations against each other; eval.json's come from `deno task eval`.

    deno run -A tools/pytorch/dump_dataset.ts emoji:google2twitter 64 data/      # here
    python3 tools/pytorch/recipe_search.py --pack data/ emoji64.npz
    python3 tools/pytorch/recipe_search.py --data emoji64.npz --out out/ --deadline 420 --check_graph

Writes, in --out: results.jsonl (a line per configuration and evaluation), summary.txt (the table)
and samples.png (held-out sources, a row per configuration's latest translations, true targets).
The CUDA-graph path has not run on a GPU yet (no device was lent when it was written);
--check_graph first compares 12 replayed iterations with 12 eager ones."""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ugatit_torch import Discriminator, Generator, discriminator_loss, generator_losses  # noqa: E402

# The configurations: the objectives' weights (adv, cycle, identity, cam), lr; everything else as
# `deno task train`'s defaults (light, S=64, ch=32, n_res 4, n_dis 4, EMA 0.999, decay on).
BASE = dict(adv=1.0, cycle=10.0, identity=5.0, cam=1000.0, lr=1e-4)
GRID = [
    dict(name="base"),
    dict(name="c5_i2.5", cycle=5.0, identity=2.5),
    dict(name="c3_i1.5", cycle=3.0, identity=1.5),
    dict(name="c2_i1", cycle=2.0, identity=1.0),
    dict(name="c1_i0.5", cycle=1.0, identity=0.5),
    dict(name="c10_i1", identity=1.0),
    dict(name="c5_i0.5", cycle=5.0, identity=0.5),
    dict(name="c3_i0.5", cycle=3.0, identity=0.5),
    dict(name="base_lr2e-4", lr=2e-4),
    dict(name="c3_i1.5_lr2e-4", cycle=3.0, identity=1.5, lr=2e-4),
    dict(name="c1_i1", cycle=1.0, identity=1.0),
    dict(name="c5_i2.5_lr2e-4", cycle=5.0, identity=2.5, lr=2e-4),
]


def pack_npz(folder, dst):
    """data/*.u8 and meta.json (dump_dataset.ts) -> one compressed .npz."""
    meta = json.load(open(os.path.join(folder, "meta.json")))
    arrays = {}
    for split in ("trainA", "trainB", "testA", "testB", "trainA64", "trainB64"):
        n, side = meta[split]["count"], meta[split]["side"]
        arrays[split] = np.fromfile(os.path.join(folder, split + ".u8"), np.uint8).reshape(n, side, side, 3)
    np.savez_compressed(dst, meta=json.dumps(meta), **arrays)


def load(npz, dev):
    """The splits as [N, 3, H, W] uint8 tensors on dev."""
    z = np.load(npz)
    return {k: torch.from_numpy(z[k]).permute(0, 3, 1, 2).contiguous().to(dev) for k in z.files if k != "meta"}


def unit_to_model(x):
    return x.float() / 127.5 - 1


class Judge(nn.Module):
    """eval/domain_classifier.ts's shape: 3x3 stride-2 convs (32, 64, 128, 128), ReLU, mean, one logit."""

    def __init__(self):
        super().__init__()
        w = [3, 32, 64, 128, 128]
        self.convs = nn.ModuleList(nn.Conv2d(w[i], w[i + 1], 3, 2, 1) for i in range(4))
        self.head = nn.Linear(128, 1)

    def features(self, x):
        for c in self.convs:
            x = F.relu(c(x))
        return x.mean(dim=(2, 3))

    def forward(self, x):
        return self.head(self.features(x)).flatten()


def train_judge(a, b, dev, steps=1500, batch=32, lr=1e-3):
    torch.manual_seed(0)
    j = Judge().to(dev)
    opt = torch.optim.Adam(j.parameters(), lr=lr)
    g = torch.Generator(device="cpu").manual_seed(0)
    half = batch // 2
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * (1 - step / steps)
        ia = torch.randint(a.shape[0], (half,), generator=g)
        ib = torch.randint(b.shape[0], (half,), generator=g)
        x = unit_to_model(torch.cat([a[ia.to(a.device)], b[ib.to(b.device)]]))
        if step % 2:
            x = x.flip(3)
        y = torch.cat([torch.zeros(half), torch.ones(half)]).to(dev)
        loss = F.binary_cross_entropy_with_logits(j(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return j.eval()


def kid(fx, fy):
    """Unbiased MMD^2 with the cubic polynomial kernel (KID), one set, x100."""
    d = fx.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    m, n = fx.shape[0], fy.shape[0]
    kxx, kyy, kxy = k(fx, fx), k(fy, fy), k(fx, fy)
    xx = (kxx.sum() - kxx.diag().sum()) / (m * (m - 1))
    yy = (kyy.sum() - kyy.diag().sum()) / (n * (n - 1))
    return float(100 * (xx + yy - 2 * kxy.mean()))


@torch.no_grad()
def judge_figures(judge, translated, source, target, to_b):
    """Share taken for the target domain, KID on the judge's features, L1 on [0, 1] to the pairs."""
    def share(x):
        p = torch.sigmoid(judge(x))
        return float(((p > 0.5) if to_b else (p <= 0.5)).float().mean())
    ft, fs, fy = judge.features(translated), judge.features(source), judge.features(target)
    l1 = lambda x: float(((x - target).abs() / 2).mean())  # noqa: E731
    return dict(share=share(translated), share_src=share(source), kid=kid(ft, fy), kid_src=kid(fs, fy),
                l1=l1(translated), l1_src=l1(source))


class Run:
    """One configuration: its networks, Adam moments, generators' moving average and (on CUDA) its
    training iteration captured as a CUDA graph, replayed on a stream of its own so that the
    configurations' small kernels overlap on the GPU."""

    def __init__(self, index, a, data, judge, dev):
        self.index, self.a, self.data, self.judge, self.dev = index, a, data, judge, dev
        self.cfg = cfg = {**BASE, **GRID[index]}
        torch.manual_seed(a.seed)
        S, ch = a.img_size, a.ch
        self.gA2B, self.gB2A = (Generator(ch, 4, S, True).to(dev) for _ in range(2))
        self.dGA, self.dGB = (Discriminator(ch, a.n_dis + 1).to(dev) for _ in range(2))
        self.dLA, self.dLB = (Discriminator(ch, a.n_dis - 1).to(dev) for _ in range(2))
        self.G, self.D = [self.gA2B, self.gB2A], [self.dGA, self.dGB, self.dLA, self.dLB]
        self.pG = [p for m in self.G for p in m.parameters()]
        self.pD = [p for m in self.D for p in m.parameters()]
        self.rho = [p for m in self.G for n, p in m.named_parameters() if n.endswith("rho")]
        self.adam = {id(p): (torch.zeros_like(p), torch.zeros_like(p)) for p in self.pG + self.pD}
        self.t = torch.zeros((), device=dev)  # Adam's step count, as a tensor a graph can advance
        self.lr = torch.full((), cfg["lr"], device=dev)
        self.ema_w = torch.zeros((), device=dev)  # 1 - the moving average's decay this iteration
        self.ema = [[p.detach().clone() for p in m.parameters()] for m in self.G]
        self.inA = torch.zeros(1, 3, S, S, dtype=torch.uint8, device=dev)
        self.inB = torch.zeros_like(self.inA)
        self.rng = np.random.default_rng(a.seed + 1)
        self.stream = torch.cuda.Stream(dev) if dev.type == "cuda" else None
        self.graph = None
        self.eager = False
        self.it = 0
        self.t0 = time.time()

    def adam_step(self, params, grads):
        """torch.optim.Adam (betas 0.5, 0.999, coupled weight decay 1e-4), the step count and
        learning rate as tensors so that a captured graph replays it right."""
        b1, b2, eps, wd = 0.5, 0.999, 1e-8, 1e-4
        bc1, bc2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        with torch.no_grad():
            for p, g in zip(params, grads):
                m, v = self.adam[id(p)]
                g = g + wd * p
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                p.sub_(self.lr / bc1 * m / ((v / bc2).sqrt() + eps))

    def step(self):
        """One reference iteration (D step on detached fakes, G step, rho clipped), then the
        moving average; reads the uint8 inputs inA, inB."""
        cfg = self.cfg
        nets = (*self.G, *self.D)
        real_A, real_B = unit_to_model(self.inA), unit_to_model(self.inB)
        self.t.add_(1)
        d_loss = cfg["adv"] * discriminator_loss(*nets, real_A, real_B)
        self.adam_step(self.pD, torch.autograd.grad(d_loss, self.pD))
        adv, cycle, identity, cam = generator_losses(*nets, real_A, real_B)
        g_loss = cfg["adv"] * adv + cfg["cycle"] * cycle + cfg["identity"] * identity + cfg["cam"] * cam
        self.adam_step(self.pG, torch.autograd.grad(g_loss, self.pG))
        with torch.no_grad():
            for p in self.rho:
                p.clamp_(0, 1)
            for m, e in zip(self.G, self.ema):
                for ep, p in zip(e, m.parameters()):
                    ep.lerp_(p, self.ema_w)

    def feed(self):
        """Draws this iteration's inputs (random crop of the resized image, random mirror), sets
        the learning rate (linear decay over the second half) and the average's weight."""
        a, S = self.a, self.a.img_size
        for name, dst in (("trainA", self.inA), ("trainB", self.inB)):
            src = self.data[name]
            i = int(self.rng.integers(src.shape[0]))
            top, left = (int(v) for v in self.rng.integers(src.shape[-1] - S + 1, size=2))
            x = src[i:i + 1, :, top:top + S, left:left + S]
            dst.copy_(x.flip(3) if self.rng.random() < 0.5 else x)
        half = a.iters // 2
        it = self.it + 1
        lr = self.cfg["lr"] * (1 - (it - half) / half) if it > half else self.cfg["lr"]
        self.lr.fill_(lr)
        self.ema_w.fill_(1 - min(a.ema, (1 + self.it) / (10 + self.it)))

    def advance(self):
        """One iteration: eagerly for the first three (CUDA's warm-up), then by graph replay."""
        if self.stream is None:
            self.feed()
            self.step()
        else:
            with torch.cuda.stream(self.stream):
                self.feed()
                if self.graph is not None:
                    self.graph.replay()
                elif self.it < 3:
                    self.step()
                elif self.graph is None and not self.eager:
                    try:
                        graph = torch.cuda.CUDAGraph()
                        self.stream.synchronize()
                        # Capture records without running: replay once for this iteration.
                        with torch.cuda.graph(graph, stream=self.stream):
                            self.step()
                        graph.replay()
                        self.graph = graph
                    except Exception as e:  # noqa: BLE001 - say why, then train eagerly
                        print(f"{self.cfg['name']}: no CUDA graph ({e!r}); training eagerly", flush=True)
                        self.eager = True
                        self.step()
                else:
                    self.step()
        self.it += 1

    @torch.no_grad()
    def evaluate(self):
        if self.stream is not None:
            self.stream.synchronize()
        a, data = self.a, self.data
        g = Generator(a.ch, 4, a.img_size, True).to(self.dev)
        outs = []
        for e, src in zip(self.ema, ("testA", "testB")):
            for gp, ep in zip(g.parameters(), e):
                gp.copy_(ep)
            outs.append(torch.cat([g(unit_to_model(x))[0] for x in data[src].split(64)]))
        testA, testB = unit_to_model(data["testA"]), unit_to_model(data["testB"])
        row = dict(config=self.cfg["name"], worker=self.index, iteration=self.it,
                   seconds=round(time.time() - self.t0, 1),
                   A2B=judge_figures(self.judge, outs[0], testA, testB, True),
                   B2A=judge_figures(self.judge, outs[1], testB, testA, False))
        with open(os.path.join(a.work, f"results_{self.index}.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")
        pics = ((outs[0][:a.n_samples] + 1) * 127.5).round().clamp(0, 255).byte().cpu().numpy()
        np.save(os.path.join(a.work, f"samples_{self.index}.npy"), pics)

    def params(self):
        return [p.detach().clone() for p in self.pG + self.pD]


def check_graph(a, data, judge, dev):
    """The same configuration trained 12 iterations eagerly and by graph replay: the parameters'
    largest difference, relative to their largest value (cuDNN's algorithms differ run to run)."""
    runs = [Run(0, a, data, judge, dev) for _ in range(2)]
    runs[0].stream = None
    for r in runs:
        for _ in range(12):
            r.advance()
    torch.cuda.synchronize()
    diff = max(float((x - y).abs().max()) for x, y in zip(runs[0].params(), runs[1].params()))
    top = max(float(x.abs().max()) for x in runs[0].params())
    print(f"graph check: 12 iterations, eager vs replayed, max |diff| {diff:.3g} (max |param| {top:.3g})",
          flush=True)


def train_all(a, data, judge, dev):
    runs = [Run(i, a, data, judge, dev) for i in range(min(a.workers, len(GRID)))]
    t0 = time.time()
    for r in runs:
        r.t0 = t0
    while runs[0].it < a.iters and time.time() - t0 < a.deadline:
        for r in runs:
            r.advance()
        if runs[0].it % a.eval_every == 0:
            for r in runs:
                r.evaluate()
            summarize(a, data)
            print(f"{runs[0].it} iterations, {time.time() - t0:.0f} s", flush=True)
    if runs[0].it % a.eval_every:
        for r in runs:
            r.evaluate()
    for r in runs:
        torch.save({"genA2B": [p.half().cpu() for p in r.ema[0]], "genB2A": [p.half().cpu() for p in r.ema[1]]},
                   os.path.join(a.work, f"ema_{r.index}.pt"))


def summarize(a, data):
    """Gathers the workers' lines into --out: results.jsonl, summary.txt, samples.png."""
    rows = []
    for i in range(min(a.workers, len(GRID))):
        p = os.path.join(a.work, f"results_{i}.jsonl")
        if os.path.exists(p):
            rows += [json.loads(line) for line in open(p) if line.strip()]
    with open(os.path.join(a.out, "results.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    lines = [f"{'config':<18} {'iter':>6} {'s':>6} | A2B share  kid  l1    | B2A share  kid  l1"]
    for r in sorted(rows, key=lambda r: (r["worker"], r["iteration"])):
        x, y = r["A2B"], r["B2A"]
        lines.append(f"{r['config']:<18} {r['iteration']:>6} {r['seconds']:>6.0f} | {x['share']:.3f} "
                     f"{x['kid']:6.3f} {x['l1']:.3f} | {y['share']:.3f} {y['kid']:6.3f} {y['l1']:.3f}")
    if rows:
        x, y = rows[0]["A2B"], rows[0]["B2A"]
        lines.append(f"{'sources':<18} {'':>6} {'':>6} | {x['share_src']:.3f} {x['kid_src']:6.3f} "
                     f"{x['l1_src']:.3f} | {y['share_src']:.3f} {y['kid_src']:6.3f} {y['l1_src']:.3f}")
    open(os.path.join(a.out, "summary.txt"), "w").write("\n".join(lines) + "\n")
    # One picture: sources on top, a row per configuration, true targets at the bottom.
    n = a.n_samples
    src = data["testA"][:n].cpu().numpy()
    tgt = data["testB"][:n].cpu().numpy()
    strips = [src]
    for i in range(min(a.workers, len(GRID))):
        p = os.path.join(a.work, f"samples_{i}.npy")
        strips.append(np.load(p) if os.path.exists(p) else np.full_like(src, 128))
    strips.append(tgt)
    grid = np.concatenate([np.concatenate(list(s.transpose(0, 2, 3, 1)), axis=1) for s in strips], axis=0)
    write_png(os.path.join(a.out, "samples.png"), grid)


def write_png(path, rgb):
    """An RGB uint8 [H, W, 3] array as a PNG (zlib alone: no imaging library needed)."""
    import struct
    import zlib
    h, w, _ = rgb.shape
    raw = b"".join(b"\0" + rgb[y].tobytes() for y in range(h))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    open(path, "wb").write(png)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="the .npz of --pack")
    ap.add_argument("--out", default="search_out")
    ap.add_argument("--work", default="/tmp/recipe_search")
    ap.add_argument("--pack", nargs=2, metavar=("FOLDER", "NPZ"), help="pack dump_dataset.ts output")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--workers", type=int, default=len(GRID), help="how many configurations, from the grid's top")
    ap.add_argument("--check_graph", action="store_true", help="first compare graph replay with eager")
    ap.add_argument("--iters", type=int, default=10_000)
    ap.add_argument("--eval_every", type=int, default=1000)
    ap.add_argument("--deadline", type=float, default=420, help="seconds of training at most")
    ap.add_argument("--img_size", type=int, default=64)
    ap.add_argument("--ch", type=int, default=32)
    ap.add_argument("--n_dis", type=int, default=4)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--judge_steps", type=int, default=1500)
    ap.add_argument("--n_samples", type=int, default=12)
    a = ap.parse_args()
    if a.pack:
        pack_npz(*a.pack)
        return
    os.makedirs(a.out, exist_ok=True)
    os.makedirs(a.work, exist_ok=True)
    for f in os.listdir(a.work):
        os.remove(os.path.join(a.work, f))
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        print(f"{torch.cuda.get_device_name(dev)}, torch {torch.__version__}, TF32 convolutions "
              f"{torch.backends.cudnn.allow_tf32}", flush=True)
    data = load(a.data, dev)
    t = time.time()
    judge = train_judge(data["trainA64"], data["trainB64"], dev, steps=a.judge_steps)
    with torch.no_grad():
        right_a = float((torch.sigmoid(judge(unit_to_model(data["testA"]))) <= 0.5).float().mean())
        right_b = float((torch.sigmoid(judge(unit_to_model(data["testB"]))) > 0.5).float().mean())
    torch.save(judge.state_dict(), os.path.join(a.work, "judge.pt"))
    print(f"judge: {time.time() - t:.1f} s, right on held-out A {right_a:.3f}, B {right_b:.3f}", flush=True)
    if dev.type == "cuda" and a.check_graph:
        check_graph(a, data, judge, dev)
    train_all(a, data, judge, dev)
    summarize(a, data)
    print(open(os.path.join(a.out, "summary.txt")).read(), flush=True)


if __name__ == "__main__":
    main()
