/**
 * Translation with a trained checkpoint (`deno task translate`, or `--phase test`): the
 * reference's test phase, done better. It translates files, folders or held-out images of the
 * dataset's test split (`--pick N` of them, drawn by `data/pick.ts`; 0: all) in the directions
 * asked, and writes plain translated PNGs, sample grids with CAM heatmaps, and
 * an `index.html` showing inputs and outputs side by side (with the true targets when the test
 * split has aligned pairs, as the emoji data does).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../backends/select_backend.ts";
import {
  checkImages,
  DatasetError,
  datasetName,
  listImages,
  openDataset,
} from "../data/dataset.ts";
import { loadTestImages } from "../data/domain_stream.ts";
import { pickIndices } from "../data/pick.ts";
import { makeFolder, writeTextAtomically } from "../files/write_file.ts";
import { generator, type GeneratorParams } from "../layers/generator.ts";
import { loadGenerators } from "../train/checkpoint.ts";
import type { RunnerIO } from "../train/runner.ts";
import { jetHeatmap, sampleGrid, toDisplay, writePng } from "../train/samples.ts";
import { dispose } from "../tree/tree.ts";
import type { Direction } from "../weights/generator_file.ts";
import { fromHost } from "../weights/params_io.ts";
import { CONSOLE, runCommand } from "./command.ts";
import {
  BACKEND_FLAG,
  FlagError,
  type FlagGroup,
  type Flags,
  GENERATORS_FLAGS,
  LAPTOP_DEFAULTS,
  MODEL_FLAGS,
  RUN_FLAGS,
} from "./flags.ts";

const COLUMNS = 8; // images per grid picture

/** The translate command's own flags (`train --phase test` takes them too). */
export const TRANSLATE_OWN_FLAGS = {
  ...GENERATORS_FLAGS,
  model: {
    kind: "string",
    default: "",
    help: "a model shipped in models/ (e.g. emoji-google2twitter), instead of a checkpoint",
  },
  size: {
    kind: "int",
    default: 0,
    help: "resize inputs to this side (default: the model's; light models only)",
  },
  pick: {
    kind: "int",
    default: 24,
    help: "with no inputs: held-out images to translate, spread over the test split by the " +
      "pick (0: all of it)",
  },
} as const satisfies FlagGroup;

/** Every flag of `deno task translate`. */
export const TRANSLATE_FLAGS = {
  ...MODEL_FLAGS,
  ...RUN_FLAGS,
  ...BACKEND_FLAG,
  ...TRANSLATE_OWN_FLAGS,
} as const satisfies FlagGroup;

/** The flags `deno task translate` decodes. */
export type TranslateFlags = Flags<typeof TRANSLATE_FLAGS>;

/** The models shipped in this repository's `models/` folder, by name. */
export const MODELS_DIR = new URL("../models/", import.meta.url).pathname;

/**
 * The generator file of a shipped model.
 * @param name e.g. `emoji-google2twitter`
 * @returns its path
 * @throws {FlagError} naming the models there are, for an unknown name
 */
export function shippedModel(name: string): string {
  const path = `${MODELS_DIR}${name}/generator.safetensors`;
  try {
    Deno.statSync(path);
    return path;
  } catch {
    let names: string[] = [];
    try {
      names = [...Deno.readDirSync(MODELS_DIR)].filter((e) => e.isDirectory).map((e) => e.name);
    } catch {
      // no models folder
    }
    throw new FlagError(
      `--model: no model "${name}" in ${MODELS_DIR} (there: ${names.join(", ") || "none"})`,
    );
  }
}

/**
 * The generators a command's flags name (translate's, the card's): the directions asked, and the
 * file (`--model`'s shipped file, `--checkpoint`, or the run's latest checkpoint).
 * @param flags `--direction`, `--model`, `--checkpoint`, and the run (`--result_dir`, `--dataset`)
 * @returns the directions and the file
 * @throws {FlagError} for a direction other than A2B, B2A or both, both `--model` and
 *   `--checkpoint`, or an unknown model
 */
