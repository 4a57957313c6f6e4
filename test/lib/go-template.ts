// A Go text/template interpreter for the subset of the language the crisp Helm chart uses, so unit
// tests can render the chart without helm. What it supports follows Go's semantics (trim markers,
// truthiness, scoping of variables, sorted map ranges, lazy and/or, eq's kind rules, %v printing of
// float64 values); anything outside the subset is an error, never a guess, so the chart cannot quietly
// depend on something rendered differently here than by helm. Functions (sprig and Helm's) are
// supplied by the caller (helm-render.ts).
//
// Values: strings, numbers (Go float64: what helm makes of every number in values.yaml), bigint (an
// integer literal in a template: Go int), booleans, null/undefined (nil), arrays, plain objects (maps),
// and JS functions reached as fields (Go methods such as .Files.Get).

export type GoValue = unknown;
export type GoFunction = (...args: GoValue[]) => GoValue;

export class TemplateError extends Error {}

// ---------- lexing: text and actions ----------

type Piece = { kind: 'text'; text: string } | { kind: 'action'; src: string; pos: number };

function splitPieces(src: string, name: string): Piece[] {
  const out: Piece[] = [];
  let i = 0;
  let trimNext = false;
  while (i < src.length) {
    const open = src.indexOf('{{', i);
    let text = src.slice(i, open < 0 ? src.length : open);
    if (trimNext) text = text.replace(/^[ \t\r\n]+/, '');
    trimNext = false;
    if (open < 0) {
      out.push({ kind: 'text', text });
      break;
    }
    let start = open + 2;
    if (/^-[ \t\r\n]/.test(src.slice(start, start + 2))) {
      text = text.replace(/[ \t\r\n]+$/, '');
      start += 1;
    }
    out.push({ kind: 'text', text });
    // Find the closing }} outside string literals and comments.
    let j = start;
    let end = -1;
    while (j < src.length) {
      const c = src[j]!;
      if (c === '"') {
        j++;
        while (j < src.length && src[j] !== '"') j += src[j] === '\\' ? 2 : 1;
        j++;
      } else if (c === '`') {
        j = src.indexOf('`', j + 1) + 1;
        if (j === 0) throw new TemplateError(`${name}: unterminated raw string`);
      } else if (src.startsWith('/*', j)) {
        const close = src.indexOf('*/', j + 2);
        if (close < 0) throw new TemplateError(`${name}: unclosed comment`);
        j = close + 2;
      } else if (src.startsWith('}}', j)) {
        end = j;
        break;
      } else j++;
    }
    if (end < 0) throw new TemplateError(`${name}: unclosed action`);
    let body = src.slice(start, end);
    if (/[ \t\r\n]-$/.test(body)) {
      body = body.slice(0, -1);
      trimNext = true;
    }
    out.push({ kind: 'action', src: body, pos: open });
    i = end + 2;
  }
  return out;
}

// ---------- lexing: tokens inside an action ----------

type Tok =
  | { t: 'field'; path: string[] } // .A.B (path [] for the dot itself)
  | { t: 'var'; name: string; path: string[] } // $x.A ($ is name '$')
  | { t: 'ident'; name: string }
  | { t: 'string'; value: string }
  | { t: 'int'; value: bigint }
  | { t: 'bool'; value: boolean }
  | { t: 'nil' }
  | { t: 'punct'; value: '(' | ')' | '|' | ':=' | '=' | ',' }
  | { t: 'fieldAfterParen'; path: string[] };

