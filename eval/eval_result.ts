/**
 * What an evaluation of a checkpoint finds (`eval_<iteration>.json` in the run folder), as the
 * evaluation writes it and the run report reads it.
 *
 * @example
 * ```ts
 * import type { EvalResult } from "./eval_result.ts";
 * const kidOf = (e: EvalResult) => 100 * e.A2B.kid.mean; // KID x100, as the report shows it
 * ```
 *
 * @module
 */

/** One direction's figures. */
export interface DirectionResult {
  /** Test images translated. */
  readonly images: number;
  /** KID (mean, std over subsets) between translations and real target images. */
  readonly kid: { mean: number; std: number };
  /** FID between translations and real target images. */
  readonly fid: number;
  /** The untranslated source images against the same targets: the baseline to beat. */
  readonly source: { readonly kid: { mean: number; std: number }; readonly fid: number };
  /** Fractions the domain classifier takes for the target domain: translations, and sources. */
  readonly classifier: { readonly translated: number; readonly source: number };
  /** With aligned pairs: translation vs true target, and source vs true target. */
  readonly paired?: {
    readonly translation: { l1: number; psnr: number; ssim: number };
    readonly identity: { l1: number; psnr: number; ssim: number };
  };
}

/** What `eval.json` holds. */
export interface EvalResult {
  /** The checkpoint evaluated. */
  readonly checkpoint: string;
  /** Its iteration. */
  readonly iteration: number;
  /**
   * The generators' weights judged: as trained, or their moving average (`--ema`); absent (files
   * from before `--ema`): as trained.
   */
  readonly weights?: "trained" | "ema";
  /** The feature extractor behind KID and FID. */
  readonly features: string;
  /** The domain classifier's accuracy on the real test images of both domains. */
  readonly classifierAccuracy: number;
  /** Its accuracy on each domain's real test images. */
  readonly classifierRight: { readonly A: number; readonly B: number };
  /** By direction. */
  readonly A2B: DirectionResult;
  /** By direction. */
  readonly B2A: DirectionResult;
}
