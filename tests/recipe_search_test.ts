/**
 * tools/pytorch/recipe_search.py, on the CPU (its CUDA-graph path needs a GPU): one of its
 * iterations (its own Adam, with the step count and learning rate as tensors) equals the
 * reference's with torch.optim.Adam, and a tiny search runs end to end and writes its table,
 * its lines and its picture.
 */
import { assert, assertEquals } from "@std/assert";
import { findTorchPython } from "./helpers.ts";

const tools = new URL("../tools/pytorch/", import.meta.url).pathname;

async function python(exe: string, args: string[], cwd = tools): Promise<string> {
  const out = await new Deno.Command(exe, { args, cwd }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 0, text);
  return text;
}

// A dataset of random pictures in the layout dump_dataset.ts + --pack make (72-px training
// images, 64-px test and judge images).
const MAKE_DATA = `
import json, sys, numpy as np
r = np.random.default_rng(0)
im = lambda n, s: r.integers(0, 256, (n, s, s, 3), dtype=np.uint8)
meta = dict(size=64, margin=72, paired=True)
np.savez_compressed(sys.argv[1], meta=json.dumps(meta), trainA=im(6, 72), trainB=im(6, 72),
                    testA=im(5, 64), testB=im(5, 64), trainA64=im(6, 64), trainB64=im(6, 64))
`;

