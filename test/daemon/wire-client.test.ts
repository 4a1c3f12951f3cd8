import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decideAnswer } from '../../src/protocol/answers.js';
import { parseStrictJson } from '../../src/manifest/json.js';
import {
  DecideResponseSchema,
  EventsRequestSchema,
  isEventsRequest,
} from '../../src/protocol/daemon.js';
import { checkWireValue, encodeFrame, FrameReader, WireError } from '../../src/protocol/wire.js';

// The zod-free checks a fast client uses must agree with the protocol's schemas.
describe('the zod-free decide answer check', () => {
  const decision = fc.record(
    {
      effect: fc.oneof(fc.constantFrom('allow', 'deny', 'ask'), fc.string()),
      reason: fc.oneof(fc.string(), fc.integer(), fc.string({ minLength: 8193, maxLength: 8200 })),
      rule: fc.oneof(fc.string(), fc.constant(null)),
      code: fc.oneof(fc.string({ maxLength: 64 }), fc.string({ minLength: 65, maxLength: 70 })),
      overrides: fc.oneof(fc.array(fc.string()), fc.array(fc.integer()), fc.constant('x')),
    },
    { requiredKeys: ['effect'] },
  );
  const answer = fc.oneof(
    fc.record({ ok: fc.constant(true), decisions: fc.array(decision, { maxLength: 3 }) }),
    fc.record({ ok: fc.boolean(), decisions: fc.oneof(fc.array(decision), fc.string()) }),
    fc.anything(),
  );

  it('accepts exactly what DecideResponseSchema accepts', () => {
    fc.assert(
      fc.property(answer, (v) => {
        expect(decideAnswer.safeParse(v).success).toBe(DecideResponseSchema.safeParse(v).success);
      }),
      { numRuns: 3000 },
    );
  });

  it('accepts a real answer and refuses a wrong effect', () => {
    const ok = {
      ok: true,
      decisions: [{ effect: 'deny', reason: 'r', rule: 'x', code: 'EXEC_DENIED', overrides: [] }],
    };
    expect(decideAnswer.safeParse(ok).success).toBe(true);
    const bad = { ok: true, decisions: [{ effect: 'allowed', reason: 'r', rule: 'x', code: 'C' }] };
    expect(decideAnswer.safeParse(bad).success).toBe(false);
  });
});

describe('the zod-free events request check', () => {
  const entry = fc.oneof(
    fc.record({
      seq: fc.oneof(fc.integer({ min: 1 }), fc.integer(), fc.double(), fc.constant(2 ** 53)),
      event: fc.oneof(fc.dictionary(fc.string(), fc.jsonValue()), fc.jsonValue()),
    }),
    fc.record(
      { seq: fc.integer({ min: 1 }), event: fc.object(), extra: fc.jsonValue() },
      { requiredKeys: ['seq'] },
    ),
    fc.jsonValue(),
  );
  const body = fc.oneof(
    fc.record({ events: fc.array(entry, { maxLength: 4 }) }),
    fc.record({ events: fc.array(entry, { maxLength: 2 }), other: fc.jsonValue() }),
    fc.record({
      events: fc.array(fc.record({ seq: fc.constant(1), event: fc.constant({}) }), {
        minLength: 1020,
        maxLength: 1030,
      }),
    }),
    fc.jsonValue(),
  );

  it('accepts exactly what EventsRequestSchema accepts', () => {
    fc.assert(
      fc.property(body, (v) => {
        // As the service gets it: parsed from JSON.
        const parsed = parseStrictJson(JSON.stringify(v) ?? 'null');
        expect(isEventsRequest(parsed)).toBe(EventsRequestSchema.safeParse(parsed).success);
      }),
      { numRuns: 2000 },
    );
  });

  it('refuses a key named __proto__ as the schema does', () => {
    const v = parseStrictJson('{"events":[{"seq":1,"event":{}}],"__proto__":{}}');
    expect(isEventsRequest(v)).toBe(false);
    expect(EventsRequestSchema.safeParse(v).success).toBe(false);
  });
});

describe('frames', () => {
  it('survive any split of the byte stream, in order', () => {
    fc.assert(
      fc.property(
        fc.array(fc.jsonValue(), { minLength: 1, maxLength: 5 }),
        fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 20 }),
        (values, cuts) => {
          const bytes = Buffer.concat(values.map((v) => encodeFrame({ id: 1, body: v })));
          const reader = new FrameReader(1 << 20);
          const got: unknown[] = [];
          let at = 0;
          for (let i = 0; at < bytes.length; i++) {
            const n = cuts[i % cuts.length] ?? 1;
            for (const f of reader.push(bytes.subarray(at, at + n))) got.push(f.value);
            at += n;
          }
          expect(got).toEqual(
            values.map((v) => parseStrictJson(JSON.stringify({ id: 1, body: v }))),
          );
          expect(reader.held).toBe(0);
        },
      ),
    );
  });

  it('refuse a declared length over the limit before its bytes come', () => {
    const head = Buffer.alloc(4);
    head.writeUInt32BE(1025, 0);
    expect(() => new FrameReader(1024).push(head)).toThrow(WireError);
  });

  it('hold values as strict JSON would: depth, numbers, lone surrogates', () => {
    const deep = (n: number): unknown => (n === 0 ? 1 : [deep(n - 1)]);
    expect(checkWireValue(deep(63), 0)).toBeUndefined();
    expect(checkWireValue(deep(65), 0)).toMatch(/deeper/);
    expect(checkWireValue({ a: Infinity }, 0)).toMatch(/too large/);
    expect(checkWireValue({ a: 'x\ud800y' }, 0)).toMatch(/surrogate/);
    expect(checkWireValue({ ['\udc00']: 1 }, 0)).toMatch(/surrogate/);
    expect(checkWireValue({ a: '😀', b: [1, 'ok', null, true] }, 0)).toBeUndefined();
  });
});
