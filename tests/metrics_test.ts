import * as tf from "@tensorflow/tfjs";
import { assertAlmostEquals, assertRejects } from "@std/assert";
import { fid, kid, l1Distance, psnr, ssim } from "../eval/metrics.ts";
import { selectBackend } from "../backends/mod.ts";

await selectBackend("cpu");

Deno.test("await psnr() and await l1Distance() equal their closed forms", async () => {
  const a = tf.fill([1, 4, 4, 3], 0.5) as tf.Tensor4D;
  const b = tf.fill([1, 4, 4, 3], 0.6) as tf.Tensor4D;
  assertAlmostEquals(await psnr(a, b), 20, 1e-4); // mse 0.01
  assertAlmostEquals(await l1Distance(a, b), 0.1, 1e-6);
});

Deno.test("await ssim() is 1 on identical images, the closed form on constants, and the direct sum on noise", async () => {
  const x = tf.randomUniform([2, 12, 13, 2], 0, 1, "float32", 3) as tf.Tensor4D;
  assertAlmostEquals(await ssim(x, x), 1, 1e-5);
  const [c1] = [0.01 ** 2];
  const constant = await ssim(
    tf.fill([1, 11, 11, 1], 0.2) as tf.Tensor4D,
    tf.fill([1, 11, 11, 1], 0.6) as tf.Tensor4D,
  );
  assertAlmostEquals(constant, (2 * 0.2 * 0.6 + c1) / (0.2 ** 2 + 0.6 ** 2 + c1), 1e-5);

  // by hand: Gaussian-weighted means, variances and covariance at every valid 11x11 window
  const y = tf.randomUniform([1, 12, 12, 1], 0, 1, "float32", 4) as tf.Tensor4D;
  const z = tf.randomUniform([1, 12, 12, 1], 0, 1, "float32", 5) as tf.Tensor4D;
  const [Y, Z] = [await y.data(), await z.data()];
  const g = Array.from({ length: 11 }, (_, i) => Math.exp(-((i - 5) ** 2) / (2 * 1.5 ** 2)));
  const gs = g.reduce((s, v) => s + v, 0);
  let total = 0;
  for (let r = 0; r < 2; r++) {
    for (let c = 0; c < 2; c++) {
      let [my, mz, yy, zz, yz] = [0, 0, 0, 0, 0];
      for (let i = 0; i < 11; i++) {
        for (let j = 0; j < 11; j++) {
          const w = (g[i] * g[j]) / (gs * gs);
          const [a, b] = [Y[(r + i) * 12 + c + j], Z[(r + i) * 12 + c + j]];
          [my, mz, yy, zz, yz] = [
            my + w * a,
            mz + w * b,
            yy + w * a * a,
            zz + w * b * b,
            yz + w * a * b,
          ];
        }
      }
      const [vy, vz, cyz] = [yy - my * my, zz - mz * mz, yz - my * mz];
      const c2 = 0.03 ** 2;
      total += ((2 * my * mz + c1) * (2 * cyz + c2)) / ((my * my + mz * mz + c1) * (vy + vz + c2));
    }
  }
  assertAlmostEquals(await ssim(y, z), total / 4, 1e-5);
  await assertRejects(
    () => ssim(tf.zeros([1, 8, 8, 1]) as tf.Tensor4D, tf.zeros([1, 8, 8, 1]) as tf.Tensor4D),
    Error,
    "11x11",
  );
});

Deno.test("await kid() is the unbiased MMD^2 with the cubic kernel (hand-computed on three points)", async () => {
  const X = [[1, 0], [0, 1], [1, 1]];
  const Y = [[2, 0], [0, 0], [1, 2]];
  const k = (a: number[], b: number[]) => ((a[0] * b[0] + a[1] * b[1]) / 2 + 1) ** 3;
  const sumOff = (P: number[][]) =>
    P.flatMap((a, i) => P.map((b, j) => (i === j ? 0 : k(a, b)))).reduce((s, v) => s + v);
  const cross = X.flatMap((a) => Y.map((b) => k(a, b))).reduce((s, v) => s + v);
  const expected = (sumOff(X) + sumOff(Y)) / 6 - (2 * cross) / 9;
  const r = await kid(tf.tensor2d(X), tf.tensor2d(Y), { subsets: 3 });
  assertAlmostEquals(r.mean, expected, 1e-4);
  assertAlmostEquals(r.std, 0, 1e-6); // every subset is the whole set
  const same = await kid(tf.tensor2d(X), tf.tensor2d(X), { subsets: 1 });
  assertAlmostEquals(
    same.mean,
    (2 * sumOff(X)) / 6 - (2 * X.flatMap((a) => X.map((b) => k(a, b))).reduce((s, v) => s + v)) / 9,
    1e-4,
  );
});

Deno.test("await fid() equals the closed form for 1-D and diagonal Gaussians, and 0 for identical sets", async () => {
  // 1-D: means 1 and 3, variances 2 and 8: (1 - 3)^2 + 2 + 8 - 2 sqrt(16) = 6
  assertAlmostEquals(await fid(tf.tensor2d([[0], [2]]), tf.tensor2d([[1], [5]])), 6, 1e-9);
  // independent coordinates: the sum of the 1-D distances
  const x = tf.tensor2d([[0, 1], [2, 1], [0, 3], [2, 3]]); // means (1, 2), variances (4/3, 4/3)
  const y = tf.tensor2d([[1, 0], [5, 0], [1, 4], [5, 4]]); // means (3, 2), variances (16/3, 16/3)
  const oneD = (m1: number, v1: number, m2: number, v2: number) =>
    (m1 - m2) ** 2 + v1 + v2 - 2 * Math.sqrt(v1 * v2);
  assertAlmostEquals(await fid(x, y), oneD(1, 4 / 3, 3, 16 / 3) + oneD(2, 4 / 3, 2, 16 / 3), 1e-9);
  const r = tf.randomNormal([50, 6], 0, 1, "float32", 8) as tf.Tensor2D;
  assertAlmostEquals(await fid(r, r), 0, 1e-6);
});
