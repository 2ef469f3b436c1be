/**
 * `deno task eval`: evaluates a run's checkpoint on its dataset's test split, both directions.
 * KID and FID between the translations and the real images of the target domain (on the
 * built-in feature extractor), and, where the test split has aligned pairs (the emoji data),
 * L1, PSNR and SSIM of each translation against its true target next to the same for the
 * untranslated source (the identity baseline). Prints a table and writes `eval.json` in the run
 * folder.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { BackendName } from "../backends/backend.ts";
import { selectBackend } from "../backends/select_backend.ts";
import { datasetName, openDataset } from "../data/dataset.ts";
import { loadTestImages } from "../data/domain_stream.ts";
import { writeTextAtomically } from "../files/write_file.ts";
import { generator } from "../layers/generator.ts";
import { loadCheckpoint, readCheckpointFlags, recordedConfig } from "../train/checkpoint.ts";
import type { RunnerIO } from "../train/runner.ts";
import type { ModelSettings } from "../train/settings.ts";
import { disposeState } from "../train/step.ts";
import { WeightFileError } from "../weights/safetensors.ts";
import type { DirectionResult, EvalResult } from "./eval_result.ts";
import { graphModelFeatures, randomConvFeatures } from "./features.ts";
import { writeReport } from "./report.ts";
import { fid, kid, l1Distance, psnr, ssim } from "./metrics.ts";
import {
  type DomainClassifier,
  JUDGE,
  JUDGE_STEPS,
  trainDomainClassifier,
} from "./domain_classifier.ts";

const BATCH = 16;

/** What an evaluation reads: the eval command's flags. */
export interface EvalSettings extends ModelSettings {
  /** The dataset of the run (its test split is used). */
  readonly dataset: string;
  /** The folder of run folders. */
  readonly result_dir: string;
  /** A checkpoint file, `all` (every kept one), or empty: the run's latest. */
  readonly checkpoint: string;
  /** The backend to select. */
  readonly backend: BackendName;
  /** `builtin`, or a TensorFlow.js graph model (Inception-v3) for KID and FID. */
  readonly features: string;
  /** Seed of the domain classifier. */
  readonly seed: number;
  /** Judge a run's moving average of its generators, where it has one. */
  readonly use_ema: boolean;
}

/**
 * The judge of "as target": a domain classifier trained on each domain's real training images of
 * a dataset, loaded at the side it judges at (whatever the model's size): at most
 * {@linkcode JUDGE_STEPS} steps of 32 images, and 20 passes over the images (a small set).
 * @param dataset the `--dataset` value
 * @param seed its seed
 * @param warn where skipped files are reported
 * @returns the classifier (the caller disposes it)
 */
export async function trainJudge(
  dataset: string,
  seed: number,
  warn: (line: string) => void,
): Promise<DomainClassifier> {
  const data = await openDataset(dataset, warn);
  const trainA = (await loadTestImages(data.trainA, JUDGE.side, warn)).batch;
  const trainB = (await loadTestImages(data.trainB, JUDGE.side, warn)).batch;
  const steps = Math.min(JUDGE_STEPS, Math.ceil(20 * (trainA.shape[0] + trainB.shape[0]) / 32));
  const judge = trainDomainClassifier(trainA, trainB, { seed, steps });
  tf.dispose([trainA, trainB]);
  return judge;
}

/**
 * Evaluates a checkpoint (default: the run's latest), or with `--checkpoint all` every kept one
 * (`ckpt_*`) in order with one judge, the points of the curve in the run report. Each evaluation
 * writes `eval_<iteration>.json` in the run folder, and the last one also `eval.json`.
 * @param flags `--dataset`, `--result_dir`, `--checkpoint`, `--backend`, `--features`, `--seed`
 * @param io where lines go
 * @param judge a judge of the same dataset to use (e.g. one for every run of an ablation; its
 *   caller disposes it), instead of one trained here ({@linkcode trainJudge}) with `--seed`
 * @returns the figures of the last checkpoint evaluated
 */
