/**
 * `deno task card`: the model card's pictures. For each direction, a grid of held-out images drawn
 * by the one pick (`data/pick.ts`: spread over the test split, fixed seed), each shown as the
 * source, its translation and (where the test split has aligned pairs, as the emoji data does) the
 * true target, at 2x, four to a line: `held_out_A2B.png` and `held_out_B2A.png`. Run it again
 * whenever the model changes, so that the card shows the model it describes.
 *
 *     deno task card --model emoji-google2twitter      # into models/emoji-google2twitter/
 *     deno task card --checkpoint run/model/ckpt_0010000.safetensors --out pictures/
 *
 * @module
 */
import { selectBackend } from "../backends/select_backend.ts";
import { DatasetError, datasetName, openDataset } from "../data/dataset.ts";
import { loadTestImages } from "../data/domain_stream.ts";
import { pickIndices } from "../data/pick.ts";
import {
  loadTranslator,
  type Picture,
  picturesOf,
  pictureTable,
  writePicture,
} from "../eval/figure.ts";
import type { RunnerIO } from "../train/runner.ts";
import { CONSOLE, runCommand } from "./command.ts";
import {
  BACKEND_FLAG,
  type FlagGroup,
  type Flags,
  GENERATORS_FLAGS,
  LAPTOP_DEFAULTS,
  MODEL_FLAGS,
  RUN_FLAGS,
} from "./flags.ts";
import { generatorsNamed, MODELS_DIR, TRANSLATE_OWN_FLAGS } from "./translate.ts";

/** Every flag of `deno task card`. */
export const CARD_FLAGS = {
  ...MODEL_FLAGS,
  ...RUN_FLAGS,
  ...BACKEND_FLAG,
  ...GENERATORS_FLAGS,
  model: TRANSLATE_OWN_FLAGS.model,
  pairs: {
    kind: "int",
    default: 24,
    help: "held-out images per direction, spread over the test split by the pick",
  },
  out: {
    kind: "string",
    default: "",
    help: "folder for the pictures (default: the model's folder with --model, else the run folder)",
  },
} as const satisfies FlagGroup;

/** The flags `deno task card` decodes. */
export type CardFlags = Flags<typeof CARD_FLAGS>;

/** Triples (source, translation, true target) to a line of the card's grid. */
export const CARD_PER_LINE = 4;
/** The card's pictures are drawn this many times larger than the model's images. */
export const CARD_ZOOM = 2;

// The pictures of image files, every one of which must decode.
async function picturesOfFiles(files: readonly string[], size: number): Promise<Picture[]> {
  const { batch, files: used } = await loadTestImages(files, size, () => {});
  const pictures = await picturesOf(batch).finally(() => batch.dispose());
  const missing = files.find((f) => !used.includes(f));
  if (missing) throw new DatasetError(`${missing}: cannot decode this true target`);
  return pictures;
}

/**
 * Writes the card's grid for each direction asked.
 * @param flags `--model` or `--checkpoint`, `--direction`, `--pairs`, `--out`, the dataset
 * @param io where lines go
 * @returns the pictures written
 */
export async function runCard(flags: CardFlags, io: RunnerIO): Promise<string[]> {
  const { directions, path } = generatorsNamed(flags);
  const run = `${flags.result_dir}/${datasetName(flags.dataset)}`;
  const out = flags.out || (flags.model ? `${MODELS_DIR}${flags.model}` : run);
  const backend = await selectBackend(flags.backend, { log: io.warn });
  const data = await openDataset(flags.dataset, io.warn);
  await Deno.mkdir(out, { recursive: true });
  const written: string[] = [];
  for (const direction of directions) {
    const [sources, targets] = direction === "A2B"
      ? [data.testA, data.testB]
      : [data.testB, data.testA];
    // The same positions in both lists: with aligned pairs, each source beside its own target.
    const at = pickIndices(sources.length, flags.pairs);
    const paired = data.alignedTest && sources.length === targets.length;
    const translator = await loadTranslator(path, flags, direction);
    const source = await loadTestImages(at.map((i) => sources[i]), translator.size, io.warn);
    const shown = await picturesOf(source.batch);
    const translated = await translator.translate(source.batch).finally(() => {
      source.batch.dispose();
      translator.dispose();
    });
    // A source that failed to decode (named by the warning) takes its target out with it.
    const kept = at.filter((i) => source.files.includes(sources[i]));
    const truth = paired ? await picturesOfFiles(kept.map((i) => targets[i]), translator.size) : [];
    const triples = shown.map((s, i) => [s, translated[i], ...(paired ? [truth[i]] : [])]);
    const lines: Picture[][] = [];
    for (let i = 0; i < triples.length; i += CARD_PER_LINE) {
      lines.push(triples.slice(i, i + CARD_PER_LINE).flat());
    }
    const group = paired ? ["source", "translated", "target"] : ["source", "translated"];
    const labels = Array.from({ length: Math.min(CARD_PER_LINE, triples.length) }, () => group)
      .flat();
    const file = `${out}/held_out_${direction}.png`;
    await writePicture(
      file,
      pictureTable(lines, { labels, zoom: CARD_ZOOM, groupSize: group.length }),
    );
    io.out(
      `${direction}: ${triples.length} held-out image(s) of ${sources.length}, translated by ` +
        `${path} (iteration ${translator.step}) on ${backend.name}: wrote ${file}`,
    );
    written.push(file);
  }
  return written;
}

if (import.meta.main) {
  await runCommand({
    usage: "deno task card [--model NAME | --checkpoint FILE] [flags]",
    about: "Writes held_out_A2B.png and held_out_B2A.png: held-out images drawn by the pick, " +
      "each as source, translation and true target, at 2x (the model card's pictures).",
    flags: CARD_FLAGS,
    defaults: LAPTOP_DEFAULTS,
    run: (flags) => runCard(flags, CONSOLE),
  });
}
