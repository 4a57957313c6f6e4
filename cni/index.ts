// The cni/ module's public surface, for sandbox/ and daemon/.
export * from './types.js';
export { DEFAULT_CONF_DIR, SUPPORTED_CNI_VERSIONS, discoverNetwork, notReadyMessage, parseNetworkConfig, type NetworkDiscovery } from './config.js';
export { DEFAULT_BIN_DIRS, DEFAULT_TIMEOUT_MS, CniPluginError, isCniPluginError } from './exec.js';
export { DEFAULT_CACHE_DIR } from './cache.js';
export { podIps } from './result.js';
export { defaultConflist, writeConflist, type DefaultConflistOptions } from './default-conflist.js';
export {
  cniAdd,
  cniCheck,
  cniDel,
  cniStatus,
  cniVersion,
  cniLoopbackUp,
  createPodNetwork,
  NETWORK_NOT_READY,
  type CniOptions,
  type CniAddResult,
  type CniStatus,
  type CniVersionReport,
  type CniPluginVersion,
  type PodNetwork,
} from './network.js';
