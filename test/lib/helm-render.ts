// Renders a Helm chart directory the way `helm template` does, for unit tests (helm is not installable
// here): values.yaml coalesced with the caller's values (a null removes a key), .Release, .Chart,
// .Files.Get, every templates/*.yaml executed with the Go template subset of go-template.ts, and the
// sprig/Helm functions the crisp chart uses, each following its Go implementation. A function the
// chart starts using must be added here first: an unknown one fails the render.
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join, posix } from 'node:path';
import { parse as parseYaml, parseAllDocuments, stringify as stringifyYaml } from 'yaml';
import { TemplateError, TemplateSet, formatGoFloat, isTrue, type GoFunction, type GoValue } from './go-template.js';

type GoMap = Record<string, GoValue>;

const isMap = (v: GoValue): v is GoMap => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Go's reflect kind name of a value, as sprig's kindIs/kindOf report it. */
function kindOf(v: GoValue): string {
  if (v === null || v === undefined) return 'invalid';
  if (typeof v === 'string') return 'string';
  if (typeof v === 'number') return 'float64';
  if (typeof v === 'bigint') return 'int';
  if (typeof v === 'boolean') return 'bool';
  if (Array.isArray(v)) return 'slice';
  if (typeof v === 'function') return 'func';
  return 'map';
}

/** fmt's %v of one operand (nil is "<nil>" here: only a printed action turns nil into ""). */
function sprintOperand(v: GoValue): string {
  if (v === null || v === undefined) return '<nil>';
  if (typeof v === 'number') return formatGoFloat(v);
  if (typeof v === 'string' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  throw new TemplateError('formatting a list or map with %v is not supported by this renderer');
}

/** sprig's strval. */
const strval = (v: GoValue): string => (typeof v === 'string' ? v : sprintOperand(v));

/** strconv.Quote for the characters a chart meets; other control characters as \xNN. */
function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    const esc: Record<string, string> = { '"': '\\"', '\\': '\\\\', '\n': '\\n', '\t': '\\t', '\r': '\\r', '\x07': '\\a', '\b': '\\b', '\f': '\\f', '\v': '\\v' };
    if (ch in esc) out += esc[ch];
    else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, '0')}`;
    else if ((c >= 0x80 && c < 0xa0) || c === 0x2028 || c === 0x2029 || c === 0xfeff) throw new TemplateError(`quote: U+${c.toString(16)} is not supported by this renderer`);
    else out += ch;
  }
  return `${out}"`;
}

/** sprig's empty. */
function empty(v: GoValue): boolean {
  if (v === null || v === undefined) return true;
  if (typeof v === 'function') return false;
  return !isTrue(v);
}

/** text/template's eq for basic kinds: different kinds of two valid values are an error. */
function goEq(a: GoValue, ...bs: GoValue[]): boolean {
  if (bs.length === 0) throw new Error('missing argument for comparison');
  const basic = (v: GoValue) => ['string', 'float64', 'int', 'bool', 'invalid'].includes(kindOf(v));
  for (const b of bs) {
    if (!basic(a) || !basic(b)) throw new Error('non-comparable types');
    const ka = kindOf(a);
    const kb = kindOf(b);
    if (ka !== kb) {
      if (ka !== 'invalid' && kb !== 'invalid') throw new Error('incompatible types for comparison');
      continue;
    }
    if (ka === 'invalid' || a === b) return true;
  }
  return false;
}

