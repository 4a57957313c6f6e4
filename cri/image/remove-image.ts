import type { RemoveImageRequest, RemoveImageResponse } from '../../gen/runtime.v1.js';
import type { Input } from '../../common/proto-registry.js';
import type { ImageService } from '../../backend/images/service.js';
import { requireString } from '../validate.js';

/** RemoveImage: idempotent; by any one reference it removes the image with all its tags. */
export async function removeImage(images: ImageService, req: RemoveImageRequest): Promise<Input<RemoveImageResponse>> {
  await images.remove(requireString(req.image?.image, 'image.image'));
  return {};
}
