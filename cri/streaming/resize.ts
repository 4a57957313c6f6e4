// Terminal size messages: JSON objects {"Width":W,"Height":H}, one after another on the resize stream
// (SPDY) or one or more per message on the resize channel (WebSocket). Objects may arrive split or
// glued together, so they are cut out of the byte stream by brace depth, outside of strings.
import type { TerminalSize } from '../../sandbox/streaming.js';

const MAX_PENDING = 64 * 1024;

export class ResizeDecoder {
  private pending = '';

  /** The sizes completed by `chunk`. Malformed objects are skipped; a runaway object is dropped. */
  push(chunk: Buffer | string): TerminalSize[] {
    this.pending += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    const out: TerminalSize[] = [];
    let depth = 0;
    let inString = false;
    let escaped = false;
    let start = -1;
    let consumed = 0;
    for (let i = 0; i < this.pending.length; i++) {
      const ch = this.pending[i];
      if (inString) {
        if (escaped) escaped = false;
        else if (ch === '\\') escaped = true;
        else if (ch === '"') inString = false;
        continue;
      }
      if (ch === '"') inString = true;
      else if (ch === '{') {
        if (depth === 0) start = i;
        depth++;
      } else if (ch === '}' && depth > 0) {
        depth--;
        if (depth === 0 && start >= 0) {
          const size = parseSize(this.pending.slice(start, i + 1));
          if (size) out.push(size);
          consumed = i + 1;
          start = -1;
        }
      } else if (depth === 0 && !/\s/.test(ch ?? '')) {
        consumed = i + 1; // junk between objects
      }
    }
    this.pending = this.pending.slice(consumed);
    if (this.pending.length > MAX_PENDING) this.pending = '';
    return out;
  }
}

export function parseSize(text: string): TerminalSize | undefined {
  try {
    const v = JSON.parse(text) as { Width?: unknown; Height?: unknown; width?: unknown; height?: unknown };
    const width = v.Width ?? v.width;
    const height = v.Height ?? v.height;
    if (typeof width !== 'number' || typeof height !== 'number') return undefined;
    if (!Number.isInteger(width) || !Number.isInteger(height) || width < 0 || height < 0 || width > 0xffff || height > 0xffff) return undefined;
    return { width, height };
  } catch {
    return undefined;
  }
}
