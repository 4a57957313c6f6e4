import type { VersionRequest, VersionResponse } from '../../gen/runtime.v1.js';
import { codecFor, type Input } from '../../common/proto-registry.js';
import { Encoded } from '../../common/grpc-server.js';
import { crispVersion, RUNTIME_NAME, CRI_API_VERSION } from '../../common/version.js';

export function versionResponse(): Input<VersionResponse> {
  return {
    version: '0.1.0',
    runtimeName: RUNTIME_NAME,
    runtimeVersion: crispVersion(),
    runtimeApiVersion: CRI_API_VERSION,
  };
}

/** The same for every call (crisp's version does not change while it runs): encoded and framed once. */
let answer: Encoded<VersionResponse> | undefined;

/** Version: the CRI API version kubelet negotiates ("v1") and crisp's own version. */
export async function version(_req: VersionRequest): Promise<Encoded<VersionResponse>> {
  answer ??= new Encoded(codecFor<VersionResponse>('runtime.v1.VersionResponse').encode(versionResponse()));
  return answer;
}