/** Go's encoding/json: map keys sorted, <, > and & escaped in strings. */
function toGoJson(v: GoValue): string {
  const norm = (x: GoValue): unknown => {
    if (typeof x === 'bigint') return Number(x);
    if (Array.isArray(x)) return x.map(norm);
    if (isMap(x)) return Object.fromEntries(Object.keys(x).sort().map((k) => [k, norm(x[k])]));
    return x ?? null;
  };
  return JSON.stringify(norm(v))
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

/**
 * sigs.k8s.io/yaml's Marshal (through JSON: keys sorted, lists not indented under their key; go-yaml v2
 * quotes what YAML 1.1 would read as something else, such as yes/on), no final newline.
 */
function toGoYaml(v: GoValue): string {
  const data = JSON.parse(toGoJson(v)) as unknown;
  return stringifyYaml(data, { version: '1.1', sortMapEntries: true, indentSeq: false, lineWidth: 0 }).replace(/\n$/, '');
}

/** sprig's indent: every line, empty ones too. */
function indent(n: GoValue, s: GoValue): string {
  if (typeof n !== 'bigint' && typeof n !== 'number') throw new Error('indent needs a number of spaces');
  const pad = ' '.repeat(Number(n));
  return pad + strval(s).replace(/\n/g, `\n${pad}`);
}

/** Helm's coalescing of user values over the chart's: maps merge, anything else replaces, null deletes. */
export function coalesceValues(defaults: GoMap, overrides: GoMap): GoMap {
  const out: GoMap = structuredClone(defaults);
  for (const [k, v] of Object.entries(overrides)) {
    if (v === null) delete out[k];
    else if (isMap(v) && isMap(out[k])) out[k] = coalesceValues(out[k] as GoMap, v);
    else out[k] = structuredClone(v);
  }
  return out;
}

/** The Go builtins, sprig and Helm functions the chart uses; `where()` names the file for fail/required. */
export function helmFunctions(where: () => string): Record<string, GoFunction> {
  return {
    // Go builtins
    not: (v) => !isTrue(v),
    eq: (a, ...b) => goEq(a, ...b),
    ne: (...args) => {
      if (args.length !== 2) throw new Error('wrong number of args for ne: want 2');
      return !goEq(args[0], args[1]);
    },
    len: (v) => {
      if (typeof v === 'string') return BigInt(Buffer.byteLength(v));
      if (Array.isArray(v)) return BigInt(v.length);
      if (isMap(v)) return BigInt(Object.keys(v).length);
      throw new Error(`len of type ${kindOf(v)}`);
    },
    print: (...args) =>
      args.map((a, i) => (i > 0 && typeof a !== 'string' && typeof args[i - 1] !== 'string' ? ' ' : '') + sprintOperand(a)).join(''),
    // sprig
    default: (d, ...given) => (given.length === 0 || empty(given[0]) ? d : given[0]),
    empty: (v) => empty(v),
    quote: (...args) =>
      args
        .filter((a) => a !== null && a !== undefined)
        .map((a) => goQuote(strval(a)))
        .join(' '),
    toYaml: (v) => toGoYaml(v),
    toJson: (v) => toGoJson(v),
    indent: (n, s) => indent(n, s),
    nindent: (n, s) => `\n${indent(n, s)}`,
    list: (...args) => args,
    concat: (...lists) =>
      lists.flatMap((l) => {
        if (!Array.isArray(l)) throw new Error(`cannot concat type ${kindOf(l)} as list`);
        return l;
      }),
    has: (needle, haystack) => (haystack === null || haystack === undefined ? false : (haystack as GoValue[]).some((h) => toGoJson(h) === toGoJson(needle))),
    dict: (...kv) => {
      const out: GoMap = {};
      for (let i = 0; i < kv.length; i += 2) out[strval(kv[i])] = i + 1 < kv.length ? kv[i + 1] : '';
      return out;
    },
    contains: (substr, s) => strval(s).includes(strval(substr)),
    hasPrefix: (prefix, s) => strval(s).startsWith(strval(prefix)),
    trimPrefix: (prefix, s) => (strval(s).startsWith(strval(prefix)) ? strval(s).slice(strval(prefix).length) : strval(s)),
    splitList: (sep, s) => strval(s).split(strval(sep)),
    last: (l) => {
      if (!Array.isArray(l)) throw new Error(`cannot find last on type ${kindOf(l)}`);
      return l.length ? l[l.length - 1] : null;
    },
    dir: (p) => {
      const s = strval(p);
      if (!s.startsWith('/')) throw new Error('dir of a relative path is not supported by this renderer');
      return posix.dirname(posix.normalize(s)) || '/';
    },
    kindIs: (kind, v) => kindOf(v) === kind,
    sha256sum: (s) => createHash('sha256').update(strval(s)).digest('hex'),
    // Helm
    required: (msg, v) => {
      if (v === null || v === undefined || v === '') throw new TemplateError(`execution error at (${where()}): ${strval(msg)}`);
      return v;
    },
    fail: (msg) => {
      throw new TemplateError(`execution error at (${where()}): ${strval(msg)}`);
    },
  };
}

export interface RenderOptions {
  releaseName?: string;
  namespace?: string;
  values?: GoMap;
}

export interface RenderedFile {
  /** e.g. crisp/templates/daemonset.yaml */
  name: string;
  text: string;
  objects: GoMap[];
}

export class HelmChart {
  readonly meta: GoMap;
  readonly defaults: GoMap;
  private readonly dir: string;
  private readonly templateFiles: string[];

  constructor(dir: string) {
    this.dir = dir;
    this.meta = parseYaml(readFileSync(join(dir, 'Chart.yaml'), 'utf8')) as GoMap;
    this.defaults = (parseYaml(readFileSync(join(dir, 'values.yaml'), 'utf8')) as GoMap | null) ?? {};
    this.templateFiles = readdirSync(join(dir, 'templates')).sort();
  }

  get name(): string {
    return String(this.meta.name);
  }

  /** The Go template set with this chart's files and functions; `fail` names the file being rendered. */
  private templateSet(current: { file: string }): TemplateSet {
    const set = new TemplateSet();
    for (const f of this.templateFiles) set.add(`${this.name}/templates/${f}`, readFileSync(join(this.dir, 'templates', f), 'utf8'));
    set.funcs = helmFunctions(() => current.file);
    return set;
  }

  /** Renders every template (files starting with _ only define named templates) like `helm template`. */
  render(opts: RenderOptions = {}): RenderedFile[] {
    const current = { file: '' };
    const set = this.templateSet(current);
    const top = this.topData(opts);
    const out: RenderedFile[] = [];
    for (const f of this.templateFiles) {
      if (f.startsWith('_') || f === 'NOTES.txt') continue;
      const name = `${this.name}/templates/${f}`;
      current.file = name;
      const text = set.execute(name, { ...top, Template: { ...(top.Template as GoMap), Name: name } });
      const objects: GoMap[] = [];
      // Parsed as helm and the API server read manifests: YAML 1.1 (yes/on are booleans).
      for (const doc of parseAllDocuments(text, { version: '1.1' })) {
        if (doc.errors.length > 0) throw new Error(`${name}: rendered YAML does not parse: ${doc.errors[0]!.message}\n${text}`);
        const obj = doc.toJS() as GoMap | null;
        if (obj !== null) objects.push(obj);
      }
      out.push({ name, text, objects });
    }
    return out;
  }

  /** Every object rendered, in file order. */
  objects(opts: RenderOptions = {}): GoMap[] {
    return this.render(opts).flatMap((f) => f.objects);
  }

  /** One named template's output (e.g. the config file), as `include` gives it. */
  include(name: string, opts: RenderOptions = {}): string {
    return this.templateSet({ file: name }).include(name, this.topData(opts));
  }

  /** The data a template sees: .Values, .Release, .Chart, .Files, .Template. */
  private topData(opts: RenderOptions): GoMap {
    const chart: GoMap = {};
    const rename: Record<string, string> = { apiVersion: 'APIVersion', appVersion: 'AppVersion', kubeVersion: 'KubeVersion' };
    for (const [k, v] of Object.entries(this.meta)) chart[rename[k] ?? k[0]!.toUpperCase() + k.slice(1)] = v;
    const files = {
      Get: (path: GoValue) => {
        try {
          return readFileSync(join(this.dir, strval(path)), 'utf8');
        } catch {
          return ''; // helm's Files.Get answers "" for a file the chart does not have
        }
      },
    };
    return {
      Values: coalesceValues(this.defaults, opts.values ?? {}),
      Release: { Name: opts.releaseName ?? 'crisp', Namespace: opts.namespace ?? 'kube-system', Service: 'Helm', IsInstall: true, IsUpgrade: false, Revision: 1n },
      Chart: chart,
      Files: files,
      Template: { BasePath: `${this.name}/templates` },
    };
  }
}