function unquoteGo(lit: string, where: string): string {
  let out = '';
  for (let i = 1; i < lit.length - 1; i++) {
    const c = lit[i]!;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const e = lit[++i]!;
    const simple: Record<string, string> = { n: '\n', t: '\t', r: '\r', '\\': '\\', '"': '"', a: '\x07', b: '\b', f: '\f', v: '\v' };
    if (e in simple) out += simple[e];
    else if (e === 'x') {
      out += String.fromCharCode(parseInt(lit.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (e === 'u') {
      out += String.fromCharCode(parseInt(lit.slice(i + 1, i + 5), 16));
      i += 4;
    } else throw new TemplateError(`${where}: unsupported escape \\${e}`);
  }
  return out;
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*/;

function tokenize(src: string, where: string): Tok[] {
  const toks: Tok[] = [];
  let i = 0;
  const fieldPath = (): string[] => {
    const path: string[] = [];
    while (src[i] === '.') {
      const m = IDENT.exec(src.slice(i + 1));
      if (!m) break;
      path.push(m[0]);
      i += 1 + m[0].length;
    }
    return path;
  };
  while (i < src.length) {
    const c = src[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (src.startsWith('/*', i)) {
      const close = src.indexOf('*/', i);
      i = close + 2;
    } else if (c === '"') {
      let j = i + 1;
      while (j < src.length && src[j] !== '"') j += src[j] === '\\' ? 2 : 1;
      toks.push({ t: 'string', value: unquoteGo(src.slice(i, j + 1), where) });
      i = j + 1;
    } else if (c === '`') {
      const j = src.indexOf('`', i + 1);
      toks.push({ t: 'string', value: src.slice(i + 1, j) });
      i = j + 1;
    } else if (c === '(' || c === ')' || c === '|' || c === ',') {
      toks.push({ t: 'punct', value: c });
      i++;
      if (c === ')' && src[i] === '.') toks.push({ t: 'fieldAfterParen', path: fieldPath() });
    } else if (src.startsWith(':=', i)) {
      toks.push({ t: 'punct', value: ':=' });
      i += 2;
    } else if (c === '=') {
      toks.push({ t: 'punct', value: '=' });
      i++;
    } else if (c === '.') {
      if (!IDENT.test(src.slice(i + 1))) {
        toks.push({ t: 'field', path: [] });
        i++;
      } else toks.push({ t: 'field', path: fieldPath() });
    } else if (c === '$') {
      const m = /^[A-Za-z0-9_]*/.exec(src.slice(i + 1))!;
      i += 1 + m[0].length;
      toks.push({ t: 'var', name: `$${m[0]}`, path: fieldPath() });
    } else if (/[0-9-]/.test(c)) {
      const m = /^-?[0-9]+/.exec(src.slice(i));
      if (!m || /^[.eExX_]/.test(src.slice(i + m[0].length))) throw new TemplateError(`${where}: only decimal integer literals are supported (${src.slice(i, i + 12)})`);
      const v = BigInt(m[0]);
      if (v > 999999n || v < -999999n) throw new TemplateError(`${where}: integer literal ${m[0]} outside the supported range`);
      toks.push({ t: 'int', value: v });
      i += m[0].length;
    } else {
      const m = IDENT.exec(src.slice(i));
      if (!m) throw new TemplateError(`${where}: unexpected character ${JSON.stringify(c)}`);
      i += m[0].length;
      if (m[0] === 'true' || m[0] === 'false') toks.push({ t: 'bool', value: m[0] === 'true' });
      else if (m[0] === 'nil') toks.push({ t: 'nil' });
      else toks.push({ t: 'ident', name: m[0] });
    }
  }
  return toks;
}

// ---------- parsing ----------

type Operand =
  | { k: 'field'; path: string[] }
  | { k: 'var'; name: string; path: string[] }
  | { k: 'func'; name: string }
  | { k: 'literal'; value: GoValue }
  | { k: 'pipe'; pipe: Pipeline; path: string[] };
interface Command {
  args: Operand[];
}
interface Pipeline {
  decl: string[];
  assign: boolean;
  cmds: Command[];
  where: string;
}
type Node =
  | { n: 'text'; text: string }
  | { n: 'action'; pipe: Pipeline }
  | { n: 'if'; pipe: Pipeline; body: Node[]; otherwise: Node[] }
  | { n: 'with'; pipe: Pipeline; body: Node[]; otherwise: Node[] }
  | { n: 'range'; pipe: Pipeline; body: Node[]; otherwise: Node[] };

function parsePipeline(toks: Tok[], where: string): Pipeline {
  let pos = 0;
  const decl: string[] = [];
  let assign = false;
  // Declarations: $x := / $x = / $k, $v :=
  const lookDecl = () => {
    let p = 0;
    const names: string[] = [];
    while (toks[p]?.t === 'var' && (toks[p] as { path: string[] }).path.length === 0) {
      names.push((toks[p] as { name: string }).name);
      p++;
      const nx = toks[p];
      if (nx?.t === 'punct' && nx.value === ',') {
        p++;
        continue;
      }
      if (nx?.t === 'punct' && (nx.value === ':=' || nx.value === '=')) return { names, p: p + 1, assign: nx.value === '=' };
      return undefined;
    }
    return undefined;
  };
  const d = lookDecl();
  if (d) {
    decl.push(...d.names);
    assign = d.assign;
    pos = d.p;
  }
  const parseCmds = (stop: (t: Tok | undefined) => boolean): Command[] => {
    const cmds: Command[] = [];
    let args: Operand[] = [];
    while (!stop(toks[pos])) {
      const t = toks[pos++]!;
      if (t.t === 'punct' && t.value === '|') {
        if (args.length === 0) throw new TemplateError(`${where}: missing command before |`);
        cmds.push({ args });
        args = [];
        continue;
      }
      if (t.t === 'punct' && t.value === '(') {
        const inner = parseCmds((x) => x === undefined || (x.t === 'punct' && x.value === ')'));
        if (toks[pos] === undefined) throw new TemplateError(`${where}: unclosed (`);
        pos++;
        let path: string[] = [];
        const after = toks[pos];
        if (after?.t === 'fieldAfterParen') {
          path = after.path;
          pos++;
        }
        args.push({ k: 'pipe', pipe: { decl: [], assign: false, cmds: inner, where }, path });
        continue;
      }
      if (t.t === 'field') args.push({ k: 'field', path: t.path });
      else if (t.t === 'var') args.push({ k: 'var', name: t.name, path: t.path });
      else if (t.t === 'ident') args.push({ k: 'func', name: t.name });
      else if (t.t === 'string' || t.t === 'int' || t.t === 'bool') args.push({ k: 'literal', value: t.value });
      else if (t.t === 'nil') args.push({ k: 'literal', value: null });
      else throw new TemplateError(`${where}: unexpected ${JSON.stringify(t)}`);
    }
    if (args.length > 0) cmds.push({ args });
    else if (cmds.length > 0) throw new TemplateError(`${where}: missing command after |`);
    return cmds;
  };
  const cmds = parseCmds((x) => x === undefined);
  if (cmds.length === 0) throw new TemplateError(`${where}: missing value for command`);
  return { decl, assign, cmds, where };
}

interface ParsedFile {
  nodes: Node[];
  defines: Map<string, Node[]>;
}

function lineOf(src: string, pos: number): number {
  return src.slice(0, pos).split('\n').length;
}

export function parseTemplate(src: string, name: string): ParsedFile {
  const pieces = splitPieces(src, name);
  const defines = new Map<string, Node[]>();
  let i = 0;
  // Returns the nodes up to a closing keyword (end / else ...), and that keyword's action text.
  const parseList = (top: boolean): { nodes: Node[]; closer: string } => {
    const nodes: Node[] = [];
    while (i < pieces.length) {
      const p = pieces[i++]!;
      if (p.kind === 'text') {
        if (p.text) nodes.push({ n: 'text', text: p.text });
        continue;
      }
      const where = `${name}:${lineOf(src, p.pos)}`;
      const body = p.src.trim();
      if (body.startsWith('/*')) {
        if (!body.endsWith('*/')) throw new TemplateError(`${where}: comment must be the whole action`);
        continue;
      }
      const m = /^([a-z]+)\b\s*([\s\S]*)$/.exec(body);
      const kw = m?.[1];
      if (kw === 'end' || kw === 'else') {
        if (top) throw new TemplateError(`${where}: unexpected {{${kw}}}`);
        return { nodes, closer: body };
      }
      if (kw === 'if' || kw === 'with' || kw === 'range') {
        nodes.push(parseControl(kw, m![2]!, where));
        continue;
      }
      if (kw === 'define') {
        const nm = /^"([^"]+)"$/.exec(m![2]!.trim());
        if (!nm) throw new TemplateError(`${where}: define needs a quoted name`);
        const inner = parseList(false);
        if (inner.closer !== 'end') throw new TemplateError(`${where}: define closed by {{${inner.closer}}}`);
        defines.set(nm[1]!, inner.nodes);
        continue;
      }
      if (kw === 'template' || kw === 'block' || kw === 'break' || kw === 'continue') {
        throw new TemplateError(`${where}: {{${kw}}} is not supported by this renderer (use include)`);
      }
      nodes.push({ n: 'action', pipe: parsePipeline(tokenize(p.src, where), where) });
    }
    if (!top) throw new TemplateError(`${name}: missing {{end}}`);
    return { nodes, closer: '' };
  };
  const parseControl = (kw: 'if' | 'with' | 'range', pipeSrc: string, where: string): Node => {
    const pipe = parsePipeline(tokenize(pipeSrc, where), where);
    const first = parseList(false);
    let otherwise: Node[] = [];
    if (first.closer === 'else') {
      const rest = parseList(false);
      if (rest.closer !== 'end') throw new TemplateError(`${where}: {{else}} followed by {{${rest.closer}}}`);
      otherwise = rest.nodes;
    } else if (first.closer.startsWith('else ')) {
      const chained = /^else\s+if\b\s*([\s\S]*)$/.exec(first.closer);
      if (!chained || kw !== 'if') throw new TemplateError(`${where}: {{${first.closer}}} is not supported`);
      // {{else if X}} ... {{end}} is {{else}}{{if X}} ... {{end}}{{end}}: one shared end.
      otherwise = [parseControl('if', chained[1]!, where)];
    } else if (first.closer !== 'end') throw new TemplateError(`${where}: unexpected {{${first.closer}}}`);
    return { n: kw, pipe, body: first.nodes, otherwise };
  };
  const { nodes } = parseList(true);
  return { nodes, defines };
}

// ---------- execution ----------

/** Go's truth: false, 0, nil and empty strings, slices and maps are false. */
export function isTrue(v: GoValue): boolean {
  if (v === null || v === undefined) return false;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number') return v !== 0;
  if (typeof v === 'bigint') return v !== 0n;
  if (typeof v === 'string') return v.length > 0;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return Object.keys(v).length > 0;
  return true;
}

/** strconv.FormatFloat(f, 'g', -1, 64) as fmt's %v prints a float64. */
export function formatGoFloat(f: number): string {
  if (Number.isNaN(f)) return 'NaN';
  if (!Number.isFinite(f)) return f > 0 ? '+Inf' : '-Inf';
  if (f === 0) return Object.is(f, -0) ? '-0' : '0';
  const [mant, expStr] = Math.abs(f).toExponential().split('e') as [string, string];
  const digits = mant.replace('.', '');
  const exp = Number(expStr);
  const sign = f < 0 ? '-' : '';
  if (exp < -4 || exp >= 6) {
    const frac = digits.length > 1 ? `.${digits.slice(1)}` : '';
    const e = Math.abs(exp);
    return `${sign}${digits[0]}${frac}e${exp < 0 ? '-' : '+'}${e < 10 ? `0${e}` : e}`;
  }
  if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  const intPart = digits.slice(0, exp + 1).padEnd(exp + 1, '0');
  const frac = digits.slice(exp + 1);
  return `${sign}${intPart}${frac ? `.${frac}` : ''}`;
}

/** fmt.Sprint of one value, as text/template prints an action (helm turns "<no value>" into ""). */
export function goString(v: GoValue): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (typeof v === 'number') return formatGoFloat(v);
  throw new TemplateError(`printing a ${Array.isArray(v) ? 'list' : typeof v} directly is not supported by this renderer (use toYaml/toJson)`);
}

interface Scope {
  vars: { name: string; value: GoValue }[];
}

export class TemplateSet {
  private readonly defines = new Map<string, Node[]>();
  private readonly files = new Map<string, Node[]>();
  funcs: Record<string, GoFunction> = {};

  add(name: string, src: string): void {
    const parsed = parseTemplate(src, name);
    this.files.set(name, parsed.nodes);
    for (const [k, v] of parsed.defines) this.defines.set(k, v);
  }

  /** Executes a whole file with `data` as dot and $. */
  execute(name: string, data: GoValue): string {
    const nodes = this.files.get(name);
    if (!nodes) throw new TemplateError(`no template file ${name}`);
    return this.run(nodes, data);
  }

  /** Executes a named template ({{define}}), as helm's include does. */
  include(name: string, data: GoValue): string {
    const nodes = this.defines.get(name);
    if (!nodes) throw new TemplateError(`no template "${name}" associated with template`);
    return this.run(nodes, data);
  }

  private run(nodes: Node[], data: GoValue): string {
    const scope: Scope = { vars: [{ name: '$', value: data }] };
    const out: string[] = [];
    this.walk(nodes, data, scope, out);
    return out.join('');
  }

  private walk(nodes: Node[], dot: GoValue, scope: Scope, out: string[]): void {
    for (const node of nodes) {
      if (node.n === 'text') {
        out.push(node.text);
        continue;
      }
      const mark = scope.vars.length;
      if (node.n === 'action') {
        const v = this.evalPipeline(node.pipe, dot, scope);
        // Go prints nothing for a pipeline that declares or assigns.
        if (node.pipe.decl.length === 0) out.push(goString(v));
        continue;
      }
      if (node.n === 'if' || node.n === 'with') {
        const v = this.evalPipeline(node.pipe, dot, scope);
        if (isTrue(v)) this.walk(node.body, node.n === 'with' ? v : dot, scope, out);
        else this.walk(node.otherwise, dot, scope, out);
      } else {
        this.range(node, dot, scope, out);
      }
      scope.vars.length = mark;
    }
  }

  private range(node: Extract<Node, { n: 'range' }>, dot: GoValue, scope: Scope, out: string[]): void {
    const pipe = node.pipe;
    if (pipe.assign) throw new TemplateError(`${pipe.where}: range with = is not supported`);
    const value = this.evalPipeline({ ...pipe, decl: [] }, dot, scope);
    let entries: [GoValue, GoValue][];
    if (value === null || value === undefined) entries = [];
    else if (Array.isArray(value)) entries = value.map((v, i) => [BigInt(i), v]);
    else if (typeof value === 'object') entries = Object.keys(value).sort().map((k) => [k, (value as Record<string, GoValue>)[k]]);
    else throw new TemplateError(`${pipe.where}: range can't iterate over ${goString(value)}`);
    if (entries.length === 0) {
      this.walk(node.otherwise, dot, scope, out);
      return;
    }
    const mark = scope.vars.length;
    for (const [k, v] of entries) {
      scope.vars.length = mark;
      if (pipe.decl.length === 1) scope.vars.push({ name: pipe.decl[0]!, value: v });
      else if (pipe.decl.length === 2) scope.vars.push({ name: pipe.decl[0]!, value: k }, { name: pipe.decl[1]!, value: v });
      this.walk(node.body, v, scope, out);
    }
  }

  private lookupVar(scope: Scope, name: string, where: string): GoValue {
    for (let i = scope.vars.length - 1; i >= 0; i--) if (scope.vars[i]!.name === name) return scope.vars[i]!.value;
    throw new TemplateError(`${where}: undefined variable ${name}`);
  }

  private evalPipeline(pipe: Pipeline, dot: GoValue, scope: Scope): GoValue {
    let value: GoValue;
    let piped = false;
    for (const cmd of pipe.cmds) {
      value = this.evalCommand(cmd, dot, scope, pipe.where, piped ? [value] : []);
      piped = true;
    }
    if (pipe.decl.length > 0) {
      if (pipe.decl.length > 1) throw new TemplateError(`${pipe.where}: too many declarations`);
      const name = pipe.decl[0]!;
      if (pipe.assign) {
        let found = false;
        for (let i = scope.vars.length - 1; i >= 0; i--) {
          if (scope.vars[i]!.name === name) {
            scope.vars[i]!.value = value;
            found = true;
            break;
          }
        }
        if (!found) throw new TemplateError(`${pipe.where}: undefined variable ${name}`);
      } else scope.vars.push({ name, value });
    }
    return value;
  }

  private field(receiver: GoValue, path: string[], where: string, args: GoValue[] = []): GoValue {
    let v = receiver;
    for (let i = 0; i < path.length; i++) {
      const key = path[i]!;
      if (v === null || v === undefined) throw new TemplateError(`${where}: nil pointer evaluating interface {}.${key}`);
      if (typeof v !== 'object' || Array.isArray(v)) throw new TemplateError(`${where}: can't evaluate field ${key} in type ${Array.isArray(v) ? '[]interface {}' : typeof v}`);
      const next = (v as Record<string, GoValue>)[key];
      if (typeof next === 'function') {
        // A method: the final element of the chain may take the command's arguments.
        v = (next as GoFunction)(...(i === path.length - 1 ? args : []));
        if (i === path.length - 1) return v;
        continue;
      }
      if (i === path.length - 1 && args.length > 0) throw new TemplateError(`${where}: ${key} has arguments but cannot be invoked as function`);
      v = Object.prototype.hasOwnProperty.call(v, key) ? next : null;
    }
    if (args.length > 0 && path.length === 0) throw new TemplateError(`${where}: can't give argument to non-function`);
    return v;
  }

  private evalOperand(op: Operand, dot: GoValue, scope: Scope, where: string): GoValue {
    switch (op.k) {
      case 'literal':
        return op.value;
      case 'field':
        return this.field(dot, op.path, where);
      case 'var':
        return this.field(this.lookupVar(scope, op.name, where), op.path, where);
      case 'pipe':
        return this.field(this.evalPipeline(op.pipe, dot, scope), op.path, where);
      case 'func':
        return this.callFunc(op.name, [], dot, scope, where, []);
    }
  }

  private evalCommand(cmd: Command, dot: GoValue, scope: Scope, where: string, piped: GoValue[]): GoValue {
    const [head, ...rest] = cmd.args;
    if (head!.k === 'func') return this.callFunc(head!.name, rest, dot, scope, where, piped);
    if (head!.k === 'field' || head!.k === 'var') {
      const argv = [...rest.map((a) => this.evalOperand(a, dot, scope, where)), ...piped];
      const recv = head!.k === 'field' ? dot : this.lookupVar(scope, head!.name, where);
      if (argv.length > 0 && head!.path.length === 0) throw new TemplateError(`${where}: can't give argument to non-function`);
      return this.field(recv, head!.path, where, argv);
    }
    if (rest.length > 0 || piped.length > 0) throw new TemplateError(`${where}: can't give argument to non-function`);
    return this.evalOperand(head!, dot, scope, where);
  }

  private callFunc(name: string, argOps: Operand[], dot: GoValue, scope: Scope, where: string, piped: GoValue[]): GoValue {
    // and/or evaluate their arguments only as far as needed (Go 1.18+); the piped value comes last.
    if (name === 'and' || name === 'or') {
      const thunks = [...argOps.map((a) => () => this.evalOperand(a, dot, scope, where)), ...piped.map((p) => () => p)];
      if (thunks.length === 0) throw new TemplateError(`${where}: wrong number of args for ${name}`);
      let v: GoValue;
      for (const th of thunks) {
        v = th();
        if (name === 'and' ? !isTrue(v) : isTrue(v)) return v;
      }
      return v;
    }
    if (name === 'include') {
      const argv = [...argOps.map((a) => this.evalOperand(a, dot, scope, where)), ...piped];
      if (argv.length !== 2 || typeof argv[0] !== 'string') throw new TemplateError(`${where}: include needs a name and a value`);
      return this.include(argv[0], argv[1]);
    }
    const fn = this.funcs[name];
    if (!fn) throw new TemplateError(`${where}: function "${name}" not defined (or not supported by this renderer)`);
    const argv = [...argOps.map((a) => this.evalOperand(a, dot, scope, where)), ...piped];
    try {
      return fn(...argv);
    } catch (err) {
      if (err instanceof TemplateError && err.message.startsWith('execution error')) throw err;
      throw new TemplateError(`${where}: error calling ${name}: ${(err as Error).message}`);
    }
  }
}