export async function runEval(
  flags: EvalSettings,
  io: RunnerIO,
  judge?: DomainClassifier,
): Promise<EvalResult> {
  const modelDir = `${flags.result_dir}/${datasetName(flags.dataset)}/model`;
  const paths = flags.checkpoint === "all"
    ? await keptCheckpoints(modelDir)
    : [flags.checkpoint || `${modelDir}/latest.safetensors`];
  const recorded = await readCheckpointFlags(paths[0]);
  const backend = await selectBackend(flags.backend, { log: io.warn });
  const data = await openDataset(flags.dataset, io.warn);
  const config = recordedConfig(recorded, flags);
  // A run with a moving average of its generators is judged by it, unless --use_ema false
  // (then by the trained weights, into eval_raw_*.json: both curves side by side).
  const averaged = config.ema! > 0 && flags.use_ema;
  const raw = config.ema! > 0 && !flags.use_ema ? "raw_" : "";
  const S = config.generator.imgSize!;
  const features = flags.features === "builtin"
    ? randomConvFeatures()
    : await graphModelFeatures(flags.features);

  const judged = judge ?? await trainJudge(flags.dataset, flags.seed, io.warn);
  const fractionB = async (images: tf.Tensor4D) => {
    const p = await judged.probabilityB(images);
    return p.filter((v) => v > 0.5).length / p.length;
  };
  const testA = await loadTestImages(data.testA, S, io.warn);
  const testB = await loadTestImages(data.testB, S, io.warn);
  const judgeRight = { A: 1 - await fractionB(testA.batch), B: await fractionB(testB.batch) };
  const toUnit = (t: tf.Tensor4D) => tf.tidy(() => tf.div(tf.add(t, 1), 2) as tf.Tensor4D);
  // Figures of the untranslated sources, the baseline: the same for every checkpoint.
  const baselines = new Map<
    string,
    DirectionResult["source"] & { readonly classifier: number }
  >();

  const evaluate = async (path: string): Promise<EvalResult> => {
    const ck = await loadCheckpoint(path, config);
    const G = generator(config.generator);
    const weights = averaged ? ck.state.ema! : ck.state.gen;
    io.out(
      `evaluating ${path} (iteration ${ck.state.step}${
        averaged ? ", moving average" : ""
      }) on ${backend.name}`,
    );
    const direction = async (net: "genA2B" | "genB2A"): Promise<DirectionResult> => {
      const [source, target] = net === "genA2B"
        ? [testA.batch, testB.batch]
        : [testB.batch, testA.batch];
      const params = weights[net];
      const parts: tf.Tensor4D[] = [];
      for (let i = 0; i < source.shape[0]; i += BATCH) {
        const x = source.slice(i, Math.min(BATCH, source.shape[0] - i));
        parts.push(tf.tidy(() => G.apply(params, x).image));
        x.dispose();
      }
      const fake = tf.concat(parts) as tf.Tensor4D;
      tf.dispose(parts);
      // The share of images the judge takes for this direction's target domain.
      const asTarget = async (images: tf.Tensor4D) =>
        net === "genA2B" ? await fractionB(images) : 1 - await fractionB(images);
      const [ff, tfe] = [features.extract(fake), features.extract(target)];
      if (!baselines.has(net)) {
        const sf = features.extract(source);
        baselines.set(net, {
          kid: await kid(sf, tfe, { subsets: 100 }),
          fid: await fid(sf, tfe),
          classifier: await asTarget(source),
        });
        sf.dispose();
      }
      const base = baselines.get(net)!;
      const paired = async () => {
        const [f, t, s] = [toUnit(fake), toUnit(target), toUnit(source)];
        const scores = async (a: tf.Tensor4D) => ({
          l1: await l1Distance(a, t),
          psnr: await psnr(a, t),
          ssim: await ssim(a, t),
        });
        const out = { translation: await scores(f), identity: await scores(s) };
        tf.dispose([f, t, s]);
        return out;
      };
      const result: DirectionResult = {
        images: fake.shape[0],
        kid: await kid(ff, tfe, { subsets: 100 }),
        fid: await fid(ff, tfe),
        source: { kid: base.kid, fid: base.fid },
        classifier: { translated: await asTarget(fake), source: base.classifier },
        ...(data.alignedTest && source.shape[0] === target.shape[0]
          ? { paired: await paired() }
          : {}),
      };
      tf.dispose([fake, ff, tfe]);
      return result;
    };
    const result: EvalResult = {
      checkpoint: path,
      iteration: ck.state.step,
      weights: averaged ? "ema" : "trained",
      features: features.name,
      classifierAccuracy: (judgeRight.A + judgeRight.B) / 2,
      classifierRight: judgeRight,
      A2B: await direction("genA2B"),
      B2A: await direction("genB2A"),
    };
    disposeState(ck.state);
    return result;
  };

  const run = paths[0].replace(/\/model\/[^/]*$/, "");
  let last: EvalResult | undefined;
  try {
    for (const path of paths) {
      last = await evaluate(path);
      const text = JSON.stringify(last, null, 2) + "\n";
      const numbered = `${run}/eval_${raw}${String(last.iteration).padStart(7, "0")}.json`;
      const final = `${run}/eval${raw ? "_raw" : ""}.json`;
      for (const file of [numbered, ...(path === paths.at(-1) ? [final] : [])]) {
        await writeTextAtomically(file, text, `the evaluation of iteration ${last.iteration}`);
      }
      printTable(last, io);
      io.out(`wrote ${numbered}`);
    }
  } finally {
    if (!judge) judged.dispose();
    tf.dispose([testA.batch, testB.batch]);
  }
  await writeReport(run);
  return last!;
}

