import {
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { parseStrictJson } from '../manifest/json.js';
import { parseEnvelope, strictBase64 } from '../manifest/dsse.js';
import { manifestDigest } from '../manifest/sign.js';
import { basename, join } from 'node:path';
import { isAlive, startTime } from './linux/procfs.js';

/** What `cordon ps` and `cordon quarantine` know about a running session. */
export interface SessionRecord {
  readonly id: string;
  readonly agent: string;
  readonly manifestVersion: string;
  readonly manifestDigest: string;
  readonly manifestPath: string;
  readonly command: readonly string[];
  /** The `cordon run` process (it owns the egress proxy and the audit log). */
  readonly cordonPid: number;
  /** Start times of the two processes, so a reused pid is never taken for them. */
  readonly cordonStart?: string;
  readonly sandboxStart?: string;
  /** Host pid of the sandbox's init (pid 1 inside); killing it ends every process inside. */
  readonly sandboxPid?: number;
  readonly startedAt: string;
  /** Private directory holding the egress socket; removed at exit. */
  readonly runDir: string;
  /** Sequence number of the first audit record of the session. */
  readonly auditSeqAtStart?: number;
  readonly bytesOut: number;
  readonly bytesIn: number;
  readonly quarantinedAt?: string;
  readonly unsafeNoSandbox?: boolean;
}

export function sessionsDir(stateDir: string): string {
  return join(stateDir, 'sessions');
}

/**
 * Write atomically (rename), so a reader never sees half a record. A failed write (a full disk)
 * throws and leaves no temporary file behind.
 */
export function writeSession(stateDir: string, s: SessionRecord): void {
  const dir = sessionsDir(stateDir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `.${s.id}.${process.pid}.tmp`);
  try {
    writeFileSync(tmp, JSON.stringify(s, null, 2) + '\n', { mode: 0o600 });
    renameSync(tmp, join(dir, `${s.id}.json`));
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

export function removeSession(stateDir: string, id: string): void {
  rmSync(join(sessionsDir(stateDir), `${id}.json`), { force: true });
  rmSync(join(sessionsDir(stateDir), `${id}.manifest`), { force: true });
}

/**
 * The digest a session names its manifest by: of the payload, for a signed envelope (the bytes
 * that were verified and enforced); undefined when the bytes are not an envelope of one.
 */
export function envelopeDigest(bytes: Uint8Array): string | undefined {
  try {
    return manifestDigest(strictBase64(parseEnvelope(bytes).payload, 'payload'));
  } catch {
    return undefined;
  }
}

/**
 * Keep the signed manifest the session runs under, as verified, beside its record: the file it
 * came from may lie in a write grant, and evidence must carry what was enforced, not what the
 * agent wrote there since. Kept only when its digest is the session's manifest digest.
 */
export function writeSessionManifest(
  stateDir: string,
  id: string,
  source: string | Uint8Array,
  digest: string,
  onDiagnostic: (message: string) => void,
): void {
  const path = typeof source === 'string' ? source : 'the verified manifest';
  let bytes: Uint8Array;
  try {
    bytes = typeof source === 'string' ? readFileSync(source) : source;
  } catch (e) {
    onDiagnostic(`${path}: ${(e as Error).message}; quarantine evidence will lack the manifest`);
    return;
  }
  if (envelopeDigest(bytes) !== digest) {
    onDiagnostic(
      `${path} changed after it was verified; quarantine evidence will lack the manifest`,
    );
    return;
  }
  const dir = sessionsDir(stateDir);
  const tmp = join(dir, `.${id}.manifest.${process.pid}.tmp`);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(tmp, bytes, { mode: 0o600 });
    renameSync(tmp, join(dir, `${id}.manifest`));
  } catch (e) {
    rmSync(tmp, { force: true });
    onDiagnostic(`${dir}: ${(e as Error).message}; quarantine evidence will lack the manifest`);
  }
}

/** The manifest bytes `writeSessionManifest` kept, if any. */
export function readSessionManifest(stateDir: string, id: string): Buffer | undefined {
  try {
    return readFileSync(join(sessionsDir(stateDir), `${id}.manifest`));
  } catch {
    return undefined;
  }
}

export function readSession(stateDir: string, id: string): SessionRecord | undefined {
  try {
    return parseStrictJson(
      readFileSync(join(sessionsDir(stateDir), `${id}.json`), 'utf8'),
    ) as unknown as SessionRecord;
  } catch {
    return undefined;
  }
}

/** The file in a run directory naming the process that owns it: `PID START`. */
export const RUN_DIR_OWNER = 'owner';

/** Mark a fresh run directory as this process's, so a later start can tell it was left behind. */
export function claimRunDir(runDir: string): void {
  writeFileSync(join(runDir, RUN_DIR_OWNER), `${process.pid} ${startTime(process.pid) ?? ''}\n`, {
    mode: 0o600,
    flag: 'wx',
  });
}

/** Whether a session's recorded processes (pid and start time) are all gone. */
function sessionGone(s: SessionRecord): boolean {
  if (isAlive(s.cordonPid, s.cordonStart)) return false;
  return s.sandboxPid === undefined || !isAlive(s.sandboxPid, s.sandboxStart);
}

/**
 * Sessions whose `cordon run` is alive. Records left by a run that was killed outright
 * (SIGKILL) are removed here, with the private directory they name.
 */
export function liveSessions(stateDir: string): SessionRecord[] {
  let names: string[];
  try {
    names = readdirSync(sessionsDir(stateDir));
  } catch {
    return [];
  }
  const out: SessionRecord[] = [];
  for (const name of names) {
    // `.ID.PID.tmp` (a record write cut short) and `.ID.PID.reserve` (space kept for the last
    // records) of a `cordon run` that died without cleaning up.
    const left = /^\.[0-9a-f-]{36}\.(\d+)\.(?:tmp|reserve)$/.exec(name);
    if (left !== null && !isAlive(Number(left[1])))
      rmSync(join(sessionsDir(stateDir), name), { force: true });
    if (!name.endsWith('.json') || name.startsWith('.')) continue;
    const s = readSession(stateDir, name.slice(0, -5));
    if (s === undefined) continue;
    if (!sessionGone(s)) out.push(s);
    else {
      // Only the private directory this session made, whatever the record says.
      if (basename(s.runDir).startsWith(`cordon-run-${s.id}-`))
        rmSync(s.runDir, { recursive: true, force: true });
      removeSession(stateDir, s.id);
    }
  }
  return out.sort((a, b) => a.startedAt.localeCompare(b.startedAt));
}

/**
 * What crashed sessions left: their records and temporary files in the state directory, and
 * their run directories in the temporary directory. Called when `cordon run` and `cordon proxy`
 * start; only what belongs to processes that are gone (pid and start time) is removed, and only
 * run directories of this user that carry an owner file. Best effort: it never stops a start.
 */
export function reapSessions(stateDir: string, tmp: string = tmpdir()): void {
  try {
    liveSessions(stateDir);
  } catch {
    // A record that cannot be removed now is tried again at the next start.
  }
  let names: string[];
  try {
    names = readdirSync(tmp);
  } catch {
    return;
  }
  const uid = process.getuid?.();
  for (const name of names) {
    if (!/^cordon-run-[0-9a-f-]{36}-[A-Za-z0-9]{6}$/.test(name)) continue;
    const runDir = join(tmp, name);
    try {
      const st = lstatSync(runDir);
      if (!st.isDirectory() || (uid !== undefined && st.uid !== uid)) continue;
      const [pid, start] = readFileSync(join(runDir, RUN_DIR_OWNER), 'utf8').trim().split(' ');
      if (pid === undefined || !/^\d+$/.test(pid)) continue;
      if (isAlive(Number(pid), start === '' ? undefined : start)) continue;
      rmSync(runDir, { recursive: true, force: true });
    } catch {
      // Not ours, gone already, or without an owner file: left alone.
    }
  }
}
