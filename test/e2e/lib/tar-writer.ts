// A small tar encoder for tests: writes entries GNU tar will not (names with "../" or a leading "/",
// writes through symlinks, whiteouts, duplicates, base-256 ids, PAX records with binary values, GNU
// long names), byte for byte as the caller asks. Not for production: no validation, all in memory.

export interface TarEntry {
  name: string;
  /** Type flag: '0' file (default), '1' hardlink, '2' symlink, '3' char, '4' block, '5' dir, '6' fifo, or any other byte. */
  type?: string;
  data?: Buffer | string;
  linkname?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  /** Seconds since the epoch (header field; use pax.mtime for fractions). */
  mtime?: number;
  devmajor?: number;
  devminor?: number;
  /** PAX records written in an 'x' header before the entry (values may be binary). */
  pax?: Record<string, string | Buffer>;
  /** How a name (or linkname) longer than 100 bytes is carried: PAX path (default), GNU 'L'/'K', or the ustar prefix field. */
  long?: 'pax' | 'gnu' | 'ustar';
  /** Write uid and gid in base-256 (GNU's encoding for values that do not fit 7 octal digits). */
  base256?: boolean;
}

const BLOCK = 512;

function octal(buf: Buffer, off: number, len: number, value: number): void {
  const s = value.toString(8).padStart(len - 1, '0');
  if (s.length > len - 1) throw new Error(`tar-writer: ${value} does not fit ${len - 1} octal digits`);
  buf.write(s, off, 'latin1');
  buf[off + len - 1] = 0;
}

function base256(buf: Buffer, off: number, len: number, value: number): void {
  let v = BigInt(value);
  for (let i = len - 1; i > 0; i--) {
    buf[off + i] = Number(v & 0xffn);
    v >>= 8n;
  }
  buf[off] = 0x80;
}

function header(name: string, type: string, size: number, e: Partial<TarEntry>, linkname = '', prefix = ''): Buffer {
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 100, 'utf8');
  octal(h, 100, 8, e.mode ?? (type === '5' ? 0o755 : 0o644));
  if (e.base256) {
    base256(h, 108, 8, e.uid ?? 0);
    base256(h, 116, 8, e.gid ?? 0);
  } else {
    octal(h, 108, 8, e.uid ?? 0);
    octal(h, 116, 8, e.gid ?? 0);
  }
  octal(h, 124, 12, size);
  octal(h, 136, 12, e.mtime ?? 1_600_000_000);
  h.write(type, 156, 1, 'latin1');
  h.write(linkname, 157, 100, 'utf8');
  h.write('ustar\0', 257, 'latin1');
  h.write('00', 263, 'latin1');
  octal(h, 329, 8, e.devmajor ?? 0);
  octal(h, 337, 8, e.devminor ?? 0);
  h.write(prefix, 345, 155, 'utf8');
  h.fill(' ', 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return h;
}

function padded(data: Buffer): Buffer[] {
  const pad = (BLOCK - (data.length % BLOCK)) % BLOCK;
  return [data, Buffer.alloc(pad)];
}

/** One PAX record "LEN key=value\n"; LEN counts the whole record including its own digits. */
export function paxRecord(key: string, value: string | Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), Buffer.from(value), Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

/** The archive's bytes; `endBlocks: false` leaves out the two zero blocks. */
export function tarArchive(entries: TarEntry[], { endBlocks = true } = {}): Buffer {
  const out: Buffer[] = [];
  for (const e of entries) {
    const type = e.type ?? '0';
    const data = Buffer.from(e.data ?? '');
    const pax: Buffer[] = Object.entries(e.pax ?? {}).map(([k, v]) => paxRecord(k, v));
    let name = e.name;
    let prefix = '';
    let linkname = e.linkname ?? '';
    const long = e.long ?? 'pax';
    if (Buffer.byteLength(name) > 100) {
      if (long === 'pax') {
        pax.push(paxRecord('path', name));
        name = name.slice(0, 100);
      } else if (long === 'gnu') {
        const body = Buffer.from(`${name}\0`);
        out.push(header('././@LongLink', 'L', body.length, {}), ...padded(body));
        name = name.slice(0, 100);
      } else {
        const cut = name.lastIndexOf('/', 155);
        prefix = name.slice(0, cut);
        name = name.slice(cut + 1);
      }
    }
    if (Buffer.byteLength(linkname) > 100) {
      if (long === 'gnu') {
        const body = Buffer.from(`${linkname}\0`);
        out.push(header('././@LongLink', 'K', body.length, {}), ...padded(body));
      } else {
        pax.push(paxRecord('linkpath', linkname));
      }
      linkname = linkname.slice(0, 100);
    }
    if (pax.length > 0) {
      const body = Buffer.concat(pax);
      out.push(header(`PaxHeaders/${name}`.slice(0, 100), 'x', body.length, {}), ...padded(body));
    }
    out.push(header(name, type, data.length, e, linkname, prefix), ...padded(data));
  }
  if (endBlocks) out.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(out);
}
