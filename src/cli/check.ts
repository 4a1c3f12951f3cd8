import { parseStrictJson } from '../manifest/json.js';
import type { Decision, PolicyRequest } from '../policy/types.js';
import { connectDaemon } from '../daemon/client.js';
import { loadEnforcedPolicy, readManifestFile } from '../endpoint/policy.js';
import { CheckResponseSchema } from '../protocol/daemon.js';
import { resolve as resolvePath } from 'node:path';
import { printResult, resolveDirs, usage, type CliIo, type GlobalOptions } from './context.js';

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
}

/** Exit codes of `cordon check`: the effect of the (last) decision. */
export const CHECK_EXIT = { allow: 0, deny: 1, ask: 10 } as const;

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
  const dirs = resolveDirs(io, opts);
  // One read: what is verified is what is decided on.
  const bytes = readManifestFile(opts.manifest);
  const options = {
    ...(opts.verify === undefined ? {} : { verify: opts.verify }),
    ...(opts.guardrails === undefined ? {} : { guardrails: opts.guardrails }),
    ...(opts.lexical === undefined ? {} : { lexical: opts.lexical }),
  };
  if (opts.audit === true) {
    // Audited decisions are the endpoint service's: it verifies, decides and records each one
    // (a decision that cannot be recorded is a deny), as the only writer of the log.
    const client = await connectDaemon(io.env, io.home, dirs);
    let unverified: Unverified;
    const decide: Decide = async (req, invalid, what) => {
      const r = await client.request(
        'POST',
        '/v1/check',
        {
          manifest: bytes.toString('base64'),
          manifestPath: resolvePath(opts.manifest),
          requests: [req ?? null],
          ...(invalid === undefined
            ? {}
            : { invalid: [{ operation: what, reason: invalid.reason }] }),
          ...options,
          home: opts.home ?? io.home,
        },
        CheckResponseSchema,
      );
      io.stderr(`audit: record ${r.records[0] ?? 0}\n`);
      unverified = r.verified
        ? undefined
        : r.signed
          ? 'signed manifest NOT verified (--no-verify)'
          : 'unsigned draft, not verifiable';
      return (r.decisions[0] as Decision | undefined) ?? invalid ?? denyAll;
    };
    return await decideAll(io, kind, args, opts, input, decide, () => unverified);
  }
  const { pdp, signed, verified } = loadEnforcedPolicy({
    dirs,
    home: io.home,
    now: io.now,
    source: opts.manifest,
    bytes,
    ...options,
    ...(opts.home === undefined ? {} : { decisionHome: opts.home }),
  });
  const unverified = verified
    ? undefined
    : signed
      ? 'signed manifest NOT verified (--no-verify)'
      : 'unsigned draft, not verifiable';
  const decide: Decide = (req, invalid) =>
    Promise.resolve(invalid ?? pdp.decide(req as PolicyRequest));
  return await decideAll(io, kind, args, opts, input, decide, () => unverified);
}

/** A denial for an answer without a decision (never expected from the service). */
const denyAll: Decision = {
  effect: 'deny',
  code: 'PDP_ERROR',
  rule: 'request',
  reason: 'Denied: the service gave no decision.',
};

/**
 * Decide one request: `invalid` is the denial of a line too malformed to be a request, recorded
 * under `what` when auditing.
 */
type Decide = (req: unknown, invalid: Decision | undefined, what: string) => Promise<Decision>;

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
  decide: Decide,
  unverifiedNow: () => Unverified,
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
        last = await decide(undefined, last, `invalid request (line ${n}, too long)`);
        print(io, last, true, unverifiedNow());
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
        last = await decide(undefined, last, `invalid request (line ${n})`);
        print(io, last, true, unverifiedNow());
        continue;
      }
      last = await decide(req, undefined, `invalid request (line ${n})`);
      print(io, last, true, unverifiedNow(), req);
    }
    return last === undefined ? 0 : CHECK_EXIT[last.effect];
  }
  if (kind === undefined)
    throw usage('say what to check', 'e.g. cordon check --manifest M read ~/Work/q3.xlsx');
  const req = requestFromArgs(kind, args, opts);
  const d = await decide(req, undefined, 'invalid request');
  const unverified = unverifiedNow();
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
