// The test renderer for the Helm chart (test/lib/go-template.ts, helm-render.ts) against what Go's
// text/template, sprig and helm produce for the same input (expected outputs as Go prints them).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TemplateSet, TemplateError, formatGoFloat } from '../lib/go-template.js';
import { coalesceValues, helmFunctions } from '../lib/helm-render.js';

function render(src: string, data: unknown, funcs: TemplateSet['funcs'] = {}): string {
  const set = new TemplateSet();
  set.funcs = funcs;
  set.add('t', src);
  return set.execute('t', data);
}

test('trim markers eat all adjacent whitespace, newlines included; {{-3}} is a number, not a trim', () => {
  assert.equal(render('a  \n {{- "b" -}} \n\t c', {}), 'abc');
  assert.equal(render('a {{"b"}} c', {}), 'a b c');
  assert.equal(render('x{{-3}}y', {}), 'x-3y');
  assert.equal(render('a{{/* comment */}}b {{- /* trimmed */ -}} c', {}), 'abc');
});

test('if / else if / else, with, and Go truthiness (0, "", empty list/map and nil are false)', () => {
  const t = '{{if .a}}A{{else if .b}}B{{else}}C{{end}}';
  assert.equal(render(t, { a: 1, b: 1 }), 'A');
  assert.equal(render(t, { a: 0, b: 'x' }), 'B');
  for (const falsy of [0, '', [], {}, null, false]) assert.equal(render(t, { a: falsy, b: falsy }), 'C');
  assert.equal(render('{{with .m}}{{.k}}{{else}}none{{end}}', { m: { k: 'v' } }), 'v');
  assert.equal(render('{{with .m}}{{.k}}{{else}}none{{end}}', { m: {} }), 'none');
});

