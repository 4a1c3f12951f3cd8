import type { Decision } from '../../src/policy/types.js';
import {
  apiActivityEvent,
  dataSecurityFindingEvent,
  decisionEvent,
  detectionFindingEvent,
  fileActivityEvent,
  httpActivityEvent,
  logActivityEvent,
  manifestLifecycleEvent,
  networkActivityEvent,
  processActivityEvent,
  tokenEvent,
  type EventContext,
  type OcsfEvent,
} from '../../src/audit/events.js';

export const ctx: EventContext = {
  productVersion: '0.1.0',
  device: { hostname: 'laptop-42', uid: 'ab'.repeat(32), osName: 'Linux' },
  actor: {
    name: 'cowork-lite',
    session: 'sess-1',
    pid: 4242,
    processName: 'claude',
    user: { name: 'alice', uid: '1000' },
  },
  time: 1_790_000_000_000,
};

const allow: Decision = {
  effect: 'allow',
  reason: 'granted by readPaths',
  rule: '/readPaths/0',
  code: 'ALLOWED',
};
const deny: Decision = {
  effect: 'deny',
  reason: '~/.ssh holds SSH keys',
  rule: 'deny:ssh',
  code: 'MANDATORY_DENY',
};
const ask: Decision = {
  effect: 'ask',
  reason: 'needs approval',
  rule: '/requiresApproval/0',
  code: 'APPROVAL_REQUIRED',
};
const manifest = { agent: 'cowork-lite', version: '1.0.0', digest: 'cd'.repeat(32) };

