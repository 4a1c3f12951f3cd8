import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalize } from '../../src/manifest/canonical.js';
import {
  RecordWriter,
  encodeRecord,
  fromExported,
  scanRecord,
  toExported,
} from '../../src/audit/record.js';
import { sampleEvents } from './samples.js';

describe('record format', () => {
  it('the group-write encoder produces exactly the bytes of encodeRecord (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 2 })), {
          minLength: 1,
          maxLength: 20,
        }),
        fc.integer({ min: 1, max: 2 ** 40 }),
        (events, firstSeq) => {
          const w = new RecordWriter();
          let expected = '';
          let prev = 'ab'.repeat(32);
          let prevW = prev;
          events.forEach((e, i) => {
            const json = canonicalize(e);
            const time = new Date(1_790_000_000_000 + i).toISOString();
            const r = encodeRecord(firstSeq + i, time, prev, json);
            expected += r.line + '\n';
            prev = r.hash;
            prevW = w.append(firstSeq + i, time, prevW, json);
            expect(prevW).toBe(r.hash);
          });
          expect(w.bytes().toString('utf8')).toBe(expected);
          expect(w.count).toBe(events.length);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('a record hash is SHA-256 over the canonical record without its hash member', () => {
    const e = sampleEvents()[0]!.event;
    const { line, hash } = encodeRecord(
      7,
      '2026-11-23T00:00:00.000Z',
      '0'.repeat(64),
      canonicalize(e),
    );
    const parsed = JSON.parse(line) as { hash: string; [k: string]: unknown };
    const { hash: h, ...rest } = parsed;
    expect(h).toBe(hash);
    expect(createHash('sha256').update(canonicalize(rest)).digest('hex')).toBe(hash);
    expect(line).toBe(canonicalize(parsed));
    const s = scanRecord(Buffer.from(line));
    expect(s).toMatchObject({ seq: 7, hash, prev: '0'.repeat(64), hashOk: true });
  });

  it('exported events round-trip to the hashed record', () => {
    for (const { event } of sampleEvents()) {
      const { hash } = encodeRecord(
        3,
        '2026-11-23T00:00:00.000Z',
        '1'.repeat(64),
        canonicalize(event),
      );
      const rec = { seq: 3, time: '2026-11-23T00:00:00.000Z', prev: '1'.repeat(64), hash, event };
      const back = fromExported(JSON.parse(JSON.stringify(toExported(rec))));
      expect(back).toEqual(rec);
      expect(encodeRecord(back.seq, back.time, back.prev, canonicalize(back.event)).hash).toBe(
        hash,
      );
    }
  });
});
