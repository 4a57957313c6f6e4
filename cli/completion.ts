// `crisp completion bash|zsh`: shell completion scripts generated from the command tree itself, so
// they never drift from the commands and options that exist. Container, pod and image arguments are
// completed from the running daemon (`crisp ps -aq`, `crisp pods -q`, `crisp images`), with the -e
// endpoint the line already names.
import type { Command, Option } from 'commander';

/** What a positional argument of a command is, for completing it. */
type ArgKind = 'container' | 'pod' | 'image' | 'file' | 'command' | 'shell' | 'none';

const ARG_KINDS: Record<string, ArgKind[]> = {
  start: ['container'],
  stop: ['container'],
  rm: ['container'],
  inspect: ['container'],
  logs: ['container'],
  exec: ['container', 'command'],
  attach: ['container'],
  stopp: ['pod'],
  rmp: ['pod'],
  inspectp: ['pod'],
  'port-forward': ['pod', 'none'],
  create: ['pod', 'file', 'file'],
  runp: ['file'],
  play: ['file'],
  rmi: ['image'],
  inspecti: ['image'],
  images: ['image'],
  pull: ['none'],
  completion: ['shell'],
};

/** Values of options that take one from a fixed set (by long name; per command where it differs). */
const VALUE_HINTS: Record<string, string[]> = {
  output: ['json', 'yaml', 'table'],
  stream: ['all', 'stdout', 'stderr'],
  'cgroup-driver': ['cgroupfs', 'systemd'],
  'log-level': ['trace', 'debug', 'info', 'warn', 'error', 'fatal'],
  'ps.state': ['created', 'running', 'exited', 'unknown'],
  'pods.state': ['ready', 'notready'],
};
const FILE_OPTIONS = new Set(['config', 'socket', 'root', 'state', 'cni-conf-dir', 'log-root']);

interface OptionInfo {
  flags: string[];
  long: string;
  takesValue: boolean;
  repeatable: boolean;
  description: string;
}

interface CommandInfo {
  name: string;
  description: string;
  options: OptionInfo[];
  args: ArgKind[];
  variadicLast: boolean;
  subcommands: CommandInfo[];
}

function optionInfo(o: Option): OptionInfo {
  return {
    flags: [o.short, o.long].filter((f): f is string => Boolean(f)),
    long: (o.long ?? o.short ?? '').replace(/^-+/, ''),
    takesValue: o.required || o.optional,
    repeatable: Array.isArray(o.defaultValue),
    description: o.description,
  };
}

function commandInfo(c: Command): CommandInfo {
  const visible = c.commands.filter((s) => !(s as unknown as { _hidden?: boolean })._hidden);
  const regs = c.registeredArguments;
  return {
    name: c.name(),
    description: c.description(),
    options: c.options.filter((o) => !o.hidden).map(optionInfo),
    args: ARG_KINDS[c.name()] ?? regs.map(() => 'none'),
    variadicLast: regs.length > 0 && regs[regs.length - 1]!.variadic,
    subcommands: visible.map(commandInfo),
  };
}

const words = (xs: string[]) => xs.join(' ');

function valueHint(cmd: string, long: string): string[] | undefined {
  return VALUE_HINTS[`${cmd}.${long}`] ?? VALUE_HINTS[long];
}

