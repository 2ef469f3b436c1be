/**
 * Whole reference checkpoints: the six networks of a U-GAT-IT model (two generators, global and
 * local discriminators for each domain) in one safetensors file whose names are
 * `<network>.<reference state_dict name>`, as `tools/pytorch/convert_checkpoint.py` writes them
 * from (and reads them back into) the reference's `torch.save` files.
 *
 * @module
 */
import type { GeneratorConfig, GeneratorParams } from "../layers/generator.ts";
import type {
  DiscriminatorConfig,
  DiscriminatorParams,
  DiscriminatorState,
} from "../layers/discriminator.ts";
import { type HostTensor, readSafetensors, writeSafetensors } from "./safetensors.ts";
import {
  discriminatorNames,
  fromReference,
  generatorNames,
  toReference,
} from "./reference_names.ts";
import { fromHost, toHost } from "./params_io.ts";
import { underPrefix } from "../tree/tree.ts";

/** The configurations of a model's networks. */
export interface ReferenceModelConfig {
  /** Both generators. */
  readonly generator: GeneratorConfig;
  /** Both global discriminators (`n_dis + 1` layers). */
  readonly global: DiscriminatorConfig;
  /** Both local discriminators (`n_dis - 1` layers). */
  readonly local: DiscriminatorConfig;
}

/** A discriminator's parameters with its spectral-norm state. */
export interface DiscriminatorWeights {
  /** Parameters. */
  readonly params: DiscriminatorParams;
  /** Spectral-norm vectors. */
  readonly state: DiscriminatorState;
}

/** The six networks, by the reference's names. */
export interface ReferenceModel {
  /** Generator A -> B. */
  readonly genA2B: GeneratorParams;
  /** Generator B -> A. */
  readonly genB2A: GeneratorParams;
  /** Global discriminator of domain A. */
  readonly disGA: DiscriminatorWeights;
  /** Global discriminator of domain B. */
  readonly disGB: DiscriminatorWeights;
  /** Local discriminator of domain A. */
  readonly disLA: DiscriminatorWeights;
  /** Local discriminator of domain B. */
  readonly disLB: DiscriminatorWeights;
}

const GENERATORS = ["genA2B", "genB2A"] as const;
const DISCRIMINATORS = ["disGA", "disGB", "disLA", "disLB"] as const;

function tables(config: ReferenceModelConfig) {
  const d = (net: string) =>
    discriminatorNames(net.startsWith("disG") ? config.global : config.local);
  return { g: generatorNames(config.generator), d };
}

/**
 * Reads a converted reference checkpoint into our records, checking every tensor's presence and
 * shape against the configuration.
 * @param path the safetensors file
 * @param config the networks' configurations
 * @returns the six networks
 * @throws {WeightFileError} naming the file and tensor that do not fit
 */
export async function readReferenceCheckpoint(
  path: string,
  config: ReferenceModelConfig,
): Promise<ReferenceModel> {
  const { tensors } = await readSafetensors(path);
  const { g, d } = tables(config);
  const out: Record<string, unknown> = {};
  for (const net of GENERATORS) {
    out[net] = fromHost(fromReference(g, underPrefix(tensors, net), `${path} (${net})`).params);
  }
  for (const net of DISCRIMINATORS) {
    const { params, state } = fromReference(d(net), underPrefix(tensors, net), `${path} (${net})`);
    out[net] = { params: fromHost(params), state: fromHost(state) };
  }
  return out as unknown as ReferenceModel;
}

/**
 * Writes the six networks with the reference's names and layouts, for
 * `convert_checkpoint.py to-torch`.
 * @param path the safetensors file (written atomically)
 * @param model the six networks
 * @param config their configurations
 */
export async function writeReferenceCheckpoint(
  path: string,
  model: ReferenceModel,
  config: ReferenceModelConfig,
): Promise<void> {
  const { g, d } = tables(config);
  const tensors: Record<string, HostTensor> = {};
  const add = (net: string, named: Record<string, HostTensor>) => {
    for (const [k, v] of Object.entries(named)) tensors[`${net}.${k}`] = v;
  };
  for (const net of GENERATORS) add(net, toReference(g, await toHost(model[net])));
  for (const net of DISCRIMINATORS) {
    const host = { ...(await toHost(model[net].params)), ...(await toHost(model[net].state)) };
    add(net, toReference(d(net), host));
  }
  await writeSafetensors(path, tensors);
}
