import type { PullImageRequest, PullImageResponse } from '../../gen/runtime.v1.js';
import type { Input } from '../../common/proto-registry.js';
import type { ImageService } from '../../backend/images/service.js';
import { requireString } from '../validate.js';
import { invalidArgument } from '../../common/errors.js';

/**
 * PullImage: pull into containerd and answer the image id (config digest). Every configured runtime
 * handler shares one snapshotter, so a known image.runtime_handler pulls as any other; an unknown one
 * is refused rather than ignored.
 */
export async function pullImage(images: ImageService, handlers: readonly string[], req: PullImageRequest): Promise<Input<PullImageResponse>> {
  const ref = requireString(req.image?.image, 'image.image');
  const handler = req.image?.runtimeHandler ?? '';
  if (handler && !handlers.includes(handler)) {
    throw invalidArgument(`image.runtime_handler: "${handler}" is not configured (configured: ${handlers.join(', ')})`);
  }
  const a = req.auth;
  const auth = a
    ? {
        username: a.username,
        password: a.password,
        auth: a.auth,
        serverAddress: a.serverAddress,
        identityToken: a.identityToken,
        registryToken: a.registryToken,
      }
    : null;
  const result = await images.pull(ref, { auth });
  return { imageRef: result.id };
}
