import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';

/** One process as /proc shows it to the host. */
export interface ProcessInfo {
  readonly pid: number;
  readonly ppid: number;
  readonly argv: readonly string[];
  /**
   * The executable's path, as far as the host can name it: '' when unreadable, and '/' when the
   * file is reachable only through a mount of its own (a file bind-mounted into the sandbox).
   */
  readonly exe: string;
  /** The executable's identity (`dev:ino`), also for files the host cannot name by path. */
  readonly exeId: string | undefined;
  /** The kernel's short command name (`comm`, at most 15 bytes); '' when the process is gone. */
  readonly comm: string;
}

/**
 * The program a process runs, for people and the audit log: its executable when the host can
 * name it, else the path it was started by (argv[0]), else the kernel's command name.
 */
export function processPath(p: ProcessInfo): string {
  if (p.exe.startsWith('/') && p.exe !== '/') return p.exe.replace(/ \(deleted\)$/, '');
  const argv0 = p.argv[0] ?? '';
  if (argv0 !== '') return argv0;
  return p.comm === '' ? `[pid ${p.pid}]` : `[${p.comm}]`;
}

/** The identity (`dev:ino`) of a file, to compare with `ProcessInfo.exeId`. */
export function fileId(path: string): string | undefined {
  try {
    const st = statSync(path);
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

function ppidOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(rest[1]);
  } catch {
    return undefined;
  }
}

function describe(pid: number, ppid: number): ProcessInfo {
  let argv: string[] = [];
  let exe = '';
  let comm = '';
  try {
    comm = readFileSync(`/proc/${pid}/comm`, 'utf8').replace(/\n$/, '');
  } catch {
    // the process is gone
  }
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      .split('\0')
      .filter((a) => a !== '');
  } catch {
    // the process is gone, or hidden from us
  }
  try {
    exe = readlinkSync(`/proc/${pid}/exe`);
  } catch {
    // a kernel thread or a process that already exited
  }
  return { pid, ppid, argv, exe, exeId: fileId(`/proc/${pid}/exe`), comm };
}

/** `root` and every process descending from it, parents before children. */
export function processTree(root: number): ProcessInfo[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    const ppid = ppidOf(pid);
    if (ppid === undefined) continue;
    const list = children.get(ppid);
    if (list === undefined) children.set(ppid, [pid]);
    else list.push(pid);
  }
  const rootPpid = ppidOf(root);
  if (rootPpid === undefined) return [];
  const out: ProcessInfo[] = [describe(root, rootPpid)];
  for (let i = 0; i < out.length; i++) {
    const parent = out[i];
    if (parent === undefined) break;
    for (const c of children.get(parent.pid) ?? []) out.push(describe(c, parent.pid));
  }
  return out;
}

function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // Fields from the state on (the command name may hold spaces and parentheses).
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** When the process started (clock ticks since boot): with the pid, it names one process. */
export function startTime(pid: number): string | undefined {
  return statFields(pid)?.[19];
}

/**
 * Whether a process exists and is not a zombie; with `start`, also that it is the same process
 * that was recorded (a pid can be reused once its process is gone).
 */
export function isAlive(pid: number, start?: string): boolean {
  const f = statFields(pid);
  return f !== undefined && f[0] !== 'Z' && (start === undefined || f[19] === start);
}

/** TCP connections open in the network namespace of `pid` (from /proc/PID/net/tcp{,6}). */
export function tcpConnections(pid: number): { local: string; remote: string; state: string }[] {
  // /proc/net/tcp state numbers 01..0B, in order (include/net/tcp_states.h).
  const STATES =
    'ESTABLISHED SYN-SENT SYN-RECV FIN-WAIT1 FIN-WAIT2 TIME-WAIT CLOSE CLOSE-WAIT LAST-ACK LISTEN CLOSING'.split(
      ' ',
    );
  const out: { local: string; remote: string; state: string }[] = [];
  for (const file of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/net/${file}`, 'latin1');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 4 || f[1] === undefined || f[2] === undefined || f[3] === undefined) continue;
      out.push({
        local: addr(f[1]),
        remote: addr(f[2]),
        state: STATES[parseInt(f[3], 16) - 1] ?? f[3],
      });
    }
  }
  return out;
}

function addr(hex: string): string {
  const [ip = '', port = '0'] = hex.split(':');
  const p = parseInt(port, 16);
  if (ip.length === 8) {
    const b = Buffer.from(ip, 'hex');
    return `${b[3]}.${b[2]}.${b[1]}.${b[0]}:${p}`;
  }
  const words: string[] = [];
  for (let i = 0; i < 32; i += 8) {
    const w = Buffer.from(ip.slice(i, i + 8), 'hex')
      .reverse()
      .toString('hex');
    words.push(w.slice(0, 4), w.slice(4));
  }
  return `[${words.join(':')}]:${p}`;
}
