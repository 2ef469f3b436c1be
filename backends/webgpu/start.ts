/**
 * The `webgpu` backend as this toolkit starts it: TensorFlow.js's WebGPU backend on a device we
 * request ourselves, so that what goes wrong is said in one line, and with our WGSL kernels
 * (`kernels.ts`) registered.
 *
 * Our own start-up, rather than the package's, because under Deno its request fails or misleads:
 * Deno may report adapter limits as BigInt, the package passes a feature name inside an array,
 * and a refused request, a missing Vulkan loader or a software adapter all look alike from
 * outside. Each gets its own message here, and a device lost mid-run is recorded so that the
 * training runner can stop with its last checkpoint kept.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { ENABLE_F16, setConvFloat16 } from "./conv.ts";
import { registerWebGpuKernels, setWebGpuKernels } from "./kernels.ts";

/** What `navigator.gpu.requestAdapter()` gives, as far as we use it. */
export interface GpuAdapter {
  /** Whether it is a fallback (software) adapter, where the runtime says so here. */
  readonly isFallbackAdapter?: boolean;
  /** Vendor, device, description and architecture (Deno: also `isFallbackAdapter`). */
  readonly info?: Record<string, unknown>;
  /** Optional features, by name. */
  readonly features?: ReadonlySet<string>;
  /** Limits, by name (numbers, or BigInt under Deno). */
  readonly limits?: Record<string, unknown>;
  /**
   * Requests a device.
   * @param descriptor `requiredLimits` and `requiredFeatures`
   * @returns the device
   */
  requestDevice(descriptor?: Record<string, unknown>): Promise<unknown>;
}

// The limits requested at the adapter's values: those tfjs-backend-webgpu raises above WebGPU's
// defaults (as its own start-up does), and the alignments a replayed step packs by.
const LIMITS = [
  "maxComputeWorkgroupStorageSize",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupSizeX",
  "maxComputeInvocationsPerWorkgroup",
  // A replayed step binds slices of buffers as views where they start at this alignment (the
  // device default is 256 bytes; adapters often take 32 or less), and packs uniform blocks by it.
  "minStorageBufferOffsetAlignment",
  "minUniformBufferOffsetAlignment",
  // A fused chain binds each of its inputs (8 by default; adapters often take more).
  "maxStorageBuffersPerShaderStage",
] as const;

function gpu(): { requestAdapter(o?: unknown): Promise<unknown> } | undefined {
  return (globalThis.navigator as { gpu?: { requestAdapter(o?: unknown): Promise<unknown> } })
    ?.gpu;
}

/**
 * Asks `navigator.gpu` for a high-performance adapter, or gives undefined where there is none.
 * @returns the adapter
 */
