import type { VersionRequest, VersionResponse } from '../../gen/runtime.v1.js';
import type { Input } from '../../common/proto-registry.js';
import { crispVersion, RUNTIME_NAME, CRI_API_VERSION } from '../../common/version.js';

/** Version: the CRI API version kubelet negotiates ("v1") and crisp's own version. */
export async function version(_req: VersionRequest): Promise<Input<VersionResponse>> {
  return {
    version: '0.1.0',
    runtimeName: RUNTIME_NAME,
    runtimeVersion: crispVersion(),
    runtimeApiVersion: CRI_API_VERSION,
  };
}
