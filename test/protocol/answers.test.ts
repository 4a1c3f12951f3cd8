import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  closeAnswer,
  decideAnswer,
  errorAnswer,
  eventsAnswer,
  openSessionAnswer,
  reloadAnswer,
  sessionAnswer,
  watchMessage,
  type AnswerCheck,
} from '../../src/protocol/answers.js';
import {
  CloseResponseSchema,
  DecideResponseSchema,
  ErrorBodySchema,
  EventsResponseSchema,
  OpenSessionResponseSchema,
  ReloadResponseSchema,
  SessionResponseSchema,
  WatchMessageSchema,
} from '../../src/protocol/daemon.js';

// The zod-free checks thin clients use (src/protocol/answers.ts) must admit exactly what the
// protocol's schemas admit: valid answers, and each answer broken at one place in every way.

type Json = unknown;
const ID = '0b7f7773-f0de-4ea2-8000-aaaaaaaaaaaa';
const session = {
  id: ID,
  kind: 'run',
  agent: 'a',
  manifestVersion: '1.0.0',
  manifestDigest: 'sha256:x',
  manifestPath: '/m.json',
  uid: 1000,
  clientPid: 42,
  sandboxPid: 43,
  command: ['/usr/bin/true'],
  startedAt: '2026-12-05T00:00:00Z',
  auditSeqAtStart: 0,
  bytesOut: 0,
  bytesIn: 0,
  state: 'running',
  attached: true,
  quarantinedAt: '2026-12-05T00:00:01Z',
  quarantineReason: 'r',
  unsafeNoSandbox: false,
};
const samples: [
  string,
  AnswerCheck<unknown>,
  { safeParse(v: unknown): { success: boolean } },
  Json,
][] = [
  [
    'open session',
    openSessionAnswer,
    OpenSessionResponseSchema,
    {
      ok: true,
      session: ID,
      capability: 'c'.repeat(64),
      manifest: { agentName: 'a', grants: [] },
      ref: { agent: 'a', version: '1.0.0', digest: 'sha256:x' },
      guardrails: { in_force: false },
      guardrailsText: 'none',
      agentRuntimes: [{ path: '/usr/bin/node', rule: 'r' }],
      egressDir: '/run/x',
      egressSocket: '/run/x/egress.sock',
      hidden: ['/etc/cordon'],
      home: '/home/u',
      auditSeqAtStart: 12,
      proxyUrl: 'http://127.0.0.1:1',
      socksPort: 1080,
    },
  ],
  ['events', eventsAnswer, EventsResponseSchema, { ok: true, acked: 3, logSeq: 99 }],
  [
    'error',
    errorAnswer,
    ErrorBodySchema,
    { ok: false, code: 'EVENTS_PENDING', message: 'm', hint: 'h', file: '/f', pointer: '/p' },
  ],
  [
    'close',
    closeAnswer,
    CloseResponseSchema,
    {
      ok: true,
      destinations: [
        { destination: 'x:443', requests: 1, connections: 1, denied: 0, bytesOut: 5, bytesIn: 6 },
      ],
    },
  ],
  ['session', sessionAnswer, SessionResponseSchema, { ok: true, session }],
  ['reload', reloadAnswer, ReloadResponseSchema, { ok: true, inForce: true, message: 'm' }],
  ['watch attached', watchMessage, WatchMessageSchema, { type: 'attached', session: ID }],
  [
    'watch quarantine',
    watchMessage,
    WatchMessageSchema,
    { type: 'quarantine', code: 'C', reason: 'r' },
  ],
  ['watch ping', watchMessage, WatchMessageSchema, { type: 'ping' }],
  ['watch notice', watchMessage, WatchMessageSchema, { type: 'notice', text: 't' }],
  [
    'decide',
    decideAnswer,
    DecideResponseSchema,
    {
      ok: true,
      decisions: [
        { effect: 'deny', reason: 'r', rule: 'x', code: 'EXEC_DENIED', overrides: ['o'] },
      ],
    },
  ],
];

/** Every path to a value inside `v` (objects' keys, arrays' indexes), the root included. */
function paths(v: Json, at: (string | number)[] = []): (string | number)[][] {
  const out = [at];
  if (Array.isArray(v)) v.forEach((x, i) => out.push(...paths(x, [...at, i])));
  else if (typeof v === 'object' && v !== null)
    for (const [k, x] of Object.entries(v)) out.push(...paths(x, [...at, k]));
  return out;
}

/** `v` with the value at `path` replaced (removed, for `undefined` under an object). */
function replaced(v: Json, path: (string | number)[], x: Json): Json {
  if (path.length === 0) return x;
  // The second break may aim below a value the first one replaced: nothing left to break.
  if (typeof v !== 'object' || v === null) return v;
  const [head = '', ...rest] = path;
  if (Array.isArray(v)) {
    const copy: Json[] = [...(v as Json[])];
    copy[Number(head)] = replaced(copy[Number(head)], rest, x);
    return copy;
  }
  const next = replaced((v as Record<string, Json>)[head], rest, x);
  return Object.fromEntries([
    ...Object.entries(v as Record<string, Json>).filter(([k]) => k !== String(head)),
    ...(next === undefined ? [] : [[String(head), next]]),
  ]);
}

