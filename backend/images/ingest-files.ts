// The data files behind containerd's content ingests, for a containerd whose content store is on this host
// (the embedded one): layer bytes can then go straight to disk instead of through the content API's gRPC
// stream, which costs both processes a copy, a protobuf frame and an HTTP/2 frame per 16 KiB.
//
// Only the bytes take the shortcut. The ingest is opened and resumed through the content API as usual,
// under the same leases and labels. At the end crispd verifies size and SHA-256 itself (the download
// worker hashes on the way) and hands containerd the verified file as a blob (content-store.ts,
// commitVerified); where that does not apply, containerd re-hashes the file when the writer is reopened
// and checks digest and size at commit. Either way a wrong byte fails the pull like any bad download.
//
// Layout (containerd 1.x and 2.x local store and metadata store): <content root>/ingest/<sha256 of the
// backend ref>/ holds `ref` (the backend ref, "<namespace>/<sequence>/<client ref>") and `data`. The
// sequence is containerd's, so the directory is found by reading the `ref` files.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Where a local store keeps the committed blob `digest`; undefined for anything but a well-formed sha256. */
export function localBlobPath(contentRoot: string, digest: string): string | undefined {
  const hex = /^sha256:([a-f0-9]{64})$/.exec(digest)?.[1];
  return hex ? join(contentRoot, 'blobs', 'sha256', hex) : undefined;
}

export class IngestFiles {
  private readonly ingestDir: string;

  /** `contentRoot`: containerd's `<root>/io.containerd.content.v1.content`; `namespace`: the client's. */
  constructor(
    private readonly contentRoot: string,
    private readonly namespace: string,
  ) {
    this.ingestDir = join(contentRoot, 'ingest');
  }

  /** See localBlobPath. */
  blobFile(digest: string): string | undefined {
    return localBlobPath(this.contentRoot, digest);
  }

  /**
   * The data file of the open ingest `ref`, or undefined when there is none or more than one candidate
   * (a layout this code does not know): the caller then sends the bytes over the content API.
   */
  async dataFile(ref: string): Promise<string | undefined> {
    let entries: string[];
    try {
      entries = await readdir(this.ingestDir);
    } catch {
      // No ingest directory (not a local store, or a layout we do not know): use the API.
      return undefined;
    }
    const found: string[] = [];
    for (const entry of entries) {
      let backendRef: string;
      try {
        backendRef = await readFile(join(this.ingestDir, entry, 'ref'), 'utf8');
      } catch {
        // An ingest committed or aborted while we looked.
        continue;
      }
      if (this.isBackendRefOf(backendRef, ref)) found.push(join(this.ingestDir, entry, 'data'));
    }
    return found.length === 1 ? found[0] : undefined;
  }

  private isBackendRefOf(backendRef: string, ref: string): boolean {
    const prefix = `${this.namespace}/`;
    const suffix = `/${ref}`;
    if (!backendRef.startsWith(prefix) || !backendRef.endsWith(suffix)) return false;
    return /^\d+$/.test(backendRef.slice(prefix.length, backendRef.length - suffix.length));
  }
}
