// HPACK (common/h2/hpack.ts, huffman.ts): the RFC 7541 request examples, the dynamic table's
// eviction, and header blocks a client must not send (each a CompressionError, never a crash).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CompressionError, HpackDecoder, encodeHeaderBlock, encodeInteger } from '../../common/h2/hpack.js';
import { huffmanDecode, huffmanEncode } from '../../common/h2/huffman.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

test('RFC 7541 C.4: requests with Huffman coding share one dynamic table across blocks', () => {
  const d = new HpackDecoder();
  const first = d.decode(hex('8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff'));
  assert.deepEqual({ ...first.headers }, { ':method': 'GET', ':scheme': 'http', ':path': '/', ':authority': 'www.example.com' });
  // 57 octets in the table (RFC 7541 C.4.1); the header list size counts 32 per field
  assert.equal(first.listSize, 7 + 3 + 32 + 7 + 4 + 32 + 5 + 1 + 32 + 10 + 15 + 32);
  const second = d.decode(hex('8286 84be 5886 a8eb 1064 9cbf'));
  assert.deepEqual({ ...second.headers }, { ':method': 'GET', ':scheme': 'http', ':path': '/', ':authority': 'www.example.com', 'cache-control': 'no-cache' });
});

test('Huffman: every octet round-trips; bad padding and EOS are refused', () => {
  const all = String.fromCharCode(...Array.from({ length: 256 }, (_, i) => i));
  const coded = huffmanEncode(all);
  assert.equal(huffmanDecode(coded, 0, coded.length), all);
  assert.equal(huffmanDecode(hex('f1e3c2e5f23a6ba0ab90f4ff'), 0, 12), 'www.example.com');
  // 'a' is 00011 (5 bits): padding of 3 zero bits is not a prefix of EOS
  assert.throws(() => huffmanDecode(Buffer.from([0b00011000]), 0, 1), /padding/);
  // eight or more bits of padding
  assert.throws(() => huffmanDecode(Buffer.from([0b00011111, 0xff]), 0, 2), /padding/);
  // EOS (30 ones) coded inside the string
  assert.throws(() => huffmanDecode(Buffer.from([0xff, 0xff, 0xff, 0xff]), 0, 4), /EOS/);
});

test('literal with incremental indexing fills the table; eviction keeps it within its size', () => {
  const d = new HpackDecoder(64);
  // "a: 1" costs 34 octets; the second entry evicts the first from a 64-octet table
  const lit = (name: string, value: string) => Buffer.concat([Buffer.from([0x40, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);
  d.decode(lit('a', '1'));
  assert.deepEqual({ ...d.decode(encodeInteger(62, 7, 0x80)).headers }, { a: '1' });
  d.decode(lit('b', '2'));
  assert.deepEqual({ ...d.decode(encodeInteger(62, 7, 0x80)).headers }, { b: '2' });
  assert.throws(() => d.decode(encodeInteger(63, 7, 0x80)), CompressionError);
  // an entry larger than the table empties it and is not added
  d.decode(lit('c', 'x'.repeat(40)));
  assert.throws(() => d.decode(encodeInteger(62, 7, 0x80)), CompressionError);
  // a size update may shrink the table, never grow it past what was advertised
  d.decode(encodeInteger(0, 5, 0x20));
  assert.throws(() => d.decode(encodeInteger(65, 5, 0x20)), /above the 64 allowed/);
});

test('repeated names become a list; literal never-indexed fields are not added to the table', () => {
  const d = new HpackDecoder();
  const never = (name: string, value: string) => Buffer.concat([Buffer.from([0x10, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);
  const { headers } = d.decode(Buffer.concat([never('x-key', 'a'), never('x-key', 'b')]));
  assert.deepEqual(headers['x-key'], ['a', 'b']);
  assert.throws(() => d.decode(encodeInteger(62, 7, 0x80)), /beyond the tables/);
});

test('hostile blocks are CompressionErrors: index 0, a size update after a field, truncation, huge integers', () => {
  const d = () => new HpackDecoder();
  assert.throws(() => d().decode(Buffer.from([0x80])), /index 0/);
  assert.throws(() => d().decode(Buffer.from([0x82, 0x20])), /size update after a header field/);
  assert.throws(() => d().decode(Buffer.from([0x00, 0x05, 0x61])), /past the end/);
  assert.throws(() => d().decode(Buffer.from([0xff])), /inside an integer/);
  assert.throws(() => d().decode(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])), /too large/);
  assert.throws(() => d().decode(Buffer.from([0x00, 0x81, 0x00])), CompressionError);
});

test('encodeHeaderBlock: what crisp answers with decodes back to the same fields, :status 200 as one octet', () => {
  const fields: [string, string][] = [
    [':status', '200'],
    ['content-type', 'application/grpc'],
    ['grpc-message', 'x'.repeat(300)],
  ];
  const block = encodeHeaderBlock(fields);
  assert.equal(block[0], 0x88);
  const { headers } = new HpackDecoder().decode(block);
  assert.deepEqual({ ...headers }, Object.fromEntries(fields));
});
