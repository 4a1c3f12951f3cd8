import { usage, type CliIo } from './context.js';

/** One command of the CLI as completion sees it (built from the commander program). */
export interface CompletionSpec {
  readonly name: string;
  /** Long and short option flags (`--json`, `-n`). */
  readonly options: readonly string[];
  /** Options that take a value: the next word is a file or a value, not a command. */
  readonly valued: readonly string[];
  readonly commands: readonly CompletionSpec[];
}

interface Path {
  readonly words: string;
  readonly spec: CompletionSpec;
}

function paths(spec: CompletionSpec, prefix = ''): Path[] {
  return [
    { words: prefix, spec },
    ...spec.commands.flatMap((c) => paths(c, `${prefix} ${c.name}`)),
  ];
}

const shellWord = (w: string): string => (/^[\w@%+=:,./-]+$/.test(w) ? w : `'${w}'`);

/** A bash completion function: verbs, then each verb's options; files where a value goes. */
function bash(spec: CompletionSpec): string {
  const all = paths(spec);
  const known = all.filter((p) => p.words !== '').map((p) => `"${p.words}"`);
  const cases = all
    .map((p) => {
      const words = [...p.spec.commands.map((c) => c.name), ...p.spec.options];
      return `    "${p.words}") words=${shellWord(words.join(' '))} ;;`;
    })
    .join('\n');
  const valued = [...new Set(all.flatMap((p) => p.spec.valued))].join('|');
  return `# cordon completion for bash; load with: source <(cordon completion bash)
_cordon() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]} path="" w i words=""
  local -a known=(${known.join(' ')})
  for ((i = 1; i < COMP_CWORD; i++)); do
    w=\${COMP_WORDS[i]}
    # After --, the words are the agent's command line.
    [[ $w == -- ]] && return 0
    for k in "\${known[@]}"; do
      if [[ $k == "$path $w" ]]; then path="$path $w"; break; fi
    done
  done
  case $prev in
    ${valued === '' ? '--no-such-option' : valued}) return 0 ;;
  esac
  case $path in
${cases}
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -o bashdefault -F _cordon cordon
`;
}

/** zsh runs the bash function through its bash-completion layer. */
function zsh(spec: CompletionSpec): string {
  return `#compdef cordon
# cordon completion for zsh; load with: source <(cordon completion zsh)
autoload -U +X bashcompinit && bashcompinit
${bash(spec).replace(/^# cordon completion for bash.*\n/, '')}`;
}

function fish(spec: CompletionSpec): string {
  const lines = ['# cordon completion for fish; load with: cordon completion fish | source'];
  lines.push('complete -c cordon -f');
  const top = spec.commands.map((c) => c.name).join(' ');
  lines.push(`complete -c cordon -n '__fish_use_subcommand' -a '${top}'`);
  const flag = (cond: string, o: string, valued: boolean): string =>
    `complete -c cordon -n '${cond}' ${o.startsWith('--') ? `-l ${o.slice(2)}` : `-s ${o.slice(1)}`}${valued ? ' -r -F' : ''}`;
  for (const o of spec.options)
    lines.push(flag('__fish_use_subcommand', o, spec.valued.includes(o)));
  for (const c of spec.commands) {
    const here = `__fish_seen_subcommand_from ${c.name}`;
    if (c.commands.length > 0) {
      const subs = c.commands.map((s) => s.name).join(' ');
      lines.push(
        `complete -c cordon -n '${here}; and not __fish_seen_subcommand_from ${subs}' -a '${subs}'`,
      );
    }
    for (const o of c.options) lines.push(flag(here, o, c.valued.includes(o)));
    for (const s of c.commands) {
      const cond = `${here}; and __fish_seen_subcommand_from ${s.name}`;
      for (const o of s.options) lines.push(flag(cond, o, s.valued.includes(o)));
    }
  }
  return lines.join('\n') + '\n';
}

/**
 * `cordon completion bash|zsh|fish`: print a completion script generated from the CLI itself,
 * so it always knows every verb and option of this version.
 */
export function runCompletion(io: CliIo, shell: string, spec: CompletionSpec): number {
  const make = { bash, zsh, fish }[shell as 'bash' | 'zsh' | 'fish'] as
    ((s: CompletionSpec) => string) | undefined;
  if (make === undefined)
    throw usage(`no completion for shell "${shell}"`, 'use bash, zsh or fish');
  io.stdout(make(spec));
  return 0;
}
