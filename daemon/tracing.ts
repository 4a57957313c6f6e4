// Turns tracing on at daemon start when the configuration (or OTEL_* environment) asks for it: only then
// is the OpenTelemetry SDK imported. Returns the matching stop, which sends what is queued (bounded).
import type { Registry } from 'prom-client';
import type { Logger } from '../common/logger.js';
import { setTracer } from '../common/tracing.js';
import { crispVersion } from '../common/version.js';
import type { CrispConfig } from './config.js';
import { resolveTracingSettings } from './tracing-settings.js';

/** How long a stopping daemon gives the collector for the last spans. */
const FINAL_EXPORT_MS = 2000;

export async function startTracing(
  config: Pick<CrispConfig, 'tracing_endpoint' | 'tracing_sampling_rate_per_million'>,
  env: NodeJS.ProcessEnv,
  deps: { log: Logger; registry: Registry },
): Promise<(() => Promise<void>) | undefined> {
  const settings = resolveTracingSettings(config, env);
  if (!settings) return undefined;
  const { startOtelTracing } = await import('../common/tracing-otel.js');
  const tracing = startOtelTracing(settings, { log: deps.log, registry: deps.registry, version: crispVersion() });
  setTracer(tracing.tracer);
  deps.log.info({ url: settings.url, sampler: settings.sampler, service: settings.serviceName }, 'tracing on: spans go to the OTLP collector');
  return async () => {
    setTracer(undefined);
    await tracing.shutdown(FINAL_EXPORT_MS);
  };
}
