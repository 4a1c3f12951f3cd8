import { parseStrictJson } from '../manifest/json.js';
import { manifestDigest } from '../manifest/sign.js';
import { createPdp, type Pdp } from '../policy/pdp.js';
import type { GuardrailsInForce } from '../policy/in-force.js';
import type { Decision, PolicyRequest } from '../policy/types.js';
import type { Manifest } from '../manifest/schema.js';
import { createHash } from 'node:crypto';
import { resolve as resolvePath } from 'node:path';
import { loadGuardrails } from '../policy/guardrails.js';
import { readGuardrailFiles } from '../store/guardrails-dir.js';
import { createFsPathResolver } from '../store/path-resolver.js';
import { policyPaths, readEnforcement } from '../store/policy-dir.js';
import { realpathOrUndefined } from '../store/resolve.js';
import { CordonError } from '../errors.js';
import { verifyBytes } from './manifest-verify.js';
import {
  apiActivityEvent,
  decisionEvent,
  type EventContext,
  type ManifestRef,
  type OcsfEvent,
} from '../audit/events.js';
import type { AuditLog } from '../audit/log.js';
import { openDeviceLog } from '../audit/open.js';
import { printResult, resolveDirs, usage, type CliIo, type GlobalOptions } from './context.js';
import { manifestSourceFromBytes } from './read-manifest.js';
import { ENVELOPE_MAX_BYTES } from '../manifest/dsse.js';
import { ManifestInvalidError, validateManifest } from '../manifest/parse.js';
import { readFileCapped } from '../store/files.js';

export interface CheckOptions extends GlobalOptions {
  manifest: string;
  json?: boolean;
  stdin?: boolean;
  home?: string;
  guardrails?: string | false;
  lexical?: boolean;
  verify?: boolean;
  scheme?: string;
  op?: string;
  to?: string;
  address?: string;
  audit?: boolean;
  /** With verify: remember the version as accepted (rollback protection), as enforcement does. */
  recordAcceptance?: boolean;
  /**
   * An enforcement verb (`run`, `proxy`): the organisation's guardrails (the policy directory's)
   * must be in force unless the policy directory's enforcement.json allows running without them.
   */
  enforce?: boolean;
}

/**
 * Load the guardrails the options name. For enforcement, anything but the policy directory's own
 * guardrails (none installed, `--no-guardrails`, another `--guardrails DIR`) needs the policy
 * directory's explicit permission; without it the verb refuses to start.
 */
function loadGuardrailsFor(
  opts: CheckOptions,
  policyDir: string,
): { guardrails: ReturnType<typeof loadGuardrails> | undefined; inForce: GuardrailsInForce } {
  const orgDir = policyPaths(policyDir).guardrails;
  const dir = opts.guardrails === false ? undefined : resolvePath(opts.guardrails ?? orgDir);
  const files = dir === undefined ? [] : readGuardrailFiles(dir);
  const guardrails = files.length === 0 ? undefined : loadGuardrails(files);
  const own = dir !== undefined && dir === resolvePath(orgDir);
  let allowedBy: string | undefined;
  if (!own || guardrails === undefined) {
    const why =
      dir === undefined
        ? '--no-guardrails'
        : !own
          ? `--guardrails ${dir} instead of the organisation's ${orgDir}`
          : `no guardrails (*.cedar) in ${dir}`;
    if (opts.enforce === true) {
      const setting = readEnforcement(policyDir);
      if (!setting.allowWithoutGuardrails)
        throw new CordonError(
          'GUARDRAILS_REQUIRED',
          `refusing to enforce without the organisation's guardrails: ${why}`,
          {
            file: setting.file,
            hint: own
              ? `install the organisation's guardrails (*.cedar) in ${orgDir}, or let this policy directory run without them: {"allowWithoutGuardrails": true} in ${setting.file}`
              : `drop ${dir === undefined ? '--no-guardrails' : '--guardrails'}: only the policy directory may allow running without its guardrails ("allowWithoutGuardrails": true in ${setting.file})`,
          },
        );
      allowedBy = `${setting.file} allowWithoutGuardrails`;
    } else allowedBy = 'cordon check (not an enforcement point)';
    if (guardrails === undefined)
      return { guardrails, inForce: { inForce: false, why, allowedBy } };
  }
  const h = createHash('sha256');
  for (const f of files) h.update(`${f.name.slice(f.name.lastIndexOf('/') + 1)}\0${f.text}\0`);
  return {
    guardrails,
    inForce: {
      inForce: true,
      dir: dir ?? orgDir,
      digest: `sha256:${h.digest('hex')}`,
      policies: guardrails.policies.map((p) => p.id),
      ...(allowedBy === undefined ? {} : { allowedBy }),
    },
  };
}

