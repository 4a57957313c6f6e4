import type { ImageStatusRequest, ImageStatusResponse } from '../../gen/runtime.v1.js';
import { codecFor, type Input } from '../../common/proto-registry.js';
import { Encoded } from '../../common/grpc-server.js';
import type { ImageService, ImageView } from '../../backend/images/service.js';
import { requireString } from '../validate.js';
import { toCriImage } from './image-view.js';

/** Same answer: every field toCriImage reads has the same value or is the same object (never modified). */
function sameView(a: ImageView, b: ImageView): boolean {
  return (
    a.id === b.id &&
    a.repoTags === b.repoTags &&
    a.repoDigests === b.repoDigests &&
    a.size === b.size &&
    a.config === b.config &&
    a.pinned === b.pinned
  );
}

type Response = ImageStatusResponse;
const MAX_KEPT_ANSWERS = 256;

/** ImageStatus: the image, or an empty answer when it is absent (as CRI requires); verbose adds the config. */
export function imageStatusHandler(images: ImageService): (req: ImageStatusRequest) => Promise<Input<ImageStatusResponse> | Encoded<Response>> {
  /** Non-verbose answers by the image they describe, reused while its view is unchanged. */
  const answers = new Map<string, { view: ImageView; answer: Encoded<Response> }>();
  return (req) => imageStatus(images, answers, req);
}

async function imageStatus(
  images: ImageService,
  answers: Map<string, { view: ImageView; answer: Encoded<Response> }>,
  req: ImageStatusRequest,
): Promise<Input<ImageStatusResponse> | Encoded<Response>> {
  const spec = requireString(req.image?.image, 'image.image');
  const image = await images.status(spec);
  if (!image) return { image: null, info: {} };
  if (req.verbose) {
    const info = {
      info: JSON.stringify({
        imageSpec: image.config,
        manifestDigest: image.manifestDigest,
        chainID: image.topChainId,
        pinned: image.pinned,
      }),
    };
    return { image: toCriImage(image), info };
  }
  const kept = answers.get(image.id);
  if (kept && sameView(kept.view, image)) return kept.answer;
  const answer = new Encoded<Response>(codecFor<Response>('runtime.v1.ImageStatusResponse').encode({ image: toCriImage(image), info: {} }));
  if (answers.size >= MAX_KEPT_ANSWERS) answers.clear();
  answers.set(image.id, { view: image, answer });
  return answer;
}