/** A bash completion script for `program` (source it, or put it in /etc/bash_completion.d/crisp). */
export function bashCompletion(program: Command): string {
  const root = commandInfo(program);
  const name = root.name;
  const globalFlags = [...root.options.flatMap((o) => o.flags), '--help'];
  const cases: string[] = [];
  for (const c of root.subcommands) {
    const flags = [...c.options.flatMap((o) => o.flags), '--help'];
    const valueFlags = c.options.filter((o) => o.takesValue);
    const valueCases = valueFlags.map((o) => {
      const hint = valueHint(c.name, o.long);
      const reply = hint ? `COMPREPLY=($(compgen -W "${words(hint)}" -- "$cur"))` : FILE_OPTIONS.has(o.long) ? 'COMPREPLY=($(compgen -f -- "$cur"))' : 'COMPREPLY=()';
      return `        ${o.flags.join('|')}) ${reply}; return ;;`;
    });
    const sub = c.subcommands.map((s) => s.name);
    const argKinds = sub.length > 0 ? [] : c.args;
    const argLines = argKinds.map((k, i) => `        ${i}) kind=${k} ;;`);
    const lastKind = argKinds.length > 0 && c.variadicLast ? argKinds[argKinds.length - 1] : 'none';
    cases.push(
      [
        `    ${c.name})`,
        `      case "$prev" in`,
        ...valueCases,
        `      esac`,
        `      if [[ "$cur" == -* ]]; then COMPREPLY=($(compgen -W "${words(flags)}" -- "$cur")); return; fi`,
        ...(sub.length > 0 ? [`      if [ "$nargs" = 0 ]; then COMPREPLY=($(compgen -W "${words(sub)}" -- "$cur")); fi`, `      return ;;`] : []),
        ...(sub.length > 0
          ? []
          : [
              `      local kind=${lastKind}`,
              `      case "$nargs" in`,
              ...argLines,
              `      esac`,
              `      _${name}_complete_kind "$kind"`,
              `      ;;`,
            ]),
      ].join('\n'),
    );
  }
  const valueTaking = (c: CommandInfo) => c.options.filter((o) => o.takesValue).flatMap((o) => o.flags);
  const globalValueFlags = valueTaking(root);
  const perCommandValueFlags = root.subcommands
    .filter((c) => valueTaking(c).length > 0)
    .map((c) => `      ${c.name}) case "$w" in ${valueTaking(c).join('|')}) ((i++)); continue ;; esac ;;`);
  return `# bash completion for ${name} (generated by \`${name} completion bash\`).
# Load it with:  source <(${name} completion bash)
# or install it: ${name} completion bash > /etc/bash_completion.d/${name}

_${name}_complete_kind() {
  local ids
  case "$1" in
    container) ids=$(${name} "\${_${name}_ep[@]}" ps -aq 2>/dev/null) ;;
    pod) ids=$(${name} "\${_${name}_ep[@]}" pods -q 2>/dev/null) ;;
    image) ids=$(${name} "\${_${name}_ep[@]}" images 2>/dev/null | awk 'NR > 1 && $2 != "<none>" { print $1 ":" $2 }') ;;
    file) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    shell) ids="bash zsh" ;;
    command) COMPREPLY=(); return ;;
    *) COMPREPLY=(); return ;;
  esac
  COMPREPLY=($(compgen -W "$ids" -- "$cur"))
}

_${name}() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}"
  local cmd="" nargs=0 i w
  _${name}_ep=()
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    if [ -z "$cmd" ]; then
      case "$w" in
        ${globalValueFlags.join('|') || '--no-such-flag'}) _${name}_ep=(-e "\${COMP_WORDS[i+1]}"); ((i++)) ;;
        -*) ;;
        *) cmd="$w" ;;
      esac
      continue
    fi
    case "$cmd" in
${perCommandValueFlags.join('\n')}
    esac
    case "$w" in
      -*) ;;
      *) ((nargs++)) ;;
    esac
    # exec: everything after the container id is the command.
    if [ "$cmd" = exec ] && [ "$nargs" -ge 1 ]; then break; fi
  done
  if [ -z "$cmd" ]; then
    case "$prev" in
      ${globalValueFlags.join('|') || '--no-such-flag'}) COMPREPLY=(); return ;;
    esac
    COMPREPLY=($(compgen -W "${words(root.subcommands.map((c) => c.name))} ${words(globalFlags)}" -- "$cur"))
    return
  fi
  if [ "$cmd" = exec ] && [ "$nargs" -ge 1 ]; then COMPREPLY=(); return; fi
  case "$cmd" in
${cases.join('\n')}
  esac
}

complete -F _${name} ${name}
`;
}