/** Exit codes of `cordon check`: the effect of the (last) decision. */
export const CHECK_EXIT = { allow: 0, deny: 1, ask: 10 } as const;

export function buildPdp(
  io: CliIo,
  opts: CheckOptions,
): {
  pdp: Pdp;
  signed: boolean;
  verified: boolean;
  ref: ManifestRef;
  manifest: Manifest;
  guardrails: GuardrailsInForce;
  /** The file's bytes as read once, verified (with `verify`) and enforced. */
  bytes: Buffer;
} {
  // One read: what is verified is what is enforced. Reading the file again after verifying it
  // would enforce whatever replaced it in between, unverified.
  const bytes = readFileCapped(opts.manifest, ENVELOPE_MAX_BYTES);
  let manifest: Manifest;
  let digest: string;
  let signed: boolean;
  let verified = false;
  // A signed manifest is verified unless --no-verify says otherwise: a decision must never be
  // ALLOW under a manifest an endpoint would refuse (expired, revoked, untrusted, rolled back).
  const source = opts.verify === true ? undefined : manifestSourceFromBytes(opts.manifest, bytes);
  if (opts.verify === true || (opts.verify === undefined && source?.signed === true)) {
    // Decide only under a manifest that passes every verification step.
    const report = verifyBytes(io, bytes, { ...opts, record: opts.recordAcceptance === true });
    if (!report.ok || report.manifest === undefined || report.digest === undefined) {
      throw new CordonError(
        report.code ?? 'VERIFY_ERROR',
        `${opts.manifest}: verification failed: ${report.message}`,
        {
          file: opts.manifest,
          hint: report.hint ?? 'run `cordon manifest verify` for the step-by-step report',
        },
      );
    }
    manifest = report.manifest;
    digest = report.digest;
    signed = true;
    verified = true;
  } else {
    const src = source ?? manifestSourceFromBytes(opts.manifest, bytes);
    const r = validateManifest(src.value);
    if (!r.ok) throw new ManifestInvalidError(r.issues, opts.manifest);
    manifest = r.manifest;
    digest = manifestDigest(src.text);
    signed = src.signed;
  }
  const dirs = resolveDirs(io, opts);
  const { guardrails, inForce } = loadGuardrailsFor(opts, dirs.policyDir);
  const resolver = opts.lexical === true ? undefined : createFsPathResolver();
  const pdp = createPdp({
    manifest,
    manifestDigest: digest,
    home: opts.home ?? io.home,
    cordonDirs: [dirs.policyDir, dirs.stateDir],
    ...(resolver === undefined
      ? {}
      : { resolvePath: resolver, resolveCommand: realpathOrUndefined }),
    ...(guardrails === undefined ? {} : { guardrails }),
  });
  return {
    pdp,
    signed,
    verified,
    ref: { agent: manifest.agentName, version: manifest.version, digest },
    manifest,
    guardrails: inForce,
    bytes,
  };
}

/** Turn `cordon check KIND ARGS...` into a request. */
export function requestFromArgs(
  kind: string,
  args: readonly string[],
  opts: CheckOptions,
): PolicyRequest {
  const one = (what: string): string => {
    if (args.length !== 1 || args[0] === undefined)
      throw usage(
        `check ${kind} takes one ${what}`,
        `e.g. cordon check --manifest M ${kind} ${what.toUpperCase()}`,
      );
    return args[0];
  };
  switch (kind) {
    case 'read':
      return { kind: 'file.read', path: one('path') };
    case 'write': {
      const op = opts.op;
      if (op !== undefined && !['create', 'modify', 'delete', 'rename'].includes(op))
        throw usage(`--op ${op} is unknown`, 'use create, modify, delete or rename');
      return {
        kind: 'file.write',
        path: one('path'),
        ...(op === undefined ? {} : { op: op as 'create' }),
        ...(opts.to === undefined ? {} : { to: opts.to }),
      };
    }
    case 'exec': {
      const [path, ...argv] = args;
      if (path === undefined)
        throw usage(
          'check exec needs a path',
          'e.g. cordon check --manifest M exec /usr/bin/git status',
        );
      return { kind: 'exec', path, argv: [path, ...argv] };
    }
    case 'connect': {
      const target = one('host:port');
      const i = target.lastIndexOf(':');
      const port = Number(target.slice(i + 1));
      if (i <= 0 || !Number.isInteger(port))
        throw usage(`"${target}" is not host:port`, 'e.g. api.example.com:443');
      return {
        kind: 'net.connect',
        host: target.slice(0, i),
        port,
        ...(opts.scheme === undefined ? {} : { scheme: opts.scheme }),
        ...(opts.address === undefined ? {} : { address: opts.address }),
      };
    }
    case 'http': {
      const [method, url] = args;
      if (method === undefined || url === undefined || args.length !== 2)
        throw usage(
          'check http takes METHOD URL',
          'e.g. cordon check --manifest M http GET https://api.example.com/',
        );
      return {
        kind: 'http.request',
        method: method.toUpperCase(),
        url,
        ...(opts.address === undefined ? {} : { address: opts.address }),
      };
    }
    case 'api':
      return { kind: 'api.call', scope: one('scope') };
    case 'secret':
      return { kind: 'secret.get', name: one('name') };
    default:
      throw usage(
        `unknown request kind "${kind}"`,
        'use read, write, exec, connect, http, api or secret',
      );
  }
}

