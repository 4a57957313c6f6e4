import type { PullImageRequest, PullImageResponse } from '../../gen/runtime.v1.js';
import type { Input } from '../../common/proto-registry.js';
import type { ImageService } from '../../backend/images/service.js';
import { requireString } from '../validate.js';

/** PullImage: pull into containerd and answer the image id (config digest). */
export async function pullImage(images: ImageService, req: PullImageRequest): Promise<Input<PullImageResponse>> {
  const ref = requireString(req.image?.image, 'image.image');
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