export function generatorsNamed(
  flags: Pick<TranslateFlags, "direction" | "model" | "checkpoint" | "result_dir" | "dataset">,
): { directions: Direction[]; path: string } {
  const directions = flags.direction === "both" ? ["A2B", "B2A"] : [flags.direction];
  if (!directions.every((d): d is Direction => d === "A2B" || d === "B2A")) {
    throw new FlagError(`--direction: expected A2B, B2A or both, got "${flags.direction}"`);
  }
  if (flags.model && flags.checkpoint) {
    throw new FlagError("--model and --checkpoint: give one of them");
  }
  const path = flags.model ? shippedModel(flags.model) : flags.checkpoint ||
    `${flags.result_dir}/${datasetName(flags.dataset)}/model/latest.safetensors`;
  return { directions, path };
}

// Files and folders named on the command line: a named file must be an image (an error names it
// otherwise); a folder's files that are not are skipped by name.
async function expandInputs(
  paths: readonly string[],
  warn: (l: string) => void,
): Promise<string[]> {
  const out: string[] = [];
  for (const p of paths) {
    let info: Deno.FileInfo;
    try {
      info = Deno.statSync(p);
    } catch {
      throw new DatasetError(`${p}: no such file or folder`);
    }
    if (info.isDirectory) {
      out.push(...(await checkImages(listImages(p), warn)).ok);
      continue;
    }
    const { skipped } = await checkImages([p], () => {});
    if (skipped.length) throw new DatasetError(`${p}: ${skipped[0].reason}`);
    out.push(p);
  }
  return out;
}

const stem = (path: string) => path.split("/").pop()!.replace(/\.[^.]+$/, "");
const escape = (s: string) =>
  s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);

/**
 * Translates with a checkpoint and writes the results.
 * @param flags the parsed flags (`--checkpoint`, `--direction`, positional inputs)
 * @param io where lines go
 * @returns the output folder
 */
