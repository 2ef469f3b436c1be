/**
 * 2-D convolution, its input gradient and its filter gradient, lowered to matrix multiplies
 * (NHWC tensors, HWIO filters, any stride and padding, no dilation). Pure functions over
 * Float32Arrays and a {@linkcode Gemm}: the same code runs on a native BLAS or a test's plain
 * loop.
 *
 * With `cols` the im2col matrix (one row per output pixel, `kh * kw * in` columns) and `W` the
 * filter viewed as `[kh * kw * in, out]`:
 * - forward: `Y = cols W`;
 * - filter gradient: `dW = cols^T dY`;
 * - input gradient: for stride 1, a forward convolution of `dY` with the filter flipped in space
 *   and its channels swapped (no scatter); for larger strides, `dcols = dY W^T` scattered back
 *   (col2im).
 *
 * A 1x1 stride-1 unpadded convolution is one multiply on the tensors themselves. Other stride-1
 * ones avoid the full `cols`: unpadded with 16 or more channels, tap by tap on the tensors
 * themselves, the output laid out on the input's row width so that tap `(a, b)` is one multiply
 * of the input shifted by `a * W + b` pixels (see `shifted`); otherwise (the 3-channel image
 * layers) one multiply per filter row on a copy expanded along the row (see `expandRows`).
 * Column matrices are built a band of output rows at a time, so memory stays bounded.
 *
 * @module
 */
import type { Gemm } from "./blas.ts";

/** The shape of one convolution (TensorFlow.js's `Conv2DInfo` has these fields and more). */
export interface ConvGeometry {
  /** N. */
  readonly batchSize: number;
  /** Input H. */
  readonly inHeight: number;
  /** Input W. */
  readonly inWidth: number;
  /** Input C. */
  readonly inChannels: number;
  /** Output H. */
  readonly outHeight: number;
  /** Output W. */
  readonly outWidth: number;
  /** Output C. */
  readonly outChannels: number;
  /** Kernel H. */
  readonly filterHeight: number;
  /** Kernel W. */
  readonly filterWidth: number;
  /** Stride in H. */
  readonly strideHeight: number;
  /** Stride in W. */
  readonly strideWidth: number;
  /** Zero padding before the first row and column. */
  readonly padInfo: { readonly top: number; readonly left: number };
}

// Most floats a band of `cols` holds (16 MiB).
const BAND_FLOATS = 1 << 22;
let scratch = new Float32Array(0);
function scratchOf(size: number): Float32Array {
  if (scratch.length < size) scratch = new Float32Array(size);
  return scratch.subarray(0, size);
}

/** A source image (one sample) and how the columns read it. */
interface Lowering {
  readonly h: number;
  readonly w: number;
  readonly c: number;
  readonly kh: number;
  readonly kw: number;
  readonly sh: number;
  readonly sw: number;
  readonly top: number;
  readonly left: number;
  /** Output width (columns per band row). */
  readonly outW: number;
}

/**
 * Copies the `kw` pixels from column `ix0` of an image row (`base` indexes pixel `ix0` of it) to
 * `dst` at `o`, zeros for the columns outside `[0, w)`.
 */
function copyWindow(
  src: Float32Array,
  base: number,
  ix0: number,
  w: number,
  c: number,
  kw: number,
  dst: Float32Array,
  o: number,
) {
  const seg = kw * c;
  if (ix0 >= 0 && ix0 + kw <= w) {
    if (seg >= 64) dst.set(src.subarray(base, base + seg), o);
    else for (let j = 0; j < seg; j++) dst[o + j] = src[base + j];
    return;
  }
  for (let j = 0; j < kw; j++) {
    const ix = ix0 + j;
    const oo = o + j * c;
    if (ix < 0 || ix >= w) { for (let q = 0; q < c; q++) dst[oo + q] = 0; }
    else for (let q = 0, b = base + j * c; q < c; q++) dst[oo + q] = src[b + q];
  }
}

/**
 * Fills `cols` with output rows `[y0, y1)` of the im2col matrix of `src` (one sample, HWC);
 * reads outside the image give zeros.
 */
