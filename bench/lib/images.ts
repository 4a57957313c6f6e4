// Images the benchmarks push to the loopback registry: the e2e busybox image, and a pause image for the
// peer's CRI plugin (busybox-static with nothing but sleep, sleeping forever as pid 1).
import { readFileSync } from 'node:fs';
import { BUSYBOX, buildImage, busyboxImage, type TestImage } from '../../test/e2e/fixtures/images.js';

export function benchBusyboxImage(): TestImage {
  return busyboxImage();
}

/** The peer's sandbox image. containerd stops a sandbox with SIGKILL, so sleep needs no signal handling. */
export function pauseImage(): TestImage {
  return buildImage(
    [
      [
        { type: 'dir', path: 'bin' },
        { type: 'file', path: 'bin/busybox', data: readFileSync(BUSYBOX), mode: 0o755 },
        { type: 'symlink', path: 'bin/sleep', target: 'busybox' },
      ],
    ],
    { config: { Entrypoint: ['/bin/sleep', 'infinity'], Cmd: null, Env: ['PATH=/bin'], Labels: { 'io.crisp.bench': 'pause' } } },
  );
}