async function withData<T>(body: (exe: string, dir: string) => Promise<T>) {
  const exe = await findTorchPython();
  if (!exe) {
    console.log("  SKIPPED: no python3 with torch here (apt-get install python3-torch)");
    return;
  }
  const dir = await Deno.makeTempDir();
  try {
    await python(exe, ["-c", MAKE_DATA, `${dir}/data.npz`]);
    await body(exe, dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("recipe search: one iteration equals the reference's with torch.optim.Adam", async () => {
  await withData(async (exe, dir) => {
    const check = `
import copy, sys, types, torch
import torch.nn.functional as F
import recipe_search as rs
a = types.SimpleNamespace(seed=0, img_size=64, ch=4, n_dis=4, iters=10, ema=0.999, work="/tmp", n_samples=2)
run = rs.Run(2, a, rs.load(sys.argv[1], torch.device("cpu")), None, torch.device("cpu"))  # cycle 3, identity 1.5
G, D = copy.deepcopy(run.G), copy.deepcopy(run.D)
before = [p.detach().clone() for p in run.pG + run.pD]
run.feed()
A, B = rs.unit_to_model(run.inA), rs.unit_to_model(run.inB)
run.step()
opt = dict(lr=1e-4, betas=(0.5, 0.999), weight_decay=1e-4)
pG, pD = [p for m in G for p in m.parameters()], [p for m in D for p in m.parameters()]
oG, oD = torch.optim.Adam(pG, **opt), torch.optim.Adam(pD, **opt)
gA2B, gB2A = G
dGA, dGB, dLA, dLB = D
mse, l1, bce, ones, zeros = F.mse_loss, F.l1_loss, F.binary_cross_entropy_with_logits, torch.ones_like, torch.zeros_like
adv = lambda outs, t: sum(mse(x, t(x)) for o in outs for x in o[:2])
with torch.no_grad():
    fA, fB = gA2B(A)[0], gB2A(B)[0]
(adv([dGA(A), dLA(A), dGB(B), dLB(B)], ones) + adv([dGA(fB), dLA(fB), dGB(fA), dLB(fA)], zeros)).backward()
gD = [p.grad.detach() + 1e-4 * p.detach() for p in pD]  # what Adam sees, decay included
oD.step()
A2B, cA2B, _ = gA2B(A); B2A, cB2A, _ = gB2A(B); A2A, cA2A, _ = gB2A(A); B2B, cB2B, _ = gA2B(B)
g = adv([dGA(B2A), dLA(B2A), dGB(A2B), dLB(A2B)], ones) + \\
    3 * (l1(gB2A(A2B)[0], A) + l1(gA2B(B2A)[0], B)) + 1.5 * (l1(A2A, A) + l1(B2B, B)) + \\
    1000 * (bce(cB2A, ones(cB2A)) + bce(cA2A, zeros(cA2A)) + bce(cA2B, ones(cA2B)) + bce(cB2B, zeros(cB2B)))
oG.zero_grad()
g.backward()
gG = [p.grad.detach() + 1e-4 * p.detach() for p in pG]
oG.step()
with torch.no_grad():
    for p in (p for m in G for n, p in m.named_parameters() if n.endswith("rho")):
        p.clamp_(0, 1)
moved = max(float((p - q).abs().max()) for p, q in zip(before, pG + pD))
# Adam's first step moves each parameter by lr * g / (|g| + eps): about lr * sign(g). Two correct
# float32 implementations sum gradients in other orders (other kernels, other processors), so g
# differs by delta, up to about 1e-5 of the tensor's largest gradient (~170 roundings of it: sums
# of thousands of terms), and the step by at most 2 * lr * delta / (|g| + eps) (the map
# g -> g / (|g| + eps) has slope at most 1 / (|g| + eps)), plus 1e-6 for rounding the update.
# Where |g| is at rounding level (cancellation) the sign itself is noise and the bound is loose;
# elsewhere it is far below lr, so a wrong update shows.
worst, over = 0.0, 0
for p, q, gr in zip(run.pG + run.pD, pG + pD, gG + gD):
    delta = 1e-5 * float(gr.abs().max())
    allowed = 1e-6 + 2 * 1e-4 * delta / (gr.abs() + 1e-8)
    d = (p - q).abs()
    worst = max(worst, float((d / allowed).max()))
    over += int((d > 1e-6).sum())
print(f"moved {moved:.3g} worst {worst:.3g} over {over}")
`;
    const out = await python(exe, ["-c", check, `${dir}/data.npz`]);
    const [, moved, worst] = /moved (\S+) worst (\S+)/.exec(out)!.map(Number);
    // Adam moves parameters by about lr (1e-4) at its first step: a wrong update shows.
    assert(moved > 5e-5, out);
    assert(worst <= 1, out); // every parameter within the bound the arithmetic allows (above)
  });
});

Deno.test("recipe search: a tiny search writes its table, lines and picture", async () => {
  await withData(async (exe, dir) => {
    await python(exe, [
      `${tools}recipe_search.py`,
      ...["--data", `${dir}/data.npz`, "--out", `${dir}/out`, "--work", `${dir}/work`],
      ...["--device", "cpu", "--workers", "2", "--iters", "2", "--eval_every", "1"],
      ...["--judge_steps", "2", "--ch", "4", "--n_samples", "3"],
    ]);
    const lines = (await Deno.readTextFile(`${dir}/out/results.jsonl`)).trim().split("\n")
      .map((l) => JSON.parse(l));
    assertEquals(
      lines.map((l) => `${l.config}@${l.iteration}`).sort(),
      ["base@1", "base@2", "c5_i2.5@1", "c5_i2.5@2"],
    );
    for (const l of lines) {
      for (const d of ["A2B", "B2A"]) {
        for (const k of ["share", "kid", "l1", "share_src", "kid_src", "l1_src"]) {
          assert(Number.isFinite(l[d][k]), `${d}.${k} of ${JSON.stringify(l)}`);
        }
      }
    }
    const table = await Deno.readTextFile(`${dir}/out/summary.txt`);
    assert(table.includes("sources"), table);
    const png = await Deno.readFile(`${dir}/out/samples.png`);
    assertEquals([...png.slice(1, 4)], [80, 78, 71]); // "PNG"
    // Sources, two configurations, targets: 4 rows of 64 px; 3 samples of 64 px across.
    const view = new DataView(png.buffer);
    assertEquals([view.getUint32(16), view.getUint32(20)], [3 * 64, 4 * 64]);
  });
});
