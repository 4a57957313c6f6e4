// Keeps the image index honest: follows containerd's image events (/images/create, /images/update,
// /images/delete) in crisp's namespace — made by crisp or by anyone else (`ctr images …`) — and tells
// the index. A subscription counts as live only once it has delivered a marker event crisp publishes
// right after subscribing, so no change can fall between "subscribed" and "index rebuilt".
import type { ContainerdClient } from '../containerd/client.js';
import type { Envelope } from '../../gen/containerd.services.events.v1.js';
import type { Logger } from '../../common/logger.js';
import { errorMessage } from '../../common/errors.js';
import { sleep } from '../../common/time.js';
import type { ImageIndex } from './image-index.js';

/** The marker's topic; its payload is an empty google.protobuf.Empty. */
export const SYNC_TOPIC = '/crisp/image-index-sync';
const EMPTY_TYPE_URL = 'types.googleapis.com/google.protobuf.Empty';
const RESUBSCRIBE_DELAY_MS = 500;
const MARKER_INTERVALS_MS = [50, 100, 200, 400, 800, 1600];

export interface ImageEventOptions {
  ctd: ContainerdClient;
  index: ImageIndex;
  log: Logger;
  signal: AbortSignal;
}

/** Runs until `signal` aborts, re-subscribing after a broken stream (containerd restarted). */
export async function followImageEvents({ ctd, index, log, signal }: ImageEventOptions): Promise<void> {
  const namespace = ctd.options.namespace;
  while (!signal.aborted) {
    const stream = ctd.events.serverStream(
      'Subscribe',
      { filters: [`namespace==${namespace},topic~="^/images/"`, `namespace==${namespace},topic==${JSON.stringify(SYNC_TOPIC)}`] },
      { signal },
    );
    // containerd registers the subscriber some time after the call starts, and a marker published
    // before that is not delivered: publish until one arrives.
    let marked = false;
    const markers = publishMarkers(ctd, () => marked || signal.aborted, log).catch((err: unknown) => {
      if (signal.aborted) return;
      log.warn({ err: errorMessage(err) }, 'image index: publishing the sync marker failed; re-subscribing');
      stream.cancel();
    });
    try {
      for await (const env of stream as AsyncIterable<Envelope>) {
        if (env.namespace !== namespace) continue;
        if (env.topic === SYNC_TOPIC) {
          if (marked) continue;
          marked = true;
          log.debug('image index follows containerd image events');
          index.setFollowing(true);
        } else if (env.topic.startsWith('/images/')) {
          index.invalidate();
        }
      }
    } catch (err) {
      if (signal.aborted) break;
      log.warn({ err: errorMessage(err) }, 'containerd image event stream broke; image reads go to containerd until re-subscribed');
    }
    marked = true;
    await markers;
    index.setFollowing(false);
    if (!signal.aborted) await sleep(RESUBSCRIBE_DELAY_MS, signal).catch(() => undefined);
  }
  index.setFollowing(false);
}

/** Publish the marker, waiting a little longer each time, until `done()`. */
async function publishMarkers(ctd: ContainerdClient, done: () => boolean, log: Logger): Promise<void> {
  for (let i = 0; !done(); i++) {
    await ctd.events.unary('Publish', { topic: SYNC_TOPIC, event: { type_url: EMPTY_TYPE_URL, value: Buffer.alloc(0) } });
    const wait = MARKER_INTERVALS_MS[Math.min(i, MARKER_INTERVALS_MS.length - 1)]!;
    if (i === MARKER_INTERVALS_MS.length) log.debug('image index: no sync marker back yet; still publishing');
    await sleep(wait);
  }
}