/** Text inside a single-quoted zsh word. */
function zshQuote(s: string): string {
  return s.replace(/'/g, `'\\''`);
}

/** An _arguments `[explanation]`: brackets escaped. */
function zshExplanation(s: string): string {
  return zshQuote(s.replace(/\\/g, '').replace(/([[\]])/g, '\\$1'));
}

/** A `_describe` item's description: the name ends at the first colon, the rest may have more. */
function zshText(s: string): string {
  return zshQuote(s);
}

function zshOptionSpecs(c: CommandInfo): string[] {
  return c.options.map((o) => {
    const hint = valueHint(c.name, o.long);
    const value = o.takesValue ? `:${o.long}:${hint ? `(${hint.join(' ')})` : FILE_OPTIONS.has(o.long) ? '_files' : ' '}` : '';
    const desc = `[${zshExplanation(o.description)}]${value}`;
    const exclusive = o.repeatable ? '*' : `(${o.flags.join(' ')})`;
    return o.flags.length > 1 ? `'${exclusive}'{${o.flags.join(',')}}'${desc}'` : `'${o.repeatable ? '*' : ''}${o.flags[0]}${desc}'`;
  });
}

const ZSH_ACTIONS: Record<ArgKind, string> = {
  container: '_crisp_containers',
  pod: '_crisp_pods',
  image: '_crisp_images',
  file: '_files',
  command: ' ',
  shell: '(bash zsh)',
  none: ' ',
};

/** A zsh completion script (`#compdef`): put it on $fpath as _crisp, or `source <(crisp completion zsh)`. */
export function zshCompletion(program: Command): string {
  const root = commandInfo(program);
  const name = root.name;
  const cmdList = root.subcommands.map((c) => `    '${c.name}:${zshText(c.description)}'`);
  const cases = root.subcommands.map((c) => {
    const specs = zshOptionSpecs(c);
    if (c.subcommands.length > 0) {
      const subs = c.subcommands.map((s) => `'${s.name}:${zshText(s.description)}'`).join(' ');
      return `      ${c.name})\n        local -a subs; subs=(${subs})\n        _describe -t commands '${c.name} command' subs ;;`;
    }
    const args = c.args.map((k, i) => {
      const last = i === c.args.length - 1;
      if (k === 'command') return `'*::command: '`;
      return last && c.variadicLast ? `'*:${k}:${ZSH_ACTIONS[k]}'` : `'${i + 1}:${k}:${ZSH_ACTIONS[k]}'`;
    });
    if (c.name === 'exec') {
      // Options only before the container id: everything after it is the command line.
      return `      exec)\n        _arguments -S -A '-*' \\\n          ${[...specs, `'1:container:_crisp_containers'`, `'*::command: '`].join(' \\\n          ')} ;;`;
    }
    return `      ${c.name})\n        _arguments -s \\\n          ${[...specs, `'(- *)--help[show help]'`, ...args].join(' \\\n          ')} ;;`;
  });
  return `#compdef ${name}
# zsh completion for ${name} (generated by \`${name} completion zsh\`).
# Install it as "_${name}" in a directory on $fpath, or load it with: source <(${name} completion zsh)

_crisp_ep() {
  local i
  for ((i = 1; i < \${#words}; i++)); do
    case "\${words[i]}" in
      -e|--endpoint) print -r -- -e; print -r -- "\${words[i+1]}"; return ;;
    esac
  done
}

_crisp_containers() {
  local -a ids; ids=(\${(f)"$(${name} $(_crisp_ep) ps -aq 2>/dev/null)"})
  compadd -a ids
}

_crisp_pods() {
  local -a ids; ids=(\${(f)"$(${name} $(_crisp_ep) pods -q 2>/dev/null)"})
  compadd -a ids
}

_crisp_images() {
  local -a refs; refs=(\${(f)"$(${name} $(_crisp_ep) images 2>/dev/null | awk 'NR > 1 && $2 != "<none>" { print $1 ":" $2 }')"})
  compadd -a refs
}

_${name}() {
  local curcontext="$curcontext" state line
  local -a commands
  commands=(
${cmdList.join('\n')}
  )
  _arguments -C \\
    ${[...zshOptionSpecs(root), `'(- *)--help[show help]'`, `'1:command:->command'`, `'*::argument:->argument'`].join(' \\\n    ')}
  case $state in
    command)
      _describe -t commands '${name} command' commands ;;
    argument)
      curcontext="\${curcontext%:*:*}:${name}-$words[1]:"
      case $words[1] in
${cases.join('\n')}
      esac ;;
  esac
}

if [ "$funcstack[1]" = "_${name}" ]; then
  _${name} "$@"
else
  compdef _${name} ${name}
fi
`;
}