function im2col(src: Float32Array, l: Lowering, y0: number, y1: number, cols: Float32Array) {
  const { h, w, c, kh, kw, sh, sw, top, left, outW } = l;
  const seg = kw * c;
  let o = 0;
  for (let yo = y0; yo < y1; yo++) {
    for (let xo = 0; xo < outW; xo++) {
      const ix0 = xo * sw - left;
      for (let i = 0; i < kh; i++, o += seg) {
        const iy = yo * sh + i - top;
        if (iy < 0 || iy >= h) {
          cols.fill(0, o, o + seg);
          continue;
        }
        copyWindow(src, (iy * w + ix0) * c, ix0, w, c, kw, cols, o);
      }
    }
  }
}

/** Adds output rows `[y0, y1)` of a column matrix back onto the image they were read from. */
function col2imAdd(cols: Float32Array, l: Lowering, y0: number, y1: number, dst: Float32Array) {
  const { h, w, c, kh, kw, sh, sw, top, left, outW } = l;
  const seg = kw * c;
  let o = 0;
  for (let yo = y0; yo < y1; yo++) {
    for (let xo = 0; xo < outW; xo++) {
      const ix0 = xo * sw - left;
      for (let i = 0; i < kh; i++, o += seg) {
        const iy = yo * sh + i - top;
        if (iy < 0 || iy >= h) continue;
        const base = (iy * w + ix0) * c;
        for (let j = 0; j < kw; j++) {
          const ix = ix0 + j;
          if (ix < 0 || ix >= w) continue;
          for (let q = 0, b = base + j * c, oo = o + j * c; q < c; q++) dst[b + q] += cols[oo + q];
        }
      }
    }
  }
}

/**
 * The row-expanded image of a stride-1 lowering, for output rows `[y0, y1)`: `E[y, x, (b, q)] =
 * src[y0 + y - top, x + b - left, q]` for `y < y1 - y0 + kh - 1` (zeros outside the image). Tap row
 * `a` of the filter then contracts `E` shifted down by `a` rows, a plain matrix with `kw * c`
 * columns: `kh` multiplies and a copy `kw` times the image, instead of `kh * kw` times.
 */
function expandRows(src: Float32Array, l: Lowering, y0: number, y1: number, e: Float32Array) {
  const { h, w, c, kh, kw, top, left, outW } = l;
  const seg = kw * c;
  let o = 0;
  for (let y = y0; y < y1 + kh - 1; y++) {
    const iy = y - top;
    if (iy < 0 || iy >= h) {
      e.fill(0, o, o + outW * seg);
      o += outW * seg;
      continue;
    }
    for (let x = 0; x < outW; x++, o += seg) {
      copyWindow(src, (iy * w + x - left) * c, x - left, w, c, kw, e, o);
    }
  }
}

/** Output rows per band so that a band of the row-expanded image stays under BAND_FLOATS. */
function expandedBandRows(l: Lowering): number {
  return Math.max(1, Math.floor(BAND_FLOATS / (l.outW * l.kw * l.c)) - l.kh + 1);
}

/**
 * A stride-1 convolution of one sample by row expansion: `dst` (`[outH, l.outW, cout]`) gets
 * `src` convolved with `filter` viewed as `[kh * kw * c, cout]`, one multiply per filter row.
 */
function convByRows(
  gemm: Gemm,
  src: Float32Array,
  l: Lowering,
  outH: number,
  filter: Float32Array,
  cout: number,
  dst: Float32Array,
) {
  const seg = l.kw * l.c;
  const rows = expandedBandRows(l);
  for (let y0 = 0; y0 < outH; y0 += rows) {
    const y1 = Math.min(outH, y0 + rows);
    const e = scratchOf((y1 - y0 + l.kh - 1) * l.outW * seg);
    expandRows(src, l, y0, y1, e);
    const out = dst.subarray(y0 * l.outW * cout);
    for (let a = 0; a < l.kh; a++) {
      const ea = e.subarray(a * l.outW * seg);
      const fa = filter.subarray(a * seg * cout);
      gemm(false, false, (y1 - y0) * l.outW, cout, seg, 1, ea, seg, fa, cout, a ? 1 : 0, out, cout);
    }
  }
}

