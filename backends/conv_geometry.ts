/**
 * What the convolution kernels of ours (`native/`, `webgpu/`) read from a TensorFlow.js
 * convolution's attributes, and the geometry they take: NHWC and undilated only (anything else
 * goes to the stock kernel).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";

/** The attributes of `Conv2D`, `Conv2DBackpropInput` and `Conv2DBackpropFilter`. */
export interface ConvAttrs {
  /** Strides along H and W. */
  strides: [number, number] | number;
  /** Padding, as tfjs takes it. */
  pad: "valid" | "same" | number | tf.backend_util.ExplicitPadding;
  /** Layout (NHWC unless said). */
  dataFormat?: "NHWC" | "NCHW";
  /** Dilations (1 unless said). */
  dilations?: [number, number] | number;
  /** Rounding of output sizes. */
  dimRoundingMode?: "floor" | "round" | "ceil";
  /** The input's shape (`Conv2DBackpropInput`). */
  inputShape?: [number, number, number, number];
  /** The filter's shape (`Conv2DBackpropFilter`). */
  filterShape?: [number, number, number, number];
}

/**
 * The convolution's geometry, or undefined where it is NCHW or dilated.
 * @param xShape the input's shape
 * @param filterShape the filter's shape (HWIO)
 * @param attrs the attributes
 * @returns tfjs's geometry of it
 */
export function convGeometry(
  xShape: number[],
  filterShape: number[],
  attrs: ConvAttrs,
): tf.backend_util.Conv2DInfo | undefined {
  const d = attrs.dilations;
  const dilated = d !== undefined && (Array.isArray(d) ? d.some((v) => v !== 1) : d !== 1);
  if (attrs.dataFormat === "NCHW" || dilated) return undefined;
  return tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
  );
}
