import { existsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { auditConfigFile, readAuditConfig } from '../audit/config.js';
import type { ChainReport, Damage } from '../audit/chain.js';
import { deviceVerifier, logOrigin } from '../audit/open.js';
import { connectDaemon, daemonTarget } from '../daemon/client.js';
import type * as z from 'zod/mini';
import {
  EmitTestResponseSchema,
  RecordsResponseSchema,
  StatusResponseSchema,
  type StatusResponse,
} from '../protocol/daemon.js';
import type { CordonDirs } from '../env.js';
import { parseVerifierKey, verifierKey, type NoteVerifier } from '../audit/note.js';
import { logHead, parseRecordLine, readAfter, type ReadPosition } from '../audit/reader.js';
import { toExported } from '../audit/record.js';
import { Shipper, sinkStatus } from '../audit/sinks/runner.js';
import {
  auditPaths,
  listSegmentFiles,
  readCheckpointState,
  readIndex,
  type AuditPaths,
  type SegmentIndex,
} from '../audit/store.js';
import {
  verifyExported,
  verifyLog,
  type ExportedVerifyReport,
  type LogVerifyReport,
} from '../audit/verify.js';
import { buildExportProof, PROOF_KEY, proofOfLine, type ExportProof } from '../audit/proofs.js';
import { lastWitnessed } from '../audit/witness.js';
import { CordonError } from '../errors.js';
import { parseStrictJson } from '../manifest/json.js';
import { keyIdOf, loadPublicKeyPem } from '../manifest/keys.js';
import { readFileCapped } from '../store/files.js';
import { policyPaths } from '../store/policy-dir.js';
import {
  EXIT,
  printResult,
  progress,
  resolveDirs,
  usage,
  type CliIo,
  type GlobalOptions,
  type JsonResult,
} from './context.js';

export interface AuditVerifyOptions extends GlobalOptions {
  checkpoint?: string[];
  witness?: string[];
  proof?: string[];
  exported?: string;
  key?: string;
  json?: boolean;
}

/** Verifier keys: `--key` (a vkey, or a file holding one or a device.pub PEM) or this device's. */
function verifiers(io: CliIo, opts: AuditVerifyOptions): NoteVerifier[] {
  const dirs = resolveDirs(io, opts);
  if (opts.key !== undefined) {
    if (existsSync(opts.key)) {
      const text = readFileCapped(opts.key, 64 * 1024)
        .toString('utf8')
        .trim();
      if (text.includes('BEGIN PUBLIC KEY')) {
        const pub = loadPublicKeyPem(text);
        return [parseVerifierKey(verifierKey(logOrigin(keyIdOf(pub)), pub))];
      }
      return [parseVerifierKey(text)];
    }
    return [parseVerifierKey(opts.key)];
  }
  const v = deviceVerifier(dirs.policyDir);
  if (v === undefined) {
    throw new CordonError(
      'AUDIT_NO_VERIFIER',
      `no device public key in ${policyPaths(dirs.policyDir).devicePub}`,
      {
        hint: 'pass --key with the verifier key `cordon audit status` prints on the device',
      },
    );
  }
  return [v];
}

/** The segment index, or AUDIT_LOG_MISSING naming where the log was looked for. */
function requireLog(p: AuditPaths): SegmentIndex {
  const index = readIndex(p);
  if (index === undefined) {
    throw new CordonError('AUDIT_LOG_MISSING', `no audit log in ${p.dir}`, {
      file: p.index,
      hint: 'check --state-dir; the first audited action or `cordon audit emit-test --count 10` creates it',
    });
  }
  return index;
}

/**
 * A shipped checkpoint: the signed note itself, or the checkpoint event as a SIEM returns it
 * (exported JSON with `unmapped.checkpoint`), so an analyst can save either.
 */
function checkpointNote(file: string): string {
  const text = readFileCapped(file, 1024 * 1024).toString('utf8');
  if (!text.trimStart().startsWith('{')) return text;
  let note: unknown;
  try {
    const v = parseStrictJson(text.trim(), { maxBytes: 1024 * 1024, maxDepth: 256 }) as {
      unmapped?: { checkpoint?: unknown };
      event?: { unmapped?: { checkpoint?: unknown } };
    };
    note = v.unmapped?.checkpoint ?? v.event?.unmapped?.checkpoint;
  } catch (e) {
    throw e instanceof CordonError ? e.withFile(file) : e;
  }
  if (typeof note !== 'string') {
    throw new CordonError('AUDIT_CHECKPOINT_INVALID', `${file} holds no checkpoint`, {
      file,
      hint: 'save a signed checkpoint note, or a checkpoint event (class 1008, activity 99) from the SIEM',
    });
  }
  return note;
}

function describeDamage(d: Damage): string {
  return `DAMAGE (${d.kind})${d.seq === undefined ? '' : ` at record ${d.seq}`}: ${d.detail}\n  at ${d.location}\n`;
}

/** A verification report as a `--json` result: damage, or a log not proven complete, fails. */
function reportResult(r: ChainReport, c: Completeness): JsonResult {
  const body = { ...r, intact: r.ok, completeness: c };
  if (!r.ok)
    return {
      ...body,
      ok: false,
      code: 'AUDIT_DAMAGED',
      message:
        r.damage === undefined
          ? 'the log did not verify'
          : `${r.damage.kind}${r.damage.seq === undefined ? '' : ` at record ${r.damage.seq}`}: ${r.damage.detail}`,
    };
  if (!c.proven) return { ...body, ok: false, code: 'AUDIT_UNPROVEN', message: c.reason };
  return { ...body, ok: true };
}

/** What `audit verify` proved beyond "nothing is damaged", and the exit code that says it. */
interface Completeness {
  readonly proven: boolean;
  /** Records 1..through are proven present (local log) or every record is proven (a copy). */
  readonly through: number;
  readonly witnesses: readonly string[];
  readonly reason: string;
}

function localCompleteness(r: LogVerifyReport): Completeness {
  const proven = r.ok && r.witnessedSize > 0;
  const reason = !r.ok
    ? 'the log is damaged'
    : r.witnesses.length === 0
      ? 'no witness: a log cut back to an earlier checkpoint, with that checkpoint\'s state file restored, verifies the same. Configure "witness" in audit.json at a place the writer can only append to, or pass --checkpoint with a checkpoint shipped off the machine'
      : proven
        ? `the log holds the checkpoint over records 1..${r.witnessedSize} that ${r.witnesses.join(', ')} witnessed`
        : `${r.witnesses.join(', ')} holds no checkpoint yet`;
  return { proven, through: proven ? r.witnessedSize : 0, witnesses: r.witnesses, reason };
}

/** A proof saved beside a copy: the line `audit export --proofs` wrote. */
function proofFile(file: string): { proof: ExportProof; source: string } {
  const text = readFileCapped(file, 16 * 1024 * 1024)
    .toString('utf8')
    .trim();
  const proof = proofOfLine(text, file);
  if (proof === undefined) {
    throw new CordonError('AUDIT_PROOF_INVALID', `${file} holds no proof`, {
      file,
      hint: 'pass the last line of a copy written by `cordon audit export --proofs`',
    });
  }
  return { proof, source: file };
}

function exportedCompleteness(r: ExportedVerifyReport): Completeness {
  const last = r.lastSeq ?? 0;
  const proven = r.ok && r.records > 0 && r.signedThrough >= last;
  const reason = !r.ok
    ? 'the copy is damaged'
    : r.records === 0
      ? 'the copy holds no record'
      : proven
        ? r.proof !== undefined
          ? r.proof.detail
          : 'every record is under a signed checkpoint'
        : r.signedThrough < (r.firstSeq ?? 1)
          ? `no record of the copy is under a signed checkpoint: its hash chain can be recomputed by anyone (export with --proofs)`
          : `records ${Math.max(r.signedThrough + 1, r.firstSeq ?? 1)}..${last} are not under a signed checkpoint: their hash chain can be recomputed by anyone`;
  return { proven, through: proven ? last : r.signedThrough, witnesses: [], reason };
}

function exitFor(r: ChainReport, c: Completeness): number {
  if (!r.ok) return EXIT.INVALID;
  return c.proven ? EXIT.OK : EXIT.UNPROVEN;
}

function printReport(
  io: CliIo,
  r: ChainReport,
  c: Completeness,
  what: string,
  warnings: readonly string[],
  local: boolean,
): void {
  if (r.damage !== undefined) {
    io.stdout(describeDamage(r.damage));
    io.stdout(`${r.records} record(s) verified before the damage.\n`);
    return;
  }
  const range = r.firstSeq === undefined ? 'no records' : `records ${r.firstSeq}..${r.lastSeq}`;
  const lines = [
    `${range}: chain intact (${r.records} record(s)${r.duplicates > 0 ? `, ${r.duplicates} duplicate deliveries skipped` : ''})`,
    `signed checkpoints: ${r.checkpointsVerified} verified` +
      (r.provenSize > 0 ? `; records 1..${r.provenSize} proven by a signed Merkle root` : '') +
      (r.lastSeq !== undefined && r.signedThrough < r.lastSeq
        ? `; records ${Math.max(r.signedThrough + 1, r.firstSeq ?? 1)}..${r.lastSeq} are chained but not yet under a signed checkpoint`
        : ''),
  ];
  if (local) {
    lines.push(
      c.proven
        ? `completeness vs witness ${c.witnesses.join(', ')}: proven through record ${c.through} (${c.reason})`
        : `completeness: NOT PROVEN (${c.reason})`,
    );
  } else {
    lines.push(
      c.proven ? `authenticity: proven (${c.reason})` : `authenticity: NOT PROVEN (${c.reason})`,
    );
  }
  lines.push(
    c.proven
      ? `ok: ${what}: ${r.records} record(s), ${r.checkpointsVerified} signed checkpoint(s) verified`
      : `INTACT, ${local ? 'COMPLETENESS' : 'AUTHENTICITY'} NOT PROVEN: ${what} (exit ${EXIT.UNPROVEN})`,
  );
  for (const l of lines) io.stdout(l + '\n');
  for (const w of warnings) io.stdout(`warning: ${w}\n`);
}

export async function runAuditVerify(io: CliIo, opts: AuditVerifyOptions): Promise<number> {
  const dirs = resolveDirs(io, opts);
  const vs = verifiers(io, opts);
  const checkpoints = (opts.checkpoint ?? []).map((f) => ({ note: checkpointNote(f), source: f }));
  if (opts.exported !== undefined) {
    const proofs = (opts.proof ?? []).map((f) => proofFile(f));
    const r = verifyExported(opts.exported, { verifiers: vs, checkpoints, proofs });
    const c = exportedCompleteness(r);
    if (opts.json === true) printResult(io, reportResult(r, c));
    else printReport(io, r, c, opts.exported, [], false);
    return exitFor(r, c);
  }
  // The configured witness, unless witnesses are named on the command line.
  const configured = readAuditConfig(dirs.policyDir).witness?.path;
  const witnesses = opts.witness ?? (configured === undefined ? [] : [configured]);
  const shown = progress(io, 'verifying records');
  const total = logHead(auditPaths(dirs.stateDir)).seq;
  const r = await verifyLog(dirs.stateDir, {
    verifiers: vs,
    checkpoints,
    witnesses,
    onProgress: (n) => shown.update(n, total),
    onProgressEvery: 10_000,
  }).finally(() => shown.end());
  const c = localCompleteness(r);
  if (opts.json === true) printResult(io, reportResult(r, c));
  else printReport(io, r, c, auditPaths(dirs.stateDir).dir, r.warnings, true);
  return exitFor(r, c);
}

export interface AuditEmitOptions extends GlobalOptions {
  count: string;
  json?: boolean;
}

export async function runAuditEmitTest(io: CliIo, opts: AuditEmitOptions): Promise<number> {
  const count = Number(opts.count);
  if (!Number.isSafeInteger(count) || count < 1 || count > 100_000_000) {
    throw usage(`--count ${opts.count} is not a number of events`, 'use --count 1..100000000');
  }
  // The service is the log's only writer: it writes the events, in parts so progress shows.
  const client = await connectDaemon(io.env, io.home, resolveDirs(io, opts));
  const shown = progress(io, 'appending events');
  const started = process.hrtime.bigint();
  let r: z.infer<typeof EmitTestResponseSchema> | undefined;
  let writes = 0;
  try {
    for (let done = 0; done < count;) {
      const part = Math.min(count - done, 16_384);
      r = await client.request(
        'POST',
        '/v1/audit/emit-test',
        { count: part },
        EmitTestResponseSchema,
        { timeoutMs: 600_000 },
      );
      writes += r.writes;
      for (const w of r.warnings ?? []) io.stderr(`cordon: ${w}\n`);
      done += part;
      shown.update(done, count);
    }
  } finally {
    shown.end();
  }
  if (r === undefined) throw usage('nothing to append', 'use --count 1..100000000');
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  r = {
    ...r,
    appended: count,
    seconds: Math.round(seconds * 1000) / 1000,
    eventsPerSecond: Math.round(count / seconds),
    writes,
  };
  const result = {
    appended: r.appended,
    lastSeq: r.lastSeq,
    seconds: r.seconds,
    eventsPerSecond: r.eventsPerSecond,
    writes: r.writes,
  };
  const head = { seq: r.lastSeq };
  if (opts.json === true) printResult(io, { ok: true, ...result });
  else
    io.stdout(
      `appended ${count} synthetic events (every kind) in ${result.seconds} s: ${result.eventsPerSecond}/s, ${result.writes} fsync'd writes; log now ends at record ${head.seq}\n`,
    );
  return EXIT.OK;
}

export interface AuditStatusOptions extends GlobalOptions {
  json?: boolean;
}

/** The endpoint service's view (its shippers run continuously), when one answers. */
async function serviceStatus(io: CliIo, dirs: CordonDirs): Promise<StatusResponse | undefined> {
  try {
    const client = await connectDaemon(io.env, io.home, dirs, { autostart: false });
    return await client.request('GET', '/v1/status', undefined, StatusResponseSchema, {
      timeoutMs: 5000,
    });
  } catch {
    return undefined;
  }
}

export async function runAuditStatus(io: CliIo, opts: AuditStatusOptions): Promise<number> {
  const dirs = resolveDirs(io, opts);
  const p = auditPaths(dirs.stateDir);
  const index = requireLog(p);
  const files = listSegmentFiles(p);
  const bytes = files.reduce((n, f) => n + statSync(join(p.segments, f)).size, 0);
  const { seq: head, time: headTime } = logHead(p);
  const cp = readCheckpointState(p);
  const config = readAuditConfig(dirs.policyDir);
  const v = deviceVerifier(dirs.policyDir);
  const status = {
    dir: p.dir,
    segments: index.segments.length,
    bytes,
    records: head,
    lastRecordTime: headTime,
    lastCheckpoint:
      cp === undefined
        ? undefined
        : { size: cp.size, seq: cp.seq, time: new Date(cp.time * 1000).toISOString() },
    uncheckpointed: head - (cp?.seq ?? 0),
    verifierKey: v === undefined ? undefined : verifierKey(v.name, v.publicKey),
    config: existsSync(auditConfigFile(dirs.policyDir))
      ? auditConfigFile(dirs.policyDir)
      : 'defaults',
    sinks: config.sinks.map((s) => sinkStatus(p, s, head)),
    witness: witnessStatus(config.witness?.path, cp?.size),
    service: await serviceStatus(io, dirs),
  };
  if (opts.json === true) {
    printResult(io, { ok: true, ...status });
    return EXIT.OK;
  }
  const svc = status.service;
  const lines = [
    svc === undefined
      ? 'service: not running (sinks ship only while the endpoint service runs: `cordon daemon`)'
      : `service: cordond pid ${svc.pid} (${svc.mode} mode), log head ${svc.log.seq}, ${svc.sessions.running} session(s) running`,
    ...(svc?.sinks ?? []).map(
      (k) =>
        `shipping ${k.name}: ${k.lagRecords} record(s) behind${k.lagSeconds === undefined ? '' : ` (${k.lagSeconds} s)`}${k.lastError === undefined ? '' : `; last error: ${k.lastError}`}`,
    ),
    `log: ${status.dir} (${status.segments} segment(s), ${bytes} bytes)`,
    `records: ${head}${headTime === undefined ? '' : ` (last at ${headTime})`}`,
    `last checkpoint: ${status.lastCheckpoint === undefined ? 'none yet' : `records 1..${status.lastCheckpoint.size} signed at ${status.lastCheckpoint.time} (in record ${status.lastCheckpoint.seq})`}`,
    `verifier key: ${status.verifierKey ?? 'unknown (no device.pub in the policy directory)'}`,
    `config: ${status.config}`,
    status.witness === undefined
      ? 'witness: none (completeness cannot be proven; see "Checkpoints" in the README)'
      : `witness: ${status.witness.path}: ${status.witness.latest === undefined ? 'no checkpoint yet' : `latest checkpoint over ${status.witness.latest} records`}${status.witness.behind ? ` — BEHIND the log's latest (over ${cp?.size ?? 0}): the writer could not append to it` : ''}`,
  ];
  if (status.sinks.length === 0)
    lines.push('sinks: none configured (the local log is the only copy)');
  for (const s of status.sinks) {
    lines.push(
      `sink ${s.name} (${s.type}): delivered through ${s.delivered}, pending ${s.pending}${s.oldestPendingSeconds === undefined ? '' : ` (oldest ${s.oldestPendingSeconds} s ago)`}, failed attempts ${s.failures}${s.consecutiveFailures > 0 ? ` (${s.consecutiveFailures} in a row; last: ${s.lastError ?? ''})` : ''}`,
    );
  }
  io.stdout(lines.join('\n') + '\n');
  return EXIT.OK;
}

/**
 * The witness as the writer keeps it: its latest checkpoint, and whether it lags behind the log's
 * (a witness the writer cannot append to fails silently for the log itself).
 */
function witnessStatus(
  path: string | undefined,
  logLatest: number | undefined,
): { path: string; latest?: number; behind: boolean } | undefined {
  if (path === undefined) return undefined;
  const last = lastWitnessed(path);
  return {
    path,
    ...(last === undefined ? {} : { latest: last.size }),
    behind: (last?.size ?? 0) < (logLatest ?? 0),
  };
}

export interface AuditTailOptions extends GlobalOptions {
  follow?: boolean;
  lines?: string;
  where?: string[];
  json?: boolean;
  ndjson?: boolean;
}

function text(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

function fieldOf(obj: unknown, path: string): unknown {
  let cur = obj;
  for (const part of path.split('.')) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

function parseWhere(where: readonly string[]): ((e: unknown) => boolean)[] {
  return where.map((w) => {
    const eq = w.indexOf('=');
    if (eq <= 0)
      throw usage(
        `--where ${w} is not FIELD=VALUE`,
        'e.g. --where class_uid=4002 --where actor.app_name=cowork-lite',
      );
    const field = w.slice(0, eq);
    const value = w.slice(eq + 1);
    return (e) => {
      const v = fieldOf(e, field);
      return v !== undefined && text(v) === value;
    };
  });
}

function summary(e: Record<string, unknown>): string {
  const s = (v: unknown) => (v === undefined ? '' : text(v));
  const what =
    fieldOf(e, 'file.path') ??
    fieldOf(e, 'process.file.path') ??
    fieldOf(e, 'http_request.url.url_string') ??
    fieldOf(e, 'dst_endpoint.hostname') ??
    fieldOf(e, 'api.operation') ??
    fieldOf(e, 'app.name') ??
    fieldOf(e, 'finding_info.title') ??
    fieldOf(e, 'entity.uid') ??
    fieldOf(e, 'status_detail');
  const disposition = e['disposition'] === undefined ? '' : ` ${s(e['disposition'])}`;
  const rule = fieldOf(e, 'policy.name');
  return `${s(e['class_name'])}: ${s(e['activity_name'])}${disposition} ${s(fieldOf(e, 'actor.app_name'))}: ${s(what)}${rule === undefined ? '' : ` [${s(rule)}]`}`;
}

export async function runAuditTail(
  io: CliIo,
  opts: AuditTailOptions,
  signal?: AbortSignal,
): Promise<number> {
  const dirs = resolveDirs(io, opts);
  const p = auditPaths(dirs.stateDir);
  const n = Number(opts.lines ?? '10');
  if (!Number.isSafeInteger(n) || n < 0)
    throw usage(`--lines ${opts.lines ?? ''} is not a count`, 'use -n 20');
  if (opts.json === true && opts.ndjson === true)
    throw usage('--json and --ndjson are two output formats', 'give one of them');
  // `--json` is one object with the records in it, so it cannot grow while following.
  if (opts.json === true && opts.follow === true)
    throw usage(
      '--json prints one object and cannot follow',
      'use -f --ndjson: one event per line',
    );
  const filters = parseWhere(opts.where ?? []);
  // The system service's log is not the caller's to read: its records come through the service
  // (every one for an administrator, the caller's own otherwise).
  const remote =
    daemonTarget(io.env, io.home, dirs).via === 'user'
      ? undefined
      : await connectDaemon(io.env, io.home, dirs);
  if (remote === undefined) requireLog(p);
  let localPos: ReadPosition | undefined;
  const readFrom = async (
    after: number,
    each: (raw: Buffer, seq: number) => void,
  ): Promise<number> => {
    if (remote === undefined) {
      // Locally, where the last read stopped (a position, not a scan by seq, while following).
      localPos =
        readAfter(p, localPos ?? after, (raw, seq) => {
          each(raw, seq);
          return true;
        }) ?? localPos;
      return localPos?.seq ?? after;
    }
    for (;;) {
      const r = await remote.request(
        'GET',
        `/v1/audit/records?after=${after}&limit=5000`,
        undefined,
        RecordsResponseSchema,
      );
      for (const line of r.records) {
        const raw = Buffer.from(line);
        each(raw, parseRecordLine(raw).seq);
      }
      if (r.next === after || r.next >= r.head) return r.next;
      after = r.next;
    }
  };
  const line = (rec: ReturnType<typeof parseRecordLine>, exported: unknown): string =>
    opts.ndjson === true
      ? JSON.stringify(exported)
      : `${rec.seq} ${rec.time} ${summary(rec.event)}`;
  // The last n matching records: the exported event (for --json) and its line.
  const ring: { exported: unknown; text: string }[] = [];
  let pos = await readFrom(0, (raw) => {
    const rec = parseRecordLine(raw);
    const exported = toExported(rec);
    if (!filters.every((f) => f(exported))) return;
    ring.push({ exported, text: opts.json === true ? '' : line(rec, exported) });
    if (ring.length > n) ring.shift();
  });
  if (opts.json === true) {
    printResult(io, { ok: true, events: ring.map((r) => r.exported) });
    return EXIT.OK;
  }
  for (const r of ring) io.stdout(r.text + '\n');
  if (opts.follow !== true) return EXIT.OK;
  while (signal?.aborted !== true) {
    await new Promise((r) => setTimeout(r, 250));
    pos = await readFrom(pos, (raw) => {
      const rec = parseRecordLine(raw);
      const exported = toExported(rec);
      if (filters.every((f) => f(exported))) io.stdout(line(rec, exported) + '\n');
    });
  }
  return EXIT.OK;
}

export interface AuditExportOptions extends GlobalOptions {
  since?: string;
  until?: string;
  format: string;
  out?: string;
  proofs?: boolean;
}

/** `--since`: a seq number, an ISO 8601 time, or a duration back from now (15m, 2h, 7d). */
function parseBound(io: CliIo, text: string, flag: string): { seq?: number; time?: number } {
  if (/^[0-9]+$/.test(text)) return { seq: Number(text) };
  const d = /^([0-9]+)(s|m|h|d)$/.exec(text);
  if (d !== null) {
    const unit = { s: 1e3, m: 6e4, h: 36e5, d: 864e5 }[d[2] as 's' | 'm' | 'h' | 'd'];
    return { time: io.now().getTime() - Number(d[1]) * unit };
  }
  const t = Date.parse(text);
  if (/^\d{4}-\d{2}-\d{2}/.test(text) && !Number.isNaN(t)) return { time: t };
  throw usage(
    `${flag} ${text} is not a seq, a time or a duration`,
    `e.g. ${flag} 2026-11-01T00:00:00Z, ${flag} 24h or ${flag} 1500`,
  );
}

export function runAuditExport(io: CliIo, opts: AuditExportOptions): number {
  if (opts.format !== 'ocsf-ndjson') {
    throw usage(`--format ${opts.format} is not supported`, 'use --format ocsf-ndjson');
  }
  const dirs = resolveDirs(io, opts);
  const p = auditPaths(dirs.stateDir);
  requireLog(p);
  const since = opts.since === undefined ? {} : parseBound(io, opts.since, '--since');
  const until = opts.until === undefined ? {} : parseBound(io, opts.until, '--until');
  const out: string[] = [];
  let count = 0;
  let first = 0;
  let last = 0;
  const flush = opts.out === undefined ? (t: string) => io.stdout(t) : (t: string) => out.push(t);
  const shown = progress(io, 'exporting records');
  const total = logHead(p).seq;
  readAfter(p, since.seq === undefined ? 0 : since.seq - 1, (line, seq) => {
    if (seq % 1000 === 0) shown.update(seq, total);
    if (until.seq !== undefined && seq > until.seq) return false;
    const rec = parseRecordLine(line);
    const t = Date.parse(rec.time);
    if (since.time !== undefined && t < since.time) return true;
    if (until.time !== undefined && t > until.time) return false;
    flush(JSON.stringify(toExported(rec)) + '\n');
    count++;
    if (first === 0) first = seq;
    last = seq;
    return true;
  });
  shown.end();
  let code: number = EXIT.OK;
  if (opts.proofs === true && count > 0) {
    // The proof goes last, as one line of its own: a signed checkpoint and the RFC 9162
    // proofs that make the copy verifiable on its own (`audit verify --exported`).
    try {
      const { proof, through } = buildExportProof(p, first, last);
      flush(JSON.stringify({ [PROOF_KEY]: proof }) + '\n');
      if (through < last) {
        io.stderr(
          `records ${through + 1}..${last} are after the last signed checkpoint: the copy proves records ${first}..${through} only\n`,
        );
        code = EXIT.UNPROVEN;
      }
    } catch (e) {
      if (!(e instanceof CordonError) || e.code !== 'AUDIT_PROOF_UNAVAILABLE') throw e;
      io.stderr(`no proof (${e.code}): ${e.message}\n`);
      code = EXIT.UNPROVEN;
    }
  }
  if (opts.out !== undefined) writeFileSync(opts.out, out.join(''), { mode: 0o600 });
  io.stderr(
    `exported ${count} record(s)${opts.proofs === true && code === EXIT.OK && count > 0 ? ' with a proof' : ''}\n`,
  );
  return code;
}

export interface AuditShipOptions extends GlobalOptions {
  once?: boolean;
  maxAttempts?: string;
}

export async function runAuditShip(
  io: CliIo,
  opts: AuditShipOptions,
  signal?: AbortSignal,
): Promise<number> {
  const dirs = resolveDirs(io, opts);
  const config = readAuditConfig(dirs.policyDir);
  const p = auditPaths(dirs.stateDir);
  if (config.sinks.length === 0) {
    throw new CordonError('AUDIT_NO_SINKS', `no sinks in ${auditConfigFile(dirs.policyDir)}`, {
      file: auditConfigFile(dirs.policyDir),
      hint: 'add a "sinks" list (see "Audit sinks" in the README)',
    });
  } // The endpoint service ships continuously; a second shipper on the same cursors would race it.
  const service = await serviceStatus(io, dirs);
  if (service !== undefined)
    throw new CordonError(
      'DAEMON_RUNNING',
      `the endpoint service (pid ${service.pid}) ships this log to its sinks already`,
      { hint: "see `cordon audit status` for each sink's lag; stop the service to ship by hand" },
    );

  const maxAttempts = opts.maxAttempts === undefined ? 5 : Number(opts.maxAttempts);
  const shipper = new Shipper({
    paths: p,
    config,
    onEvent: (sink, what, detail) => io.stderr(`${sink}: ${what}: ${detail}\n`),
  });
  signal?.addEventListener('abort', () => void shipper.stop());
  await shipper.start(opts.once === true ? { untilCaughtUp: true, maxAttempts } : {});
  // With --once, success means every sink caught up.
  const head = logHead(p).seq;
  const behind = config.sinks.map((s) => sinkStatus(p, s, head)).filter((s) => s.pending > 0);
  for (const s of behind)
    io.stderr(
      `${s.name}: ${s.pending} record(s) not delivered; last error: ${s.lastError ?? 'none'}\n`,
    );
  return behind.length === 0 ? EXIT.OK : EXIT.ENVIRONMENT;
}