test('range: maps in sorted key order, lists with index, else for nothing; dot is the element', () => {
  assert.equal(render('{{range $k, $v := .m}}{{$k}}={{$v}};{{end}}', { m: { b: '2', a: '1', c: '3' } }), 'a=1;b=2;c=3;');
  assert.equal(render('{{range $i, $v := .l}}{{$i}}:{{.}} {{end}}', { l: ['x', 'y'] }), '0:x 1:y ');
  assert.equal(render('{{range .l}}x{{else}}empty{{end}}', { l: null }), 'empty');
  assert.throws(() => render('{{range .s}}{{end}}', { s: 'abc' }), /range can't iterate over abc/);
});

test('variables: $ is the root, declarations end with their block, = assigns the outer one', () => {
  assert.equal(render('{{range .l}}{{$.p}}{{.}}{{end}}', { l: ['a', 'b'], p: '-' }), '-a-b');
  assert.equal(render('{{$x := "a"}}{{if true}}{{$x = "b"}}{{end}}{{$x}}', {}), 'b');
  assert.throws(() => render('{{if true}}{{$y := "a"}}{{end}}{{$y}}', {}), /undefined variable \$y/);
});

test('printing: float64 values as %v does (1e+06), nil as nothing (helm drops <no value>), lists refused', () => {
  const cases: [number, string][] = [
    [1000000, '1e+06'],
    [123456, '123456'],
    [1234567, '1.234567e+06'],
    [1.5, '1.5'],
    [0.0001, '0.0001'],
    [0.00001, '1e-05'],
    [-2, '-2'],
    [300, '300'],
  ];
  for (const [v, s] of cases) assert.equal(formatGoFloat(v), s, String(v));
  assert.equal(render('[{{.missing}}]', {}), '[]');
  assert.equal(render('{{.n}}', { n: 1048576 }), '1.048576e+06');
  assert.throws(() => render('{{.l}}', { l: [1] }), /not supported/);
});

test('fields: a missing key is nil, a field of nil is an error, methods take arguments', () => {
  assert.throws(() => render('{{.a.b}}', {}), /nil pointer evaluating interface \{\}\.b/);
  assert.throws(() => render('{{.a.b}}', { a: 'str' }), /can't evaluate field b/);
  assert.equal(render('{{.F.Get "x"}}', { F: { Get: (p: unknown) => `got ${String(p)}` } }), 'got x');
  assert.equal(render('{{"x" | .F.Get}}', { F: { Get: (p: unknown) => `got ${String(p)}` } }), 'got x');
});

test('pipelines pass the value as the last argument; and/or stop at the deciding argument', () => {
  const funcs = {
    join2: (a: unknown, b: unknown) => `${String(a)}+${String(b)}`,
    boom: () => {
      throw new TemplateError('execution error at (t): boom');
    },
  };
  assert.equal(render('{{"b" | join2 "a"}}', {}, funcs), 'a+b');
  assert.equal(render('{{(join2 "a" "b") | join2 "c"}}', {}, funcs), 'c+a+b');
  assert.equal(render('{{and "" (boom)}}|{{or "x" (boom)}}|{{and 1 "last"}}', {}, funcs), '|x|last');
  assert.throws(() => render('{{and true (boom)}}', {}, funcs), /boom/);
});

test('unsupported syntax and unknown functions fail the render instead of being guessed', () => {
  assert.throws(() => render('{{template "x" .}}', {}), /not supported/);
  assert.throws(() => render('{{nosuch 1}}', {}), /function "nosuch" not defined/);
  assert.throws(() => render('{{1.5}}', {}), /only decimal integer literals/);
  assert.throws(() => render('{{if .a}}x', {}), /missing \{\{end\}\}/);
});

test('helm coalescing: user maps merge into the chart\'s, scalars and lists replace, null deletes', () => {
  const merged = coalesceValues({ a: { x: 1, y: 2 }, l: [1, 2], s: 'd', gone: 'x' }, { a: { y: 3 }, l: [9], s: 'u', gone: null });
  assert.deepEqual(merged, { a: { x: 1, y: 3 }, l: [9], s: 'u' });
});

test('sprig/helm functions as Go defines them: eq kinds, default/empty, quote, print spacing, toYaml/toJson, indent', () => {
  const f = helmFunctions(() => 't');
  const r = (src: string, data: unknown = {}) => render(src, data, f);
  assert.equal(r('{{eq .s "a"}} {{eq .missing "a"}} {{eq .n .m}}', { s: 'a', n: 2, m: 2 }), 'true false true');
  assert.throws(() => r('{{eq .n 2}}', { n: 2 }), /incompatible types for comparison/, 'float64 value vs int literal');
  assert.throws(() => r('{{eq .s 1}}', { s: 'a' }), /incompatible types/);
  assert.equal(r('{{default "d" .a}}|{{default "d" .b}}|{{default "d" .c}}|{{default "d" .e}}', { a: 0, b: false, c: '', e: 'set' }), 'd|d|d|set');
  assert.equal(r('{{quote .s}} {{quote .n}} {{quote .missing}}', { s: 'a"b\nc', n: 1.5 }), '"a\\"b\\nc" "1.5" ');
  assert.equal(r('{{print "a" 1 2 "b" .n}}', { n: 3 }), 'a1 2b3');
  assert.equal(r('{{toYaml .v}}', { v: { b: [1, 'x'], a: { d: true, c: 'yes' } } }), 'a:\n  c: "yes"\n  d: true\nb:\n- 1\n- x');
  assert.equal(r('{{toJson .v}}', { v: { b: '<&>', a: [1.5, null] } }), '{"a":[1.5,null],"b":"\\u003c\\u0026\\u003e"}');
  assert.equal(r('x:{{"a: 1\\nb: 2" | nindent 2}}'), 'x:\n  a: 1\n  b: 2');
  assert.equal(r('{{dir "/var/run/nri/nri.sock"}} {{trimPrefix "/var" "/var/run/x"}} {{hasPrefix "/run" "/var/run"}}'), '/var/run/nri /run/x false');
  assert.equal(r('{{last (splitList ":" "[::1]:9099")}} {{has "b" (list "a" "b")}} {{kindIs "string" .s}}', { s: 'x' }), '9099 true true');
  assert.throws(() => r('{{required "need x" .x}}'), /execution error at \(t\): need x/);
  assert.throws(() => r('{{fail "no"}}'), /execution error at \(t\): no/);
});
