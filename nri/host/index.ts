// The NRI host crispd runs (see host.ts), and what the CLI needs to show its plugins.
export { NriHost, NRI_DEFAULTS, type NriHostOptions, type NriPluginInfo, type PluginHealth } from './host.js';
