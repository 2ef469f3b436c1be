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
import { selectBackend } from "../backends/mod.ts";
import { generator, type GeneratorParams } from "../layers/generator.ts";
import { loadCheckpoint, readCheckpointFlags } from "../train/checkpoint.ts";
import { datasetName, loadTestImages, openDataset } from "../train/data.ts";
import {
  configFromFlags,
  exitOnUserError,
  flagHelp,
  type Flags,
  flagsOrExit,
  LAPTOP_DEFAULTS,
} from "../train/flags.ts";
import type { RunnerIO } from "../train/runner.ts";
import { disposeState, subtree } from "../train/step.ts";
import { graphModelFeatures, randomConvFeatures } from "./features.ts";
import { writeReport } from "./report.ts";
import { fid, kid, l1Distance, psnr, ssim } from "./metrics.ts";
import { trainDomainClassifier } from "./domain_classifier.ts";

const BATCH = 16;

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
  /** The feature extractor behind KID and FID. */
  readonly features: string;
  /** The domain classifier's accuracy on the real test images of both domains. */
  readonly classifierAccuracy: number;
  /** By direction. */
  readonly A2B: DirectionResult;
  /** By direction. */
  readonly B2A: DirectionResult;
}

/**
 * Evaluates a checkpoint (default: the run's latest) and writes `eval.json` beside its model
 * folder.
 * @param flags `--dataset`, `--result_dir`, `--checkpoint`, `--backend`
 * @param io where lines go
 * @returns the figures
 */
export async function runEval(flags: Flags, io: RunnerIO): Promise<EvalResult> {
  const path = flags.checkpoint ||
    `${flags.result_dir}/${datasetName(flags.dataset)}/model/latest.safetensors`;
  const trained = { ...flags, ...(await readCheckpointFlags(path)) } as Flags;
  const backend = await selectBackend(flags.backend, { log: io.warn });
  const data = await openDataset(flags.dataset, io.warn);
  const config = configFromFlags(trained);
  const ck = await loadCheckpoint(path, config);
  const G = generator(config.generator);
  const S = config.generator.imgSize!;
  const features = flags.features === "builtin"
    ? randomConvFeatures()
    : await graphModelFeatures(flags.features);
  io.out(`evaluating ${path} (iteration ${ck.state.step}) on ${backend}`);

  // The judge: a domain classifier trained on (up to 512 of) each domain's real training images.
  const trainA = (await loadTestImages(data.trainA.slice(0, 512), S, io.warn)).batch;
  const trainB = (await loadTestImages(data.trainB.slice(0, 512), S, io.warn)).batch;
  const judge = trainDomainClassifier(trainA, trainB, { seed: flags.seed, steps: 500 });
  tf.dispose([trainA, trainB]);
  const fractionB = async (images: tf.Tensor4D) => {
    const p = await judge.probabilityB(images);
    return p.filter((v) => v > 0.5).length / p.length;
  };
  const accuracies: number[] = [];

  const toUnit = (t: tf.Tensor4D) => tf.tidy(() => tf.div(tf.add(t, 1), 2) as tf.Tensor4D);
  const direction = async (net: string, from: readonly string[], to: readonly string[]) => {
    const source = (await loadTestImages(from, S, io.warn)).batch;
    const target = (await loadTestImages(to, S, io.warn)).batch;
    const params = subtree<GeneratorParams>(ck.state.gen, net);
    const parts: tf.Tensor4D[] = [];
    for (let i = 0; i < source.shape[0]; i += BATCH) {
      const x = source.slice(i, Math.min(BATCH, source.shape[0] - i));
      parts.push(tf.tidy(() => G.apply(params, x).image));
      x.dispose();
    }
    const fake = tf.concat(parts) as tf.Tensor4D;
    tf.dispose(parts);
    const [ff, tfe, sf] = [
      features.extract(fake),
      features.extract(target),
      features.extract(source),
    ];
    // The share of images the judge takes for this direction's target domain.
    const asTarget = async (images: tf.Tensor4D) =>
      net === "genA2B" ? await fractionB(images) : 1 - await fractionB(images);
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
      source: { kid: await kid(sf, tfe, { subsets: 100 }), fid: await fid(sf, tfe) },
      classifier: { translated: await asTarget(fake), source: await asTarget(source) },
      ...(data.alignedTest && source.shape[0] === target.shape[0]
        ? { paired: await paired() }
        : {}),
    };
    accuracies.push(await asTarget(target));
    tf.dispose([source, target, fake, ff, tfe, sf]);
    return result;
  };
  const A2B = await direction("genA2B", data.testA, data.testB);
  const B2A = await direction("genB2A", data.testB, data.testA);
  const result: EvalResult = {
    checkpoint: path,
    iteration: ck.state.step,
    features: features.name,
    classifierAccuracy: (accuracies[0] + accuracies[1]) / 2,
    A2B,
    B2A,
  };

  disposeState(ck.state);
  judge.dispose();

  const run = path.replace(/\/model\/[^/]*$/, "");
  await Deno.writeTextFile(`${run}/eval.json.tmp`, JSON.stringify(result, null, 2) + "\n");
  await Deno.rename(`${run}/eval.json.tmp`, `${run}/eval.json`);
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
  io.out(
    `features: ${features.name}; "as target": the domain classifier's verdict ` +
      `(${
        (100 * result.classifierAccuracy).toFixed(1)
      }% right on real test images); in brackets: the untranslated sources`,
  );
  for (const row of rows) io.out(row.map((c, i) => c.padEnd(i < 2 ? 10 : 18)).join("").trimEnd());
  io.out(`wrote ${run}/eval.json`);
  await writeReport(run);
  return result;
}

if (import.meta.main) {
  if (Deno.args.includes("--help")) {
    console.log(
      `usage: deno task eval [flags]\n\nEvaluates a run's checkpoint (default: its latest) on the test split.\n\n` +
        flagHelp(LAPTOP_DEFAULTS),
    );
    Deno.exit(0);
  }
  try {
    await runEval(flagsOrExit(Deno.args, LAPTOP_DEFAULTS), {
      out: console.log,
      warn: console.error,
    });
  } catch (e) {
    exitOnUserError(e);
  }
}