/** Why the decisions were made under a manifest that was not verified; undefined when it was. */
type Unverified = string | undefined;

function print(
  io: CliIo,
  d: Decision,
  json: boolean,
  unverified: Unverified,
  request?: PolicyRequest,
): void {
  if (json)
    io.stdout(
      JSON.stringify(
        request === undefined
          ? d
          : {
              request,
              decision: d,
              verified: unverified === undefined,
              ...(unverified === undefined ? {} : { unverified }),
            },
      ) + '\n',
    );
  else
    io.stdout(
      `${d.effect.toUpperCase()}  ${d.code}  rule=${d.rule}\n  ${d.reason}\n${d.overrides === undefined ? '' : `  overrides used: ${d.overrides.join(', ')}\n`}${unverified === undefined ? '' : `  UNVERIFIED: ${unverified}\n`}`,
    );
}

export async function runCheck(
  io: CliIo,
  kind: string | undefined,
  args: readonly string[],
  opts: CheckOptions,
  input: NodeJS.ReadableStream = process.stdin,
): Promise<number> {
  const { pdp, signed, verified, ref } = buildPdp(io, opts);
  const unverified = verified
    ? undefined
    : signed
      ? 'signed manifest NOT verified (--no-verify)'
      : 'unsigned draft, not verifiable';
  const audit = opts.audit === true ? openAudit(io, opts, ref) : undefined;
  try {
    return await decideAll(io, kind, args, opts, input, pdp, audit, unverified);
  } finally {
    await audit?.log.close();
  }
}

interface CheckAudit {
  log: AuditLog;
  context: EventContext;
  ref: ManifestRef;
}

function openAudit(io: CliIo, opts: CheckOptions, ref: ManifestRef): CheckAudit {
  const opened = openDeviceLog(resolveDirs(io, opts));
  return {
    log: opened.log,
    context: { ...opened.context, actor: { ...opened.context.actor, name: ref.agent } },
    ref,
  };
}

/**
 * Record a decision. When the record cannot be made durable the caller must deny: an action
 * that cannot be audited does not happen.
 */
const REQUEST_KINDS = new Set([
  'file.read',
  'file.write',
  'exec',
  'net.connect',
  'http.request',
  'api.call',
  'secret.get',
]);

/**
 * Record a decision. A request too malformed for its own event class (not JSON, an unknown
 * kind, fields of the wrong type) is recorded as an API Activity of the checker, so every
 * denial is in the log. When no record can be made durable the caller must deny: an action
 * that cannot be audited does not happen.
 */
async function record(
  io: CliIo,
  audit: CheckAudit | undefined,
  req: unknown,
  d: Decision,
  what = 'invalid request',
): Promise<Decision> {
  if (audit === undefined) return d;
  const ctx = { ...audit.context, time: io.now().getTime() };
  const outcome = { decision: d, manifest: audit.ref };
  const builds: (() => OcsfEvent)[] = [];
  const kind = (req as { kind?: unknown } | null)?.kind;
  if (
    typeof req === 'object' &&
    req !== null &&
    typeof kind === 'string' &&
    REQUEST_KINDS.has(kind)
  )
    builds.push(() => decisionEvent(ctx, req as PolicyRequest, outcome));
  builds.push(() =>
    apiActivityEvent(ctx, {
      activity: 'other',
      operation: what,
      service: 'cordon.check',
      control: outcome,
    }),
  );
  let failure: unknown;
  for (const build of builds) {
    try {
      const { seq } = await audit.log.append(build());
      io.stderr(`audit: record ${seq}\n`);
      return d;
    } catch (e) {
      failure = e;
    }
  }
  const code = failure instanceof CordonError ? failure.code : 'AUDIT_WRITE_FAILED';
  io.stderr(`audit: ${(failure as Error).message}\n`);
  return {
    effect: 'deny',
    code: 'PDP_ERROR',
    rule: 'audit',
    reason: `Denied: the decision could not be written to the audit log (${code}).`,
  };
}