export async function requestGpuAdapter(): Promise<GpuAdapter | undefined> {
  const g = gpu();
  if (!g) return undefined;
  // Mesa's Vulkan loader prints an error per probe when this is unset (headless machines, CI).
  try {
    if (!Deno.env.get("XDG_RUNTIME_DIR")) Deno.env.set("XDG_RUNTIME_DIR", Deno.makeTempDirSync());
  } catch {
    // no env or write permission: the probe still works, only louder
  }
  try {
    return (await g.requestAdapter({ powerPreference: "high-performance" }) ?? undefined) as
      | GpuAdapter
      | undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether an adapter is a software one (lavapipe, llvmpipe, SwiftShader, a fallback adapter).
 * @param adapter the adapter
 * @returns true for a software adapter
 */
export function isSoftwareAdapter(adapter: GpuAdapter): boolean {
  if (adapter.isFallbackAdapter || adapter.info?.isFallbackAdapter) return true;
  return namesSoftwareAdapter(describeAdapter(adapter));
}

/**
 * Whether an adapter's words (its description, vendor, architecture) name a software one.
 * @param words what the runtime says of the adapter
 * @returns true for lavapipe, llvmpipe, SwiftShader or a "software" adapter
 */
export function namesSoftwareAdapter(words: string): boolean {
  return /llvmpipe|lavapipe|swiftshader|software/i.test(words);
}

/**
 * The adapter in a few words: its name, vendor and architecture as the runtime reports them.
 * @param adapter the adapter
 * @returns e.g. `NVIDIA H200 (vendor 0x10de, device 0x2335)`
 */
export function describeAdapter(adapter: GpuAdapter): string {
  const info = adapter.info ?? {};
  const hex = (v: unknown) => {
    const n = Number(v);
    return Number.isFinite(n) && String(v) !== "" ? `0x${n.toString(16)}` : String(v ?? "");
  };
  const name = String(info.description || info.device || "unknown adapter");
  const parts = [
    info.vendor ? `vendor ${hex(info.vendor)}` : "",
    info.device && info.device !== info.description ? `device ${hex(info.device)}` : "",
    info.architecture ? `${info.architecture}` : "",
  ].filter(Boolean);
  return parts.length ? `${name} (${parts.join(", ")})` : name;
}

// Whether the Vulkan loader can be opened (Linux); undefined where that cannot be checked.
function vulkanLoaderPresent(): boolean | undefined {
  if (typeof Deno === "undefined" || Deno.build.os !== "linux") return undefined; // a browser
  try {
    Deno.dlopen("libvulkan.so.1", {}).close();
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
      return undefined; // no --allow-ffi
    }
    return false;
  }
}

/**
 * Why there is no usable WebGPU adapter here, in one line, or undefined when there is one.
 * @param options `allowSoftware: true` accepts a software adapter (tests on lavapipe)
 * @returns the reason, naming what to install or set
 */
export async function webgpuUnavailable(
  { allowSoftware = true }: { allowSoftware?: boolean } = {},
): Promise<string | undefined> {
  if (!gpu()) return "this runtime has no navigator.gpu (Deno 1.39+ or a WebGPU browser needed)";
  const adapter = await requestGpuAdapter();
  if (!adapter) {
    if (vulkanLoaderPresent() === false) {
      return "no WebGPU adapter: the Vulkan loader libvulkan.so.1 is missing " +
        "(Debian/Ubuntu: apt-get install libvulkan1)";
    }
    const icd = Deno.env.get("VK_DRIVER_FILES") ?? Deno.env.get("VK_ICD_FILENAMES");
    return "no WebGPU adapter: Vulkan found no driver " +
      (icd ? `in VK_DRIVER_FILES=${icd}` : "(set VK_DRIVER_FILES to the driver's ICD file, e.g. " +
        "/usr/share/vulkan/icd.d/nvidia_icd.json, or install mesa-vulkan-drivers for lavapipe)");
  }
  if (!allowSoftware && isSoftwareAdapter(adapter)) {
    return `the WebGPU adapter is ${describeAdapter(adapter)}, a software renderer, not a GPU`;
  }
  return undefined;
}

/**
 * Why `requestAdapter()` found nothing, from what is known of the Vulkan set-up.
 * @param loader whether `libvulkan.so.1` opens (undefined: not known)
 * @param icd the `VK_DRIVER_FILES` (or older `VK_ICD_FILENAMES`) setting, if any
 * @returns one line naming what to install or set
 */
export function explainNoAdapter(loader: boolean | undefined, icd: string | undefined): string {
  if (loader === false) {
    return "no WebGPU adapter: the Vulkan loader libvulkan.so.1 is missing " +
      "(Debian/Ubuntu: apt-get install libvulkan1)";
  }
  return "no WebGPU adapter: Vulkan found no driver " +
    (icd
      ? `in VK_DRIVER_FILES=${icd} (is the file there, and its library on the library path?)`
      : "(set VK_DRIVER_FILES to the GPU driver's ICD file, e.g. " +
        "/usr/share/vulkan/icd.d/nvidia_icd.json, or install mesa-vulkan-drivers for lavapipe)");
}

/**
 * The limits to request: those tfjs-backend-webgpu raises, at the adapter's values, as numbers
 * (Deno may report them as BigInt, which `requestDevice` refuses).
 * @param limits the adapter's limits
 * @returns `requiredLimits` for `requestDevice`
 */
export function requiredLimitsOf(limits: Record<string, unknown>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of LIMITS) {
    if (limits[name] !== undefined) out[name] = Number(limits[name]);
  }
  return out;
}

let lostReason: string | undefined;

/**
 * Why the WebGPU device was lost, if it was (driver reset, GPU removed, out of memory).
 * @returns the reason, or undefined while the device is fine
 */
export function webgpuDeviceLost(): string | undefined {
  return lostReason;
}

/** What {@linkcode startWebGpu} says about the device it started. */
export interface WebGpuStart {
  /** The adapter, described. */
  readonly adapter: string;
  /** Whether it is a software renderer. */
  readonly software: boolean;
  /** Whether kernels run with GPU timestamps (per-kernel profiles). */
  readonly timestamps: boolean;
  /** Whether shaders may use float16 (`shader-f16`: the convolutions' float16 tiles). */
  readonly shaderF16: boolean;
}