export async function runTranslate(flags: TranslateFlags, io: RunnerIO): Promise<string> {
  const { directions, path } = generatorsNamed(flags);
  const inputs = flags._.length ? await expandInputs(flags._, io.warn) : undefined;
  const data = inputs ? undefined : await openDataset(flags.dataset, io.warn);
  const model = await loadGenerators(path, flags);
  const S = flags.size || model.config.imgSize!;
  if (S !== model.config.imgSize && !model.config.light) {
    throw new FlagError(
      `--size: a full (not light) model translates only at its own size, ${model.config.imgSize}`,
    );
  }
  const missing = directions.find((d) => !model.generators[d as Direction]);
  if (missing) {
    throw new FlagError(
      `--direction: ${path} holds only ${
        Object.keys(model.generators).join(" and ")
      }, not ${missing}`,
    );
  }
  const backend = await selectBackend(flags.backend, { log: io.warn });
  const generators = Object.fromEntries(
    Object.entries(model.generators).map(([d, host]) => [d, fromHost<GeneratorParams>(host!)]),
  ) as Partial<Record<Direction, GeneratorParams>>;
  const G = generator({ ...model.config, imgSize: S });
  const out = flags.model
    ? `${flags.result_dir}/translate_${flags.model}`
    : `${path.replace(/\/model\/[^/]*$/, "").replace(/\/[^/]*\.safetensors$/, "")}/translate`;
  await makeFolder(out, "the translations' folder");
  io.out(`translating with ${path} (iteration ${model.step}) on ${backend.name} into ${out}`);

  const sections: string[] = [];
  for (const dir of directions) {
    const inverse = dir === "A2B" ? "B2A" : "A2B";
    // With no inputs, the held-out images the pick draws, and the same positions of the other
    // split: with aligned pairs, their true targets.
    const [split, other] = dir === "A2B" ? [data?.testA, data?.testB] : [data?.testB, data?.testA];
    const at = split && pickIndices(split.length, flags.pick || split.length);
    const files = inputs ?? at!.map((i) => split![i]);
    const targets = !inputs && data!.alignedTest ? at!.map((i) => other![i]) : undefined;
    const { batch, files: used } = await loadTestImages(files, S, io.warn);
    await makeFolder(`${out}/${dir}`, "the translations' folder");
    const params = generators[dir as Direction]!;
    const back = generators[inverse]; // the cycle, where the file holds both directions
    const rows: string[] = [];
    const started = performance.now();
    let forwardMs = 0; // the generator's passes alone, without the cycle, heatmaps and files
    for (let i = 0; i < used.length; i += COLUMNS) {
      const x = batch.slice(i, Math.min(COLUMNS, used.length - i));
      const t0 = performance.now();
      const fwd = G.apply(params, x);
      await fwd.image.data(); // done when its pixels are
      forwardMs += performance.now() - t0;
      const cyc = back && G.apply(back, fwd.image);
      const shown = toDisplay(fwd.image);
      for (let j = 0; j < x.shape[0]; j++) {
        const name = `${String(i + j).padStart(4, "0")}_${stem(used[i + j])}`;
        const img = tf.tidy(() => shown.slice(j, 1).squeeze([0]) as tf.Tensor3D);
        await writePng(`${out}/${dir}/${name}.png`, img, "a translation");
        const heat = tf.tidy(() =>
          jetHeatmap(fwd.heatmap.slice(j, 1), S).squeeze([0]) as tf.Tensor3D
        );
        await writePng(`${out}/${dir}/${name}_cam.png`, heat, "a CAM heatmap");
        const input = tf.tidy(() => toDisplay(x.slice(j, 1)).squeeze([0]) as tf.Tensor3D);
        await writePng(`${out}/${dir}/${name}_input.png`, input, "an input picture");
        tf.dispose([img, heat, input]);
        const target = targets?.[files.indexOf(used[i + j])];
        rows.push(
          `<tr><td>${escape(stem(used[i + j]))}</td><td><img src="${dir}/${name}_input.png"></td>` +
            `<td><img src="${dir}/${name}_cam.png"></td><td><img src="${dir}/${name}.png"></td>` +
            (targets
              ? `<td>${
                target ? `<img src="${escape(new URL(`file://${target}`).href)}">` : ""
              }</td>`
              : "") +
            `</tr>`,
        );
      }
      const grid = tf.tidy(() =>
        sampleGrid([
          toDisplay(x),
          jetHeatmap(fwd.heatmap, S),
          shown,
          ...(cyc ? [jetHeatmap(cyc.heatmap, S), toDisplay(cyc.image)] : []),
        ])
      );
      await writePng(
        `${out}/${dir}_grid_${String(i / COLUMNS).padStart(3, "0")}.png`,
        grid,
        "a grid of translations",
      );
      tf.dispose([
        x,
        fwd.image,
        fwd.camLogit,
        fwd.heatmap,
        ...(cyc ? [cyc.image, cyc.camLogit, cyc.heatmap] : []),
        shown,
        grid,
      ]);
    }
    batch.dispose();
    sections.push(
      `<h2>${dir}: ${used.length} image(s)</h2><table><tr><th>name</th><th>input</th><th>CAM</th>` +
        `<th>translation</th>${targets ? "<th>true target</th>" : ""}</tr>${
          rows.join("\n")
        }</table>`,
    );
    const perImage = (ms: number) => `${(ms / used.length).toFixed(0)} ms`;
    io.out(
      `${dir}: ${used.length} image(s) in ${out}/${dir}; ${
        perImage(performance.now() - started)
      } per image, of which the ${S}-px forward pass ${perImage(forwardMs)}`,
    );
  }
  await writeTextAtomically(
    `${out}/index.html`,
    `<!doctype html><meta charset="utf-8"><title>U-GAT-IT translations</title>` +
      `<style>body{font-family:sans-serif}img{width:${
        Math.max(S, 96)
      }px;image-rendering:pixelated}` +
      `td{padding:2px 6px}</style><h1>${escape(path)} (iteration ${model.step})</h1>${
        sections.join("\n")
      }`,
    "the translations' page",
  );
  Object.values(generators).forEach((g) => dispose(g!));
  io.out(`wrote ${out}/index.html`);
  return out;
}

if (import.meta.main) {
  await runCommand({
    usage: "deno task translate [flags] [image or folder ...]",
    about: "Translates with a checkpoint; with no inputs, --pick held-out images of the " +
      "dataset's test split, spread over it.",
    flags: TRANSLATE_FLAGS,
    defaults: LAPTOP_DEFAULTS,
    run: (flags) => runTranslate(flags, CONSOLE),
  });
}
