import { readFileSync, realpathSync } from 'node:fs';
import { isAbsolute, resolve as resolvePath } from 'node:path';
import { CordonError } from '../errors.js';
import { launchPrerequisites, which } from '../sandbox/linux/doctor.js';
import type { SandboxLimits } from '../sandbox/linux/plan.js';

/*
 * What `cordon run` itself checks before it asks the endpoint service for a session: its flags,
 * the command it was given, the sandbox's programs. Kept apart from the policy-side checks
 * (launch.ts) so that a client that only launches loads no policy code.
 */

function usage(message: string, hint: string): CordonError {
  return new CordonError('USAGE', message, { hint });
}

const SIZE = /^(\d+)([KMGT]?)i?B?$/i;

/** `512M`, `2G`, `1048576` → bytes; `flag` names the option in the error. */
export function parseSize(text: string, flag: string): number {
  const m = SIZE.exec(text.trim());
  if (m === null)
    throw usage(
      `${flag} "${text}" is not a size`,
      `e.g. ${flag} 2G (K, M, G, T are powers of 1024)`,
    );
  const mult = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[
    (m[2] ?? '').toUpperCase() as '' | 'K' | 'M' | 'G' | 'T'
  ];
  return Number(m[1]) * mult;
}

/** A positive whole number; `flag` names the option in the error. */
export function parseCount(text: string, flag: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1)
    throw usage(`${flag} "${text}" is not a positive whole number`, `e.g. ${flag} 512`);
  return n;
}

/** A scratch tmpfs size: at least 1 MiB (bubblewrap takes 0 as "half the RAM"). */
function parseTmpSize(text: string): number {
  const n = parseSize(text, '--max-tmp-size');
  if (n < 1024 ** 2)
    throw usage(`--max-tmp-size "${text}" is below 1M`, 'e.g. --max-tmp-size 512M');
  return n;
}

/** The resource limits as given on the command line (`--max-*`). */
export interface LimitFlags {
  readonly maxProcesses?: string;
  readonly maxMemory?: string;
  readonly maxCpuSeconds?: string;
  readonly maxFileSize?: string;
  readonly maxTmpSize?: string;
}

/**
 * The session's resource limits. `--max-processes` is refused for root of the initial user
 * namespace (SANDBOX_LIMIT_UNENFORCEABLE): the kernel would not apply it there.
 */
export function sandboxLimits(flags: LimitFlags, unsafeNoSandbox = false): SandboxLimits {
  const limits: SandboxLimits = {
    ...(flags.maxProcesses === undefined
      ? {}
      : { processes: parseCount(flags.maxProcesses, '--max-processes') }),
    ...(flags.maxMemory === undefined
      ? {}
      : { memoryBytes: parseSize(flags.maxMemory, '--max-memory') }),
    ...(flags.maxCpuSeconds === undefined
      ? {}
      : { cpuSeconds: parseCount(flags.maxCpuSeconds, '--max-cpu-seconds') }),
    ...(flags.maxFileSize === undefined
      ? {}
      : { fileSizeBytes: parseSize(flags.maxFileSize, '--max-file-size') }),
    ...(flags.maxTmpSize === undefined ? {} : { tmpBytes: parseTmpSize(flags.maxTmpSize) }),
  };
  if (limits.processes !== undefined && !unsafeNoSandbox && isInitialRoot())
    throw new CordonError(
      'SANDBOX_LIMIT_UNENFORCEABLE',
      '--max-processes cannot be enforced for root: the kernel does not apply RLIMIT_NPROC to the root user',
      {
        hint: 'run cordon as an ordinary user (the limit holds there), or leave out --max-processes',
      },
    );
  return limits;
}

/**
 * Whether this process is root of the initial user namespace, the one user RLIMIT_NPROC does not
 * bind (root mapped from another user in a container is bound like anyone else).
 */
function isInitialRoot(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    const map = readFileSync('/proc/self/uid_map', 'utf8').trim().split(/\s+/);
    return map[0] === '0' && map[1] === '0';
  } catch {
    return true;
  }
}

/** argv[0] as an absolute real path: a path is taken as given, a bare name is looked up on PATH. */
export function resolveCommand(name: string, cwd: string, path: string): string {
  const found = name.includes('/') ? resolvePath(cwd, name) : which(name, path);
  if (found === undefined)
    throw new CordonError('COMMAND_NOT_FOUND', `${name}: not found on PATH`, {
      hint: 'give the command by its absolute path, or fix PATH',
    });
  try {
    return realpathSync(found);
  } catch {
    throw new CordonError('COMMAND_NOT_FOUND', `${found}: no such file`, {
      hint: 'give the path of an installed program',
    });
  }
}

/** A runtime named by `--agent-runtime`, as given and as its real path. */
export interface NarrowedRuntime {
  readonly given: string;
  readonly real: string;
}

/** The `--agent-runtime` paths, each absolute and installed. */
export function narrowedRuntimes(given: readonly string[]): NarrowedRuntime[] {
  return given.map((r) => {
    if (!isAbsolute(r))
      throw usage(`--agent-runtime ${r} is not absolute`, 'give its absolute path');
    try {
      return { given: r, real: realpathSync(r) };
    } catch {
      throw usage(`--agent-runtime ${r}: no such file or directory`, 'give an installed runtime');
    }
  });
}

/** The sandbox's programs, or SANDBOX_UNAVAILABLE naming what is missing and how to fix it. */
export function sandboxPrerequisites(): { bwrap: string; helper: string } {
  const prereq = launchPrerequisites();
  if (Array.isArray(prereq))
    throw new CordonError(
      'SANDBOX_UNAVAILABLE',
      `the sandbox is incomplete: ${prereq.map((c) => `${c.id}: ${c.detail}`).join('; ')}`,
      { hint: prereq.map((c) => c.fix).join('; ') },
    );
  return prereq;
}