/**
 * WGSL with `enable f16;` prepended where it holds {@linkcode ENABLE_F16}: the directive must
 * open the module, and TensorFlow.js writes the module's first lines itself.
 * @param code a shader module's code
 * @returns the code the device compiles
 */
export function withF16Directive(code: string): string {
  return code.includes(ENABLE_F16) ? `enable f16;\n${code}` : code;
}

/**
 * Makes `device` compile every shader module {@linkcode withF16Directive}.
 * @param device the device
 */
function enableF16Where(device: { createShaderModule(descriptor: { code: string }): unknown }) {
  const create = device.createShaderModule.bind(device);
  device.createShaderModule = (descriptor) =>
    create({ ...descriptor, code: withF16Directive(descriptor.code) });
}

let started: WebGpuStart | undefined;

/**
 * Registers the `webgpu` backend on a device of ours (limits as numbers, features by name) and
 * our WGSL kernels (unless `UGATIT_WEBGPU_KERNELS=off`, for comparisons; `UGATIT_WEBGPU_F16=on`
 * gives the convolutions float16 tiles, see `setConvFloat16`); the device is requested when the
 * backend is first set, and {@linkcode webgpuStarted} then describes it.
 */
export async function registerWebGpuBackend(): Promise<void> {
  const pkg = await import("@tensorflow/tfjs-backend-webgpu");
  if (tf.findBackendFactory("webgpu")) tf.removeBackend("webgpu");
  tf.registerBackend("webgpu", async () => {
    const adapter = await requestGpuAdapter();
    if (!adapter) throw new Error(await webgpuUnavailable() ?? "no WebGPU adapter");
    // A limits object is not enumerable: its fields are read by name.
    const limits = Object.fromEntries(
      LIMITS.map((name) => [name, (adapter.limits as Record<string, unknown>)?.[name]]),
    );
    const requiredLimits = requiredLimitsOf(limits);
    const requiredFeatures = ["timestamp-query", "shader-f16"].filter((f) =>
      adapter.features?.has(f)
    );
    let device: {
      lost: Promise<{ reason?: string; message?: string }>;
      features: ReadonlySet<string>;
      createShaderModule(descriptor: { code: string }): unknown;
    };
    try {
      device = await adapter.requestDevice({ requiredLimits, requiredFeatures }) as typeof device;
    } catch (e) {
      const asked = Object.entries(requiredLimits).map(([k, v]) => `${k}=${v}`).join(", ");
      throw new Error(
        `requestDevice refused on ${describeAdapter(adapter)}: ${(e as Error).message} ` +
          `(asked for ${asked}; features ${requiredFeatures.join(", ") || "none"})`,
      );
    }
    enableF16Where(device);
    lostReason = undefined;
    device.lost.then((info) => {
      if (info.reason === "destroyed") return; // we disposed it ourselves
      lostReason = `the WebGPU device was lost (${info.reason ?? "unknown"}): ${info.message ?? ""}`
        .trim();
    });
    started = {
      adapter: describeAdapter(adapter),
      software: isSoftwareAdapter(adapter),
      timestamps: device.features.has("timestamp-query"),
      shaderF16: device.features.has("shader-f16"),
    };
    // deno-lint-ignore no-explicit-any
    return new pkg.WebGPUBackend(device as any, adapter.info as any);
  }, 3);
  let off = false, f16 = false;
  try {
    off = Deno.env.get("UGATIT_WEBGPU_KERNELS") === "off";
    f16 = Deno.env.get("UGATIT_WEBGPU_F16") === "on";
  } catch {
    // no env permission: the kernels stay on, in float32
  }
  if (off) setWebGpuKernels(false);
  if (f16) setConvFloat16(true);
  registerWebGpuKernels();
}

/**
 * What the running `webgpu` backend was started on.
 * @returns the adapter and its abilities, or undefined before the backend was set
 */
export function webgpuStarted(): WebGpuStart | undefined {
  return started;
}

/**
 * Whether the `webgpu` backend runs on a software adapter: as {@linkcode webgpuStarted} says
 * where we started it, else from what TensorFlow.js's own start-up keeps of the adapter (a page's
 * backend: its vendor and architecture, `google` and `swiftshader` on Chromium's SwiftShader).
 * @returns true on a software adapter; false on a GPU or before the backend was set
 */
export function webgpuSoftware(): boolean {
  if (started) return started.software;
  const info = (tf.findBackend("webgpu") as { adapterInfo?: Record<string, unknown> } | undefined)
    ?.adapterInfo;
  return namesSoftwareAdapter(`${info?.vendor ?? ""} ${info?.architecture ?? ""}`);
}
