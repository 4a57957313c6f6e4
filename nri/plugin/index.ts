// The TypeScript NRI plugin SDK.
export * from './plugin.js';