function forwardLowering(g: ConvGeometry): Lowering {
  return {
    h: g.inHeight,
    w: g.inWidth,
    c: g.inChannels,
    kh: g.filterHeight,
    kw: g.filterWidth,
    sh: g.strideHeight,
    sw: g.strideWidth,
    top: g.padInfo.top,
    left: g.padInfo.left,
    outW: g.outWidth,
  };
}

function isPointwise(g: ConvGeometry): boolean {
  return g.filterHeight === 1 && g.filterWidth === 1 && g.strideHeight === 1 &&
    g.strideWidth === 1 && g.padInfo.top === 0 && g.padInfo.left === 0 &&
    g.outHeight === g.inHeight && g.outWidth === g.inWidth;
}

// Channels from which a tap-by-tap multiply (K = channels) beats building `cols`.
const SHIFTED_MIN_CHANNELS = 16;

/**
 * The tap-by-tap form of a stride-1 unpadded convolution, for a geometry and the channel count
 * its multiplies would contract over; undefined where it does not apply. Output pixel `(y, x)`
 * of sample `s` sits at row `q = (s H + y) W + x` of an "extended" output laid over the whole
 * batch (`(N H - 1) W`-odd rows; those with `x >= outW` or `y >= outH` are junk), and tap
 * `(a, b)` reads input row `q + a W + b`: one multiply per tap for the whole batch.
 */
function shifted(g: ConvGeometry, channels: number) {
  if (
    g.strideHeight !== 1 || g.strideWidth !== 1 || g.padInfo.top !== 0 || g.padInfo.left !== 0 ||
    g.outHeight !== g.inHeight - g.filterHeight + 1 ||
    g.outWidth !== g.inWidth - g.filterWidth + 1 || channels < SHIFTED_MIN_CHANNELS
  ) return undefined;
  const plane = g.inHeight * g.inWidth;
  return {
    rows: (g.batchSize - 1) * plane + (g.outHeight - 1) * g.inWidth + g.outWidth,
    width: g.inWidth,
    plane,
  };
}

/** Copies `dy` onto the extended grid (see {@linkcode shifted}), zeros in the junk rows. */
function extend(
  dy: Float32Array,
  g: ConvGeometry,
  s: { width: number; plane: number },
  ext: Float32Array,
) {
  const { batchSize: n, outHeight: oh, outWidth: ow, outChannels: co } = g;
  ext.fill(0);
  for (let b = 0; b < n; b++) {
    for (let y = 0; y < oh; y++) {
      const src = ((b * oh + y) * ow) * co;
      ext.set(dy.subarray(src, src + ow * co), (b * s.plane + y * s.width) * co);
    }
  }
}

/** Output rows per band so that a band of `cols` stays under BAND_FLOATS. */
function bandRows(outW: number, k: number): number {
  return Math.max(1, Math.floor(BAND_FLOATS / (outW * k)));
}

/**
 * `y = conv(x, w)`.
 * @param gemm the matrix multiply
 * @param x `[N, H, W, in]`
 * @param w `[kh, kw, in, out]`
 * @param y `[N, outH, outW, out]`, overwritten
 * @param g the geometry
 */
