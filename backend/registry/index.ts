// The registry client's public surface, for the image puller.
export { RegistryClient, credentialsForEndpoint, parseManifest } from './client.js';
export type {
  BlobRequestOptions,
  BlobStream,
  FetchedManifest,
  ParsedManifest,
  RegistryClientOptions,
  RegistryLogger,
  RequestOptions,
  ResolvedDescriptor,
  ResolvedImage,
  ResolvedManifest,
} from './client.js';
export { verifyingStream, ContentMismatchError, isContentMismatch, type VerifyOptions } from './verify.js';
export {
  parseImageReference,
  referenceString,
  repositoryName,
  manifestObject,
  digestReference,
  tagReference,
  familiarString,
  DEFAULT_DOMAIN,
  DEFAULT_TAG,
  type ImageReference,
} from './reference.js';
export { parseDigest, isDigest, digestOf, sha256Digest, hasherFor } from './digest.js';
export { loadEndpoints, parseHostsToml, defaultServer, endpointsFor, type HostsOptions, type RegistryEndpoint, type HostCapability } from './hosts.js';
export { credentialsFrom, parseWwwAuthenticate, isAuthError, type RegistryAuth, type Credentials } from './auth.js';
export { hostPlatform, pickPlatform, platformString, goArch } from './platform.js';
export { DEFAULT_TIMEOUTS, type Timeouts } from './transport.js';
export * from './oci.js';
