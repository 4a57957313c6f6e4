import type { ImageStatusRequest, ImageStatusResponse } from '../../gen/runtime.v1.js';
import type { Input } from '../../common/proto-registry.js';
import type { ImageService } from '../../backend/images/service.js';
import { requireString } from '../validate.js';
import { toCriImage } from './image-view.js';

/** ImageStatus: the image, or an empty answer when it is absent (as CRI requires); verbose adds the config. */
export async function imageStatus(images: ImageService, req: ImageStatusRequest): Promise<Input<ImageStatusResponse>> {
  const spec = requireString(req.image?.image, 'image.image');
  const image = await images.status(spec);
  if (!image) return { image: null, info: {} };
  const info: Record<string, string> = {};
  if (req.verbose) {
    info.info = JSON.stringify({
      imageSpec: image.config,
      manifestDigest: image.manifestDigest,
      chainID: image.topChainId,
      pinned: image.pinned,
    });
  }
  return { image: toCriImage(image), info };
}
