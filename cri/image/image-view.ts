// ImageView (backend) → CRI Image.
import type { Image } from '../../gen/runtime.v1.js';
import type { Input } from '../../common/proto-registry.js';
import type { ImageView } from '../../backend/images/service.js';

/** The image config's user: a numeric uid (uid field) or a name (username field). "uid:gid" keeps the uid part. */
export function imageUser(user: string | undefined): { uid?: number; username: string } {
  const u = (user ?? '').split(':')[0] ?? '';
  if (u === '') return { username: '' };
  if (/^\d+$/.test(u)) return { uid: Number(u), username: '' };
  return { username: u };
}

/** What of the view this reads is what image-status.ts compares before it reuses an answer: keep both in step. */
export function toCriImage(image: ImageView): Input<Image> {
  const user = imageUser(image.config.config?.User);
  return {
    id: image.id,
    repoTags: image.repoTags,
    repoDigests: image.repoDigests,
    size: image.size,
    uid: user.uid !== undefined ? { value: user.uid } : null,
    username: user.username,
    spec: { image: image.id },
    pinned: image.pinned,
  };
}
