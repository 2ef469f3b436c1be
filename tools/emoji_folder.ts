/**
 * Writes a dataset folder `<out>/{trainA,trainB,testA,testB}` of a few emoji of two styles, for
 * trying fine-tuning on "your own pictures" (the model card's example): `--train N` training emoji
 * of each style (default 48) and `--test N` held-out ones (default 24), spread over the built-in
 * split of `--dataset emoji:<from>2<to>` by the toolkit's pick (`data/pick.ts`), the same code
 * points in both styles.
 *
 *     deno run -A tools/emoji_folder.ts --dataset emoji:google2facebook --out ft_example
 *
 * @module
 */
import { parseArgs } from "@std/cli";
import { openDataset } from "../data/dataset.ts";
import { pickSpread } from "../data/pick.ts";

const args = parseArgs(Deno.args, {
  string: ["dataset", "out", "train", "test"],
  default: { dataset: "emoji:google2facebook", train: "48", test: "24" },
});
if (!args.out) {
  console.error("--out: the folder to write");
  Deno.exit(2);
}
const [train, test] = [Number(args.train), Number(args.test)];
if (![train, test].every((n) => Number.isInteger(n) && n > 0)) {
  console.error(`--train and --test: whole numbers above 0 (got ${args.train}, ${args.test})`);
  Deno.exit(2);
}
const data = await openDataset(String(args.dataset));
const parts: Record<string, string[]> = {
  trainA: pickSpread(data.trainA, train),
  trainB: pickSpread(data.trainB, train),
  testA: pickSpread(data.testA, test),
  testB: pickSpread(data.testB, test),
};
for (const [part, files] of Object.entries(parts)) {
  await Deno.mkdir(`${args.out}/${part}`, { recursive: true });
  for (const f of files) await Deno.copyFile(f, `${args.out}/${part}/${f.split("/").pop()}`);
}
console.log(`${args.out}: ${train} + ${train} training and ${test} + ${test} test emoji`);