/** One event of every kind Cordon emits, with every optional part filled somewhere. */
export function sampleEvents(): { name: string; event: OcsfEvent }[] {
  return [
    {
      name: 'file read allowed',
      event: decisionEvent(
        ctx,
        { kind: 'file.read', path: '/home/alice/Work/a.txt' },
        { decision: allow, manifest },
      ),
    },
    {
      name: 'file write denied',
      event: decisionEvent(
        ctx,
        { kind: 'file.write', path: '/home/alice/.ssh/id_ed25519', op: 'modify' },
        { decision: deny, manifest },
      ),
    },
    {
      name: 'file rename',
      event: fileActivityEvent(ctx, {
        activity: 'rename',
        path: '/w/a',
        to: '/w/b',
        control: { decision: { ...allow, overrides: ['deny:git-hooks'] } },
      }),
    },
    {
      name: 'file create',
      event: decisionEvent(
        ctx,
        { kind: 'file.write', path: '/w/new', op: 'create' },
        { decision: allow },
      ),
    },
    {
      name: 'file delete',
      event: decisionEvent(
        ctx,
        { kind: 'file.write', path: '/w/old', op: 'delete' },
        { decision: deny },
      ),
    },
    {
      name: 'exec allowed',
      event: decisionEvent(
        ctx,
        { kind: 'exec', path: '/usr/bin/python3', argv: ['python3', 'x.py'] },
        { decision: allow, manifest },
      ),
    },
    {
      name: 'process exit',
      event: processActivityEvent(ctx, {
        activity: 'terminate',
        path: '/usr/bin/python3',
        pid: 77,
        exitCode: 0,
      }),
    },
    {
      name: 'net connect refused',
      event: decisionEvent(
        ctx,
        { kind: 'net.connect', host: 'metadata.example', port: 80, address: '169.254.169.254' },
        { decision: deny },
      ),
    },
    {
      name: 'net close with traffic',
      event: networkActivityEvent(ctx, {
        activity: 'close',
        dst: { hostname: 'api.example.com', ip: '93.184.216.34', port: 443 },
        traffic: { bytesIn: 1000, bytesOut: 52_000_000, durationMs: 1234 },
        control: { decision: allow, manifest },
      }),
    },
    {
      name: 'http get',
      event: decisionEvent(
        ctx,
        { kind: 'http.request', method: 'GET', url: 'https://api.example.com/v1/items?page=2' },
        { decision: allow },
      ),
    },
    {
      name: 'http post with headers',
      event: httpActivityEvent(ctx, {
        method: 'POST',
        url: 'https://u:p@api.example.com/upload?token=abc&x=1',
        dst: { hostname: 'api.example.com', port: 443 },
        headers: {
          authorization: 'Bearer secret',
          'content-type': 'application/json',
          cookie: ['a=1', 'b=2'],
        },
        status: 201,
        traffic: { bytesIn: 10, bytesOut: 20 },
        control: { decision: allow },
      }),
    },
    {
      name: 'http odd method',
      event: decisionEvent(
        ctx,
        { kind: 'http.request', method: 'PROPFIND', url: 'not a url' },
        { decision: deny },
      ),
    },
    {
      name: 'api call ask',
      event: decisionEvent(
        ctx,
        { kind: 'api.call', scope: 'sheets:write:restricted' },
        { decision: ask, manifest },
      ),
    },
    {
      name: 'api call approved',
      event: decisionEvent(
        ctx,
        { kind: 'api.call', scope: 'sheets:write:restricted' },
        {
          decision: { ...allow, code: 'APPROVED' },
          manifest,
          approver: { name: 'bob', uid: 'u-bob', email: 'bob@example.com' },
        },
      ),
    },
    {
      name: 'api create',
      event: apiActivityEvent(ctx, {
        activity: 'create',
        operation: 'tools/call',
        service: 'filesystem',
      }),
    },
    {
      name: 'secret get',
      event: decisionEvent(ctx, { kind: 'secret.get', name: 'GITHUB_TOKEN' }, { decision: deny }),
    },
    {
      name: 'manifest accepted',
      event: manifestLifecycleEvent(ctx, {
        activity: 'enable',
        manifest,
        ok: true,
        code: 'OK',
        reason: 'verified',
      }),
    },
    {
      name: 'manifest refused',
      event: manifestLifecycleEvent(ctx, {
        activity: 'update',
        manifest,
        ok: false,
        code: 'MANIFEST_ROLLBACK',
        reason: 'older version',
      }),
    },
    {
      name: 'token minted',
      event: tokenEvent(ctx, {
        activity: 'mint',
        tokenId: 'tok-1',
        requestDigest: 'ef'.repeat(32),
        approver: { name: 'bob' },
        expiresAt: 1_790_000_900_000,
      }),
    },
    {
      name: 'token revoked',
      event: tokenEvent(ctx, {
        activity: 'revoke',
        tokenId: 'tok-1',
        requestDigest: 'ef'.repeat(32),
      }),
    },
    {
      name: 'detection',
      event: detectionFindingEvent(ctx, {
        uid: 'f-1',
        title: 'More than 50 MB to an unapproved domain in 5 minutes',
        rule: { name: 'egress-volume', uid: 'r-1' },
        severity: 'high',
        desc: '52 MB to paste.example',
        relatedSeq: [10, 11],
      }),
    },
    {
      name: 'dlp finding',
      event: dataSecurityFindingEvent(ctx, {
        uid: 'd-1',
        title: 'Card numbers in an upload',
        where: 'http.request body to api.example.com',
        matches: [
          {
            type: 'credit_card',
            count: 2,
            locations: [{ startLine: 3, column: 7 }, { jsonPath: '$.card' }],
          },
        ],
        control: { decision: deny },
      }),
    },
    {
      name: 'log start',
      event: logActivityEvent(ctx, { activity: 'start', detail: 'audit log opened' }),
    },
    {
      name: 'log restart',
      event: logActivityEvent(ctx, {
        activity: 'restart',
        detail: 'recovered',
        cutBytes: 17,
        segment: '/s/seg.ndjson',
      }),
    },
    {
      name: 'log rotate',
      event: logActivityEvent(ctx, {
        activity: 'rotate',
        detail: 'rotated',
        segment: '/s/seg-2.ndjson',
      }),
    },
    {
      name: 'checkpoint',
      event: logActivityEvent(ctx, {
        activity: 'checkpoint',
        detail: 'checkpoint 10',
        checkpoint: 'origin\n10\nroot\n\n— origin sig\n',
      }),
    },
  ];
}