/** The kept checkpoints (`ckpt_<iteration>`) of a model folder, in order. */
async function keptCheckpoints(modelDir: string): Promise<string[]> {
  const names = await Array.fromAsync(Deno.readDir(modelDir)).catch(() => {
    throw new WeightFileError(`--checkpoint all: no model folder ${modelDir} (check --result_dir)`);
  });
  const kept = names.map((e) => e.name).filter((n) => /^ckpt_\d+\.safetensors$/.test(n)).sort();
  if (!kept.length) {
    throw new WeightFileError(`--checkpoint all: no ckpt_*.safetensors in ${modelDir}`);
  }
  return kept.map((n) => `${modelDir}/${n}`);
}

function printTable(result: EvalResult, io: RunnerIO) {
  // Each cell: the translations' figure, then the untranslated sources' (the baseline).
  const cell = (a: number, b: number, digits: number) =>
    `${a.toFixed(digits)} (${b.toFixed(digits)})`;
  const rows = [["direction", "images", "KID x100", "FID", "as target %", "L1", "PSNR", "SSIM"]];
  for (const dir of ["A2B", "B2A"] as const) {
    const r = result[dir];
    const p = r.paired;
    rows.push([
      dir,
      String(r.images),
      cell(100 * r.kid.mean, 100 * r.source.kid.mean, 2),
      cell(r.fid, r.source.fid, 2),
      cell(100 * r.classifier.translated, 100 * r.classifier.source, 1),
      ...(p
        ? [
          cell(p.translation.l1, p.identity.l1, 3),
          cell(p.translation.psnr, p.identity.psnr, 2),
          cell(p.translation.ssim, p.identity.ssim, 3),
        ]
        : ["-", "-", "-"]),
    ]);
  }
  const right = result.classifierRight;
  io.out(
    `features: ${result.features}; "as target": the domain classifier's verdict ` +
      `(right on ${(100 * right.A).toFixed(1)}% of real test A and ${
        (100 * right.B).toFixed(1)
      }% of real test B); in brackets: the untranslated sources`,
  );
  for (const row of rows) io.out(row.map((c, i) => c.padEnd(i < 2 ? 10 : 18)).join("").trimEnd());
}