/** Longest request line `check --stdin` accepts, in bytes (a CR before the LF not counted). */
export const STDIN_LINE_MAX = 64 * 1024;

type StdinLine = { readonly line: Buffer } | { readonly tooLong: number };

/**
 * Request lines from a stream. A line ends at LF; a CR right before the LF belongs to the line
 * end (CRLF), any other CR is part of the line (JSON whitespace between tokens, invalid inside a
 * string) — a lone CR never splits a line. A line longer than `max` is never buffered: it is
 * skipped to its end and reported with its length, so memory stays bounded whatever comes in.
 */
export async function* stdinLines(
  input: AsyncIterable<Buffer | string>,
  max = STDIN_LINE_MAX,
): AsyncGenerator<StdinLine> {
  let parts: Buffer[] = [];
  let size = 0;
  let skipped: number | undefined;
  const finish = (): StdinLine => {
    if (skipped !== undefined) return { tooLong: skipped };
    let line = Buffer.concat(parts, size);
    if (line[line.length - 1] === 0x0d) line = line.subarray(0, -1);
    return { line };
  };
  for await (const chunk of input) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    let start = 0;
    while (start < buf.length) {
      const nl = buf.indexOf(0x0a, start);
      const piece = buf.subarray(start, nl === -1 ? buf.length : nl);
      if (skipped !== undefined) skipped += piece.length;
      else if (size + piece.length > max + 1) {
        // One byte of slack for the CR of a CRLF; the parser enforces `max` exactly.
        skipped = size + piece.length;
        parts = [];
        size = 0;
      } else {
        // Copied: a view would keep the whole chunk alive.
        parts.push(Buffer.from(piece));
        size += piece.length;
      }
      if (nl === -1) break;
      yield finish();
      parts = [];
      size = 0;
      skipped = undefined;
      start = nl + 1;
    }
  }
  if (skipped !== undefined || size > 0) yield finish();
}

async function decideAll(
  io: CliIo,
  kind: string | undefined,
  args: readonly string[],
  opts: CheckOptions,
  input: NodeJS.ReadableStream,
  pdp: Pdp,
  audit: CheckAudit | undefined,
  unverified: Unverified,
): Promise<number> {
  if (opts.stdin === true) {
    if (kind !== undefined)
      throw usage(
        '--stdin takes requests as JSON lines, not arguments',
        'drop the request arguments',
      );
    let last: Decision | undefined;
    let n = 0;
    for await (const item of stdinLines(input as AsyncIterable<Buffer | string>)) {
      n++;
      let req: PolicyRequest;
      if ('tooLong' in item) {
        last = {
          effect: 'deny',
          code: 'REQUEST_INVALID',
          rule: 'request',
          reason: `Denied: line ${n} is ${item.tooLong} bytes; the limit is ${STDIN_LINE_MAX}.`,
        };
        last = await record(io, audit, undefined, last, `invalid request (line ${n}, too long)`);
        print(io, last, true, unverified);
        continue;
      }
      if (/^[\t\n\r ]*$/.test(item.line.toString('latin1'))) continue;
      try {
        req = parseStrictJson(item.line, { maxBytes: STDIN_LINE_MAX }) as unknown as PolicyRequest;
      } catch (e) {
        last = {
          effect: 'deny',
          code: 'REQUEST_INVALID',
          rule: 'request',
          reason: `Denied: line ${n} is not a JSON request (${(e as Error).message}).`,
        };
        last = await record(io, audit, undefined, last, `invalid request (line ${n})`);
        print(io, last, true, unverified);
        continue;
      }
      last = await record(io, audit, req, pdp.decide(req), `invalid request (line ${n})`);
      print(io, last, true, unverified, req);
    }
    return last === undefined ? 0 : CHECK_EXIT[last.effect];
  }
  if (kind === undefined)
    throw usage('say what to check', 'e.g. cordon check --manifest M read ~/Work/q3.xlsx');
  const req = requestFromArgs(kind, args, opts);
  const d = await record(io, audit, req, pdp.decide(req));
  if (opts.json === true)
    printResult(io, {
      // `ok` follows the exit code: only an allow is ok; the decision says why not.
      ...(d.effect === 'allow' ? { ok: true } : { ok: false, code: d.code, message: d.reason }),
      request: req,
      decision: d,
      verified: unverified === undefined,
      ...(unverified === undefined ? {} : { unverified }),
    });
  else print(io, d, false, unverified);
  return CHECK_EXIT[d.effect];
}
