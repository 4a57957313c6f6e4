import type { ImageFsInfoResponse } from '../../gen/runtime.v1.js';
import type { Input } from '../../common/proto-registry.js';
import type { ImageService } from '../../backend/images/service.js';

/**
 * ImageFsInfo: bytes and inodes used by the snapshotter. Container writable layers live in the same
 * snapshotter, so no separate container filesystem is reported.
 */
export async function imageFsInfo(images: ImageService): Promise<Input<ImageFsInfoResponse>> {
  const u = await images.fsUsage();
  return {
    imageFilesystems: [
      { timestamp: u.timestamp, fsId: { mountpoint: u.mountpoint }, usedBytes: { value: u.bytes }, inodesUsed: { value: u.inodes } },
    ],
    containerFilesystems: [],
  };
}