// What a broken answer carries where a value was: other types, edges of the limits.
const nasty = fc.oneof(
  fc.constant(undefined),
  fc.constant(null),
  fc.boolean(),
  fc.constantFrom(0, -1, -0, 1.5, 2 ** 53, -(2 ** 53), 65536, 1e308),
  fc.string({ maxLength: 8 }),
  fc
    .constantFrom(64, 65, 128, 129, 256, 257, 1024, 1025, 4096, 4097, 8192, 8193)
    .map((n) => 'x'.repeat(n)),
  // Around the limits in code points, which zod counts (a pair is one), not code units.
  fc
    .tuple(
      fc.constantFrom(32, 33, 64, 65, 128, 129, 512, 513, 2048, 2049, 4096, 4097),
      fc.constantFrom('\u{1F600}', 'x\u{1F600}', '\ud800', '\udc00\ud800'),
    )
    .map(([n, unit]) => unit.repeat(n)),
  fc.constantFrom('allow', 'deny', 'ask', 'run', 'proxy', 'running', 'quarantined', 'ping', ID),
  fc.constantFrom(ID.toUpperCase(), `${ID}0`, ID.slice(1)),
  fc.array(fc.jsonValue(), { maxLength: 2 }),
  fc.dictionary(fc.string({ maxLength: 4 }), fc.jsonValue(), { maxKeys: 2 }),
  fc.jsonValue(),
);

describe('the zod-free answer checks agree with the protocol schemas', () => {
  for (const [name, check, schema, sample] of samples) {
    it(`${name}: a valid answer passes both`, () => {
      expect(schema.safeParse(sample).success).toBe(true);
      expect(check.safeParse(sample).success).toBe(true);
    });

    it(`${name}: every answer broken at one or two places gets the same verdict`, () => {
      const all = paths(sample);
      const broken = fc
        .tuple(fc.constantFrom(...all), nasty, fc.constantFrom(...all), nasty, fc.boolean())
        .map(([p, x, q, y, twice]) => {
          const once = replaced(sample, p, x);
          return twice ? replaced(once, q, y) : once;
        });
      fc.assert(
        fc.property(broken, (v) => {
          expect(check.safeParse(v).success).toBe(schema.safeParse(v).success);
        }),
        { numRuns: 1500 },
      );
    });
  }

  it('any JSON value gets the same verdict', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        for (const [, check, schema] of samples)
          expect(check.safeParse(v).success).toBe(schema.safeParse(v).success);
      }),
      { numRuns: 500 },
    );
  });

  it('count a string’s length in code points, as zod does (a surrogate pair is one)', () => {
    // 8192 code points of which some are pairs: over 8192 code units, within the limit.
    const cases: [string, Json][] = [
      ['reload', { ok: true, inForce: false, message: '\u{1F600}'.repeat(4097) }],
      ['reload', { ok: true, inForce: false, message: '\u{1F600}'.repeat(8192) }],
      ['reload', { ok: true, inForce: false, message: '\u{1F600}'.repeat(8193) }],
      ['reload', { ok: true, inForce: false, message: 'x' + '\u{1F600}'.repeat(8191) }],
      ['reload', { ok: true, inForce: false, message: 'xx' + '\u{1F600}'.repeat(8191) }],
      ['reload', { ok: true, inForce: false, message: '\ud800'.repeat(8193) }],
      ['reload', { ok: true, inForce: false, message: '\udc00\ud800'.repeat(4097) }],
      ['watch', { type: 'quarantine', code: '\u{1F600}'.repeat(64), reason: '' }],
      ['watch', { type: 'quarantine', code: '\u{1F600}'.repeat(65), reason: '' }],
    ];
    const byName = new Map(samples.map(([n, c, z]) => [n, [c, z] as const]));
    byName.set('watch', [watchMessage, WatchMessageSchema]);
    byName.set('reload', [reloadAnswer, ReloadResponseSchema]);
    for (const [name, v] of cases) {
      const [check, schema] = byName.get(name) ?? [];
      expect(check?.safeParse(v).success, `${name} ${JSON.stringify(v).slice(0, 60)}`).toBe(
        schema?.safeParse(v).success,
      );
    }
    expect(reloadAnswer.safeParse(cases[1]?.[1]).success).toBe(true);
    expect(reloadAnswer.safeParse(cases[2]?.[1]).success).toBe(false);
  });

  it('a refused answer names the field', () => {
    const r = openSessionAnswer.safeParse({ ...(samples[0]?.[3] as object), hidden: ['/a', 3] });
    expect(r.success).toBe(false);
    if (!r.success) expect(r.error.issues[0]?.path).toEqual(['hidden', 1]);
  });
});