export function convForward(
  gemm: Gemm,
  x: Float32Array,
  w: Float32Array,
  y: Float32Array,
  g: ConvGeometry,
): void {
  const { batchSize: n, inChannels: ci, outChannels: co, outHeight: oh, outWidth: ow } = g;
  if (isPointwise(g)) return gemm(false, false, n * oh * ow, co, ci, 1, x, ci, w, co, 0, y, co);
  const inSize = g.inHeight * g.inWidth * ci;
  const s = shifted(g, ci);
  if (s) {
    const ext = scratchOf(s.rows * co);
    for (let tap = 0; tap < g.filterHeight * g.filterWidth; tap++) {
      const shift = Math.floor(tap / g.filterWidth) * s.width + (tap % g.filterWidth);
      const wt = w.subarray(tap * ci * co);
      gemm(
        false,
        false,
        s.rows,
        co,
        ci,
        1,
        x.subarray(shift * ci),
        ci,
        wt,
        co,
        tap ? 1 : 0,
        ext,
        co,
      );
    }
    for (let b = 0; b < n; b++) {
      for (let r = 0; r < oh; r++) {
        const from = (b * s.plane + r * s.width) * co;
        y.set(ext.subarray(from, from + ow * co), ((b * oh + r) * ow) * co);
      }
    }
    return;
  }
  const l = forwardLowering(g);
  if (l.sh === 1 && l.sw === 1) {
    for (let b = 0; b < n; b++) {
      const src = x.subarray(b * inSize, (b + 1) * inSize);
      convByRows(gemm, src, l, oh, w, co, y.subarray(b * oh * ow * co));
    }
    return;
  }
  const k = l.kh * l.kw * ci;
  const rows = bandRows(ow, k);
  for (let b = 0; b < n; b++) {
    const src = x.subarray(b * inSize, (b + 1) * inSize);
    for (let y0 = 0; y0 < oh; y0 += rows) {
      const y1 = Math.min(oh, y0 + rows);
      const m = (y1 - y0) * ow;
      const cols = scratchOf(m * k);
      im2col(src, l, y0, y1, cols);
      gemm(false, false, m, co, k, 1, cols, k, w, co, 0, y.subarray(((b * oh + y0) * ow) * co), co);
    }
  }
}

/**
 * `dw = d loss / d w` from the input and the output gradient.
 * @param gemm the matrix multiply
 * @param x `[N, H, W, in]`
 * @param dy `[N, outH, outW, out]`
 * @param dw `[kh, kw, in, out]`, overwritten
 * @param g the geometry
 */
export function convBackpropFilter(
  gemm: Gemm,
  x: Float32Array,
  dy: Float32Array,
  dw: Float32Array,
  g: ConvGeometry,
): void {
  const { batchSize: n, inChannels: ci, outChannels: co, outHeight: oh, outWidth: ow } = g;
  if (isPointwise(g)) return gemm(true, false, ci, co, n * oh * ow, 1, x, ci, dy, co, 0, dw, co);
  const inSize = g.inHeight * g.inWidth * ci;
  const s = shifted(g, ci);
  if (s) {
    const ext = scratchOf(s.rows * co);
    extend(dy, g, s, ext);
    for (let tap = 0; tap < g.filterHeight * g.filterWidth; tap++) {
      const shift = Math.floor(tap / g.filterWidth) * s.width + (tap % g.filterWidth);
      const src = x.subarray(shift * ci);
      gemm(true, false, ci, co, s.rows, 1, src, ci, ext, co, 0, dw.subarray(tap * ci * co), co);
    }
    return;
  }
  const l = forwardLowering(g);
  if (l.sh === 1 && l.sw === 1) {
    const seg = l.kw * ci;
    const rows = expandedBandRows(l);
    let first = true;
    for (let b = 0; b < n; b++) {
      const src = x.subarray(b * inSize, (b + 1) * inSize);
      for (let y0 = 0; y0 < oh; y0 += rows) {
        const y1 = Math.min(oh, y0 + rows);
        const e = scratchOf((y1 - y0 + l.kh - 1) * ow * seg);
        expandRows(src, l, y0, y1, e);
        const band = dy.subarray(((b * oh + y0) * ow) * co);
        for (let a = 0; a < l.kh; a++) {
          const ea = e.subarray(a * ow * seg);
          const dwa = dw.subarray(a * seg * co);
          gemm(true, false, seg, co, (y1 - y0) * ow, 1, ea, seg, band, co, first ? 0 : 1, dwa, co);
        }
        first = false;
      }
    }
    if (first) dw.fill(0); // an empty output: no gradient
    return;
  }
  const k = l.kh * l.kw * ci;
  const rows = bandRows(ow, k);
  let beta = 0;
  for (let b = 0; b < n; b++) {
    const src = x.subarray(b * inSize, (b + 1) * inSize);
    for (let y0 = 0; y0 < oh; y0 += rows) {
      const y1 = Math.min(oh, y0 + rows);
      const m = (y1 - y0) * ow;
      const cols = scratchOf(m * k);
      im2col(src, l, y0, y1, cols);
      gemm(
        true,
        false,
        k,
        co,
        m,
        1,
        cols,
        k,
        dy.subarray(((b * oh + y0) * ow) * co),
        co,
        beta,
        dw,
        co,
      );
      beta = 1;
    }
  }
  if (beta === 0) dw.fill(0); // an empty output: no gradient
}

