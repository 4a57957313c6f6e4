import type { ListImagesRequest, ListImagesResponse } from '../../gen/runtime.v1.js';
import type { Input } from '../../common/proto-registry.js';
import type { ImageService } from '../../backend/images/service.js';
import { toCriImage } from './image-view.js';

/** ListImages, optionally filtered to the one image the filter names. */
export async function listImages(images: ImageService, req: ListImagesRequest): Promise<Input<ListImagesResponse>> {
  const wanted = req.filter?.image?.image;
  if (wanted) {
    const one = await images.status(wanted);
    return { images: one ? [toCriImage(one)] : [] };
  }
  return { images: (await images.list()).map(toCriImage) };
}
