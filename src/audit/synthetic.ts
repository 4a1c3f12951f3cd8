import type { Decision } from '../policy/types.js';
import {
  dataSecurityFindingEvent,
  decisionEvent,
  detectionFindingEvent,
  httpActivityEvent,
  manifestLifecycleEvent,
  networkActivityEvent,
  processActivityEvent,
  tokenEvent,
  type EventContext,
  type OcsfEvent,
} from './events.js';

/**
 * Realistic synthetic events of every kind Cordon emits (about 700 bytes each), for
 * `cordon audit emit-test`: the quick start, benchmarks, and checking a SIEM pipeline end to end.
 * Deterministic for a given seed.
 */
export function syntheticEvents(base: EventContext, seed = 1): () => OcsfEvent {
  let state = seed >>> 0 || 1;
  const rnd = (n: number): number => {
    // xorshift32: cheap, deterministic, good enough to vary test data.
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) % n;
  };
  const pick = <T>(xs: readonly T[]): T => xs[rnd(xs.length)] as T;
  const agents = ['cowork-finance', 'claude-code-dev', 'codex-sre', 'gemini-legal'];
  const files = [
    '/home/alice/Work/Reports/q3-forecast.xlsx',
    '/home/alice/Work/Reports/outgoing/board-summary.pdf',
    '/home/alice/src/payments-service/src/ledger/reconcile.ts',
    '/home/alice/.ssh/id_ed25519',
    '/home/alice/.aws/credentials',
    '/home/alice/src/payments-service/.git/hooks/pre-commit',
  ];
  const hosts = [
    'internal-api.corp.example.com',
    'eu.sheets.example.com',
    'registry.npmjs.org',
    'paste.example.net',
    '169.254.169.254',
  ];
  const decisions: Decision[] = [
    {
      effect: 'allow',
      reason: 'granted by readPaths entry ~/Work/Reports/**',
      rule: '/readPaths/0',
      code: 'ALLOWED',
    },
    {
      effect: 'deny',
      reason: '~/.ssh holds SSH private keys; no manifest may grant it',
      rule: 'deny:ssh',
      code: 'MANDATORY_DENY',
    },
    {
      effect: 'deny',
      reason: 'no grant in the manifest covers this request',
      rule: 'default-deny',
      code: 'NOT_GRANTED',
    },
    {
      effect: 'ask',
      reason: 'sheets:write:restricted needs a person to approve it',
      rule: '/requiresApproval/0',
      code: 'APPROVAL_REQUIRED',
    },
    {
      effect: 'allow',
      reason: 'approved by bob for this exact request',
      rule: '/apiScopes/1',
      code: 'APPROVED',
    },
  ];
  const manifest = {
    agent: 'cowork-finance',
    version: '1.4.2',
    digest: '9f2c4e1b7a0d5c3e8f6a2b4d1c0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e',
  };
  let n = 0;
  return () => {
    n++;
    const ctx: EventContext = {
      ...base,
      actor: { ...base.actor, name: pick(agents), session: `sess-${(n >> 6).toString(36)}` },
      time: (base.time ?? Date.now()) + n,
    };
    const decision = pick(decisions);
    const approver =
      decision.code === 'APPROVED'
        ? { name: 'bob', uid: 'u-1042', email: 'bob@corp.example.com' }
        : undefined;
    const control = { decision, manifest, ...(approver === undefined ? {} : { approver }) };
    const host = pick(hosts);
    // A working day's mix: mostly file, process and network decisions; findings are rare.
    if (n % 100 === 50) {
      return manifestLifecycleEvent(ctx, {
        activity: 'enable',
        manifest,
        ok: rnd(10) > 0,
        code: 'OK',
        reason: 'signature by org key verified; not revoked; valid until 2027-06-30',
      });
    }
    switch (n % 20) {
      case 0:
      case 1:
      case 3:
      case 4:
      case 5:
        return decisionEvent(ctx, { kind: 'file.read', path: pick(files) }, control);
      case 2:
        return decisionEvent(ctx, { kind: 'file.write', path: pick(files), op: 'modify' }, control);
      case 6:
      case 7:
        return decisionEvent(
          ctx,
          {
            kind: 'exec',
            path: '/usr/bin/python3',
            argv: ['python3', 'summarise.py', '--quarter', 'Q3'],
          },
          control,
        );
      case 8:
        return processActivityEvent(ctx, {
          activity: 'terminate',
          path: '/usr/bin/python3',
          pid: 20_000 + rnd(9000),
          exitCode: rnd(3),
        });
      case 9:
      case 10:
      case 11:
        return networkActivityEvent(ctx, {
          activity: 'close',
          dst: { hostname: host, ip: '203.0.113.' + String(rnd(250)), port: 443 },
          traffic: { bytesOut: rnd(60_000_000), bytesIn: rnd(2_000_000), durationMs: rnd(300_000) },
          control,
        });
      case 12:
      case 13:
      case 14:
        return httpActivityEvent(ctx, {
          method: pick(['GET', 'POST', 'PUT']),
          url: `https://${host}/v2/sheets/${rnd(1e6)}?range=A1:F9`,
          dst: { hostname: host, port: 443 },
          headers: { authorization: 'Bearer x', 'content-type': 'application/json' },
          status: pick([200, 201, 403]),
          traffic: { bytesOut: rnd(100_000), bytesIn: rnd(500_000) },
          control,
        });
      case 15:
      case 16:
        return decisionEvent(
          ctx,
          {
            kind: 'api.call',
            scope: pick(['sheets:read', 'sheets:write:restricted', 'mcp:filesystem:read_file']),
          },
          control,
        );
      case 17:
        return tokenEvent(ctx, {
          activity: pick(['mint', 'use', 'revoke'] as const),
          tokenId: `tok-${rnd(1e9).toString(36)}`,
          requestDigest: manifest.digest,
          approver: { name: 'bob', uid: 'u-1042' },
          expiresAt: (ctx.time ?? 0) + 900_000,
        });
      case 18:
        return detectionFindingEvent(ctx, {
          uid: `det-${n}`,
          title: 'More than 50 MB to an unapproved domain within 5 minutes',
          rule: { name: 'egress-volume-unapproved', uid: 'cordon-0007' },
          severity: 'high',
          desc: `52,428,800 bytes to ${host} in 212 s`,
          relatedSeq: [n - 3, n - 2, n - 1],
        });
      default:
        return dataSecurityFindingEvent(ctx, {
          uid: `dlp-${n}`,
          title: 'Payment card numbers in an outgoing request',
          where: `http.request body to ${host}`,
          matches: [
            {
              type: 'credit_card',
              count: 1 + rnd(4),
              locations: [{ jsonPath: '$.rows[3].card' }, { startLine: 14, column: 9 }],
            },
          ],
          control,
        });
    }
  };
}
