/**
 * Backpropagation that frees as it goes. TensorFlow.js's `engine.gradients` keeps, until the whole
 * backward pass is over, every tensor the forward pass saved for it and the gradient of every
 * intermediate tensor, so a training step's memory grows through its backward pass instead of
 * shrinking (at 64 px, light ch=32: 81 MB of parameters and moments, 260 MB at the end of the
 * generator's forward pass, 434 MB at the end of its backward). Here each tape node's saved tensors
 * and its outputs' gradients are released as soon as that node's input gradients are computed:
 * walking the tape backward, nothing later reads them. The arithmetic is the stock engine's, in
 * the same order, so gradients are bit for bit the same (tested).
 *
 * Installed on the engine by {@linkcode setFreeingBackprop} (`selectBackend` does, for every
 * backend); nested gradients (a gradient taken inside a function being differentiated) keep the
 * stock path.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";

// The engine's tape, as tfjs-core 4 records it (engine.ts, tape.ts).
interface TapeNode {
  id: number;
  kernelName: string;
  inputs: Record<string, tf.Tensor>;
  outputs: tf.Tensor[];
  saved: tf.Tensor[];
  gradient?: (dys: (tf.Tensor | null)[]) => Record<string, () => tf.Tensor>;
}
interface Engine {
  state: { activeTape: TapeNode[] | null; gradientDepth: number };
  gradients: Gradients;
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T;
  startTape(): void;
  endTape(): void;
  tidy<T>(nameOrFn: string | (() => T), fn?: () => T): T;
}
type Gradients = (
  f: () => tf.Tensor,
  xs: tf.Tensor[],
  dy?: tf.Tensor,
  allowNoGradients?: boolean,
) => { value: tf.Tensor; grads: tf.Tensor[] };

/**
 * The nodes of a tape on a path from one of `xs` to `y`, in tape order, each with only the inputs
 * that depend on `xs`.
 * @param tape the recorded nodes
 * @param xs the tensors differentiated for
 * @param y the result
 * @returns the nodes backpropagation walks
 */
export function nodesFromXsToY(tape: TapeNode[], xs: tf.Tensor[], y: tf.Tensor): TapeNode[] {
  const fromX = new Set(xs.map((x) => x.id));
  const nodeFromX = new Set<number>();
  for (const node of tape) {
    if (Object.values(node.inputs).some((t) => fromX.has(t.id))) {
      node.outputs.forEach((o) => fromX.add(o.id));
      nodeFromX.add(node.id);
    }
  }
  const toY = new Set([y.id]);
  const nodeToY = new Set<number>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i];
    if (node.outputs.some((o) => toY.has(o.id))) {
      Object.values(node.inputs).forEach((t) => toY.add(t.id));
      nodeToY.add(node.id);
    }
  }
  return tape.filter((n) => nodeFromX.has(n.id) && nodeToY.has(n.id)).map((n) => ({
    ...n,
    inputs: Object.fromEntries(Object.entries(n.inputs).filter(([, t]) => fromX.has(t.id))),
  }));
}

let stock: Gradients | undefined; // the engine's own, while ours is installed

/**
 * Puts the freeing backward pass on the engine, or the stock one back.
 * @param on true: ours; false: TensorFlow.js's
 */
export function setFreeingBackprop(on: boolean): void {
  const engine = tf.engine() as unknown as Engine;
  if (!on) {
    if (stock) engine.gradients = stock;
    stock = undefined;
    return;
  }
  if (stock) return;
  const own = engine.gradients;
  stock = own;
  const stockRun: Gradients = (...args) => own.apply(engine, args);
  engine.gradients = (f, xs, dy, allowNoGradients = false) => {
    // Inside another gradient's tape, the outer tape may still need what this one saved.
    if (engine.state.gradientDepth > 0 || xs.length === 0) {
      return stockRun(f, xs, dy, allowNoGradients);
    }
    if (dy != null && dy.dtype !== "float32") {
      throw new Error(`dy must have 'float32' dtype, but has '${dy.dtype}'`);
    }
    const y = engine.scopedRun(
      () => engine.startTape(),
      () => engine.endTape(),
      () => engine.tidy("forward", f),
    );
    if (!(y instanceof tf.Tensor)) {
      throw new Error("The result y returned by f() must be a tensor.");
    }
    const tape = engine.state.activeTape!;
    const nodes = nodesFromXsToY(tape, xs, y);
    if (!allowNoGradients && nodes.length === 0) {
      throw new Error(
        "Cannot compute gradient of y=f(x) with respect to x. Make sure that the f you passed " +
          "encloses all operations that lead from x to y.",
      );
    }
    const wanted = new Set(xs.map((x) => x.id));
    return engine.tidy("backward", () => {
      const grad = new Map<number, tf.Tensor>([[y.id, dy ?? tf.onesLike(y)]]);
      for (let i = nodes.length - 1; i >= 0; i--) {
        const node = nodes[i];
        if (!node.gradient) {
          throw new Error(
            `Cannot compute gradient: gradient function not found for ${node.kernelName}.`,
          );
        }
        const dys = node.outputs.map((o) => grad.get(o.id) ?? null);
        const inputGrads = node.gradient(dys);
        const made = new Set<tf.Tensor>();
        for (const [name, x] of Object.entries(node.inputs)) {
          if (!(name in inputGrads)) {
            throw new Error(
              `Cannot backprop through input ${name}. Available gradients found: ${
                Object.keys(inputGrads)
              }.`,
            );
          }
          const dx = engine.tidy(() => inputGrads[name]());
          if (dx.dtype !== "float32") {
            throw new Error(
              `Error in gradient for op ${node.kernelName}. The gradient of input ${name} must ` +
                `have 'float32' dtype, but has '${dx.dtype}'`,
            );
          }
          if (dx.shape.join() !== x.shape.join()) {
            throw new Error(
              `Error in gradient for op ${node.kernelName}. The gradient of input '${name}' has ` +
                `shape '${dx.shape}', which does not match the shape of the input '${x.shape}'`,
            );
          }
          const current = grad.get(x.id);
          if (current === undefined) {
            grad.set(x.id, dx);
            made.add(dx);
          } else {
            const sum = tf.add(current, dx);
            current.dispose();
            if (!made.has(dx)) dx.dispose();
            grad.set(x.id, sum);
            made.add(sum);
          }
        }
        // Nothing earlier on the tape reads this node's saved tensors or its outputs' gradients;
        // a gradient function may hand one of them on as an input's gradient (kept then), and
        // the caller's dy is the caller's.
        for (const o of node.outputs) {
          const g = grad.get(o.id);
          if (g && !made.has(g) && g !== dy && !wanted.has(o.id)) {
            g.dispose();
            grad.delete(o.id);
          }
        }
        for (const t of node.saved) if (!made.has(t)) t.dispose();
      }
      const grads = xs.map((x) => grad.get(x.id)!);
      // As the stock engine: what the rest of the tape saved goes now.
      for (const node of tape) for (const t of node.saved) t.dispose();
      engine.state.activeTape = null;
      return { value: y, grads };
    });
  };
}