// The flipped, channel-swapped filter of the stride-1 input gradient, kept for its allocation.
let flippedScratch = new Float32Array(0);

/**
 * `dx = d loss / d x` from the output gradient and the filter.
 * @param gemm the matrix multiply
 * @param dy `[N, outH, outW, out]`
 * @param w `[kh, kw, in, out]`
 * @param dx `[N, H, W, in]`, overwritten
 * @param g the geometry
 */
export function convBackpropInput(
  gemm: Gemm,
  dy: Float32Array,
  w: Float32Array,
  dx: Float32Array,
  g: ConvGeometry,
): void {
  const { batchSize: n, inChannels: ci, outChannels: co, outHeight: oh, outWidth: ow } = g;
  const { filterHeight: kh, filterWidth: kw, inHeight: h, inWidth: wi } = g;
  if (isPointwise(g)) return gemm(false, true, n * h * wi, ci, co, 1, dy, co, w, co, 0, dx, ci);
  const outSize = oh * ow * co;
  const inSize = h * wi * ci;
  const sh = shifted(g, co);
  if (sh) {
    // dx[q + a W + b] += dy_ext[q] w[a, b]^T, tap by tap, straight into dx.
    const ext = scratchOf(sh.rows * co);
    extend(dy, g, sh, ext);
    dx.fill(0);
    for (let tap = 0; tap < kh * kw; tap++) {
      const shift = Math.floor(tap / kw) * sh.width + (tap % kw);
      const dst = dx.subarray(shift * ci);
      gemm(false, true, sh.rows, ci, co, 1, ext, co, w.subarray(tap * ci * co), co, 1, dst, ci);
    }
    return;
  }
  if (g.strideHeight === 1 && g.strideWidth === 1) {
    // dx[y, x, i] = sum_{a, b, o} dy[y + a - (kh - 1 - top), x + b - (kw - 1 - left), o]
    //               * w[kh - 1 - a, kw - 1 - b, i, o]
    const k = kh * kw * co;
    if (flippedScratch.length < k * ci) flippedScratch = new Float32Array(k * ci);
    const wf = flippedScratch.subarray(0, k * ci);
    for (let a = 0; a < kh; a++) {
      for (let b = 0; b < kw; b++) {
        const src = ((kh - 1 - a) * kw + (kw - 1 - b)) * ci * co;
        const dst = (a * kw + b) * co * ci;
        for (let i = 0; i < ci; i++) {
          for (let o = 0; o < co; o++) wf[dst + o * ci + i] = w[src + i * co + o];
        }
      }
    }
    const l: Lowering = {
      h: oh,
      w: ow,
      c: co,
      kh,
      kw,
      sh: 1,
      sw: 1,
      top: kh - 1 - g.padInfo.top,
      left: kw - 1 - g.padInfo.left,
      outW: wi,
    };
    for (let s = 0; s < n; s++) {
      const src = dy.subarray(s * outSize, (s + 1) * outSize);
      convByRows(gemm, src, l, h, wf, ci, dx.subarray(s * h * wi * ci));
    }
    return;
  }
  const l = forwardLowering(g);
  const k = kh * kw * ci;
  const rows = bandRows(ow, k);
  dx.fill(0);
  for (let s = 0; s < n; s++) {
    const dst = dx.subarray(s * inSize, (s + 1) * inSize);
    for (let y0 = 0; y0 < oh; y0 += rows) {
      const y1 = Math.min(oh, y0 + rows);
      const m = (y1 - y0) * ow;
      const cols = scratchOf(m * k);
      gemm(false, true, m, k, co, 1, dy.subarray((s * oh + y0) * ow * co), co, w, co, 0, cols, k);
      col2imAdd(cols, l, y0, y1, dst);
    }
  }
}

/**
 * A plain row-major matrix multiply, for tests and as the reference the native one is checked
 * against.
 */
export const loopGemm: Gemm = (ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) => {
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) {
        s += (ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
      }
      c[i * ldc + j] = alpha * s + (beta === 0 ? 0 : beta * c[i * ldc + j]);
    }
  }
};
