// Whether crispd traces, where the spans go and which are sampled: from the config keys
// tracing_endpoint and tracing_sampling_rate_per_million (CRI-O's names), overridden by the standard
// OTEL_* environment variables when those are set (as with any OpenTelemetry SDK). Bad values stop the
// daemon at start naming the key or variable.
import { invalidArgument } from '../common/errors.js';
import type { SamplerSetting, TracingSettings } from '../common/tracing.js';

export const DEFAULT_SERVICE_NAME = 'crispd';
const TRACES_PATH = 'v1/traces';

function parseHttpUrl(what: string, value: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw invalidArgument(`${what}: expected an http:// or https:// URL such as "http://127.0.0.1:4318", got ${JSON.stringify(value)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw invalidArgument(`${what}: expected an http:// or https:// URL such as "http://127.0.0.1:4318", got ${JSON.stringify(value)}`);
  }
  if (url.search !== '' || url.hash !== '') throw invalidArgument(`${what}: a collector URL has no query or fragment, got ${JSON.stringify(value)}`);
  return url;
}

/**
 * The traces URL of a base endpoint ("http://host:4318" → "http://host:4318/v1/traces"); an endpoint
 * that already ends in /v1/traces is kept. `what` names the key or variable in errors.
 */
export function tracesUrl(what: string, endpoint: string): string {
  const url = parseHttpUrl(what, endpoint);
  if (!url.pathname.endsWith(`/${TRACES_PATH}`)) url.pathname = `${url.pathname.replace(/\/+$/, '')}/${TRACES_PATH}`;
  return url.toString();
}

/** tracing_sampling_rate_per_million as a sampler: a caller's decision wins, new traces by ratio. */
export function samplerFromRate(perMillion: number): SamplerSetting {
  return { root: 'ratio', ratio: perMillion / 1_000_000, parentBased: true };
}

const SAMPLERS: Record<string, Omit<SamplerSetting, 'ratio'>> = {
  always_on: { root: 'always_on', parentBased: false },
  always_off: { root: 'always_off', parentBased: false },
  traceidratio: { root: 'ratio', parentBased: false },
  parentbased_always_on: { root: 'always_on', parentBased: true },
  parentbased_always_off: { root: 'always_off', parentBased: true },
  parentbased_traceidratio: { root: 'ratio', parentBased: true },
};

function samplerFromEnv(name: string, arg: string | undefined): SamplerSetting {
  const known = SAMPLERS[name];
  if (!known) throw invalidArgument(`OTEL_TRACES_SAMPLER: ${JSON.stringify(name)} is not one of ${Object.keys(SAMPLERS).join(', ')}`);
  let ratio = 1;
  if (known.root === 'ratio' && arg !== undefined) {
    ratio = Number(arg);
    if (arg.trim() === '' || !Number.isFinite(ratio) || ratio < 0 || ratio > 1) {
      throw invalidArgument(`OTEL_TRACES_SAMPLER_ARG: expected a ratio from 0 to 1, got ${JSON.stringify(arg)}`);
    }
  }
  return { ...known, ratio };
}

/** An environment variable, with "" meaning unset (as the OpenTelemetry spec has it). */
function envValue(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const v = env[name]?.trim();
  return v === undefined || v === '' ? undefined : v;
}

/** The tracing settings, or undefined when tracing is off (no endpoint anywhere, or OTEL_SDK_DISABLED=true). */
export function resolveTracingSettings(
  config: { tracing_endpoint: string; tracing_sampling_rate_per_million: number },
  env: NodeJS.ProcessEnv,
): TracingSettings | undefined {
  if (envValue(env, 'OTEL_SDK_DISABLED')?.toLowerCase() === 'true') return undefined;
  const signalEndpoint = envValue(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
  const baseEndpoint = envValue(env, 'OTEL_EXPORTER_OTLP_ENDPOINT');
  let url: string;
  // The signal-specific variable is the whole URL, as the OpenTelemetry spec defines it.
  if (signalEndpoint !== undefined) url = parseHttpUrl('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', signalEndpoint).toString();
  else if (baseEndpoint !== undefined) url = tracesUrl('OTEL_EXPORTER_OTLP_ENDPOINT', baseEndpoint);
  else if (config.tracing_endpoint !== '') url = tracesUrl('config key "tracing_endpoint"', config.tracing_endpoint);
  else return undefined;
  const samplerName = envValue(env, 'OTEL_TRACES_SAMPLER');
  const sampler = samplerName !== undefined ? samplerFromEnv(samplerName.toLowerCase(), envValue(env, 'OTEL_TRACES_SAMPLER_ARG')) : samplerFromRate(config.tracing_sampling_rate_per_million);
  return { url, sampler, serviceName: envValue(env, 'OTEL_SERVICE_NAME') ?? DEFAULT_SERVICE_NAME };
}
