/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
/**
 * Pictures in the page: decoding a picture the user gives (on white, at a side, as the data
 * loader composites) and dropping pictures on an element; shared by the translation
 * (`demo.ts`) and the fine-tune panel (`finetune_panel.ts`).
 *
 * @module
 */

/**
 * Decodes a picture to RGB bytes at a side, on white (as the data loader composites).
 * @param blob the picture
 * @param side the side to resize to
 * @returns `side * side * 3` bytes
 */
export async function pictureRgb(blob: Blob, side: number): Promise<Uint8Array> {
  const bitmap = await createImageBitmap(blob);
  const canvas = Object.assign(document.createElement("canvas"), { width: side, height: side });
  const ctx = canvas.getContext("2d", { willReadFrequently: true })!;
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, side, side);
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(bitmap, 0, 0, side, side);
  bitmap.close();
  const rgba = ctx.getImageData(0, 0, side, side).data;
  const rgb = new Uint8Array(side * side * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    rgb[j] = rgba[i];
    rgb[j + 1] = rgba[i + 1];
    rgb[j + 2] = rgba[i + 2];
  }
  return rgb;
}

/**
 * Makes an element a drop target for files, outlined while something is dragged over it.
 * @param target the element
 * @param onFiles what to do with the files dropped
 */
export function dropFilesOn(target: HTMLElement, onFiles: (files: File[]) => void): void {
  target.ondragover = (e) => {
    e.preventDefault();
    target.classList.add("over");
  };
  target.ondragleave = () => target.classList.remove("over");
  target.ondrop = (e) => {
    e.preventDefault();
    target.classList.remove("over");
    onFiles([...(e.dataTransfer?.files ?? [])]);
  };
}
