import { describe, expect, it } from 'vitest';
import { OCSF_DIR, OcsfSchema } from './ocsf-schema.js';
import { ctx, sampleEvents } from './samples.js';
import { REDACTED, redactUrl } from '../../src/audit/events.js';
import { canonicalizeSlow } from '../../src/manifest/canonical.js';
import { syntheticEvents } from '../../src/audit/synthetic.js';

const schema = new OcsfSchema(OCSF_DIR);

describe('OCSF events', () => {
  it('covers every class Cordon emits', () => {
    const classes = new Set(sampleEvents().map((s) => s.event.class_uid));
    expect([...classes].sort()).toEqual([
      1001, 1007, 1008, 2004, 2006, 3004, 4001, 4002, 6002, 6003,
    ]);
  });

  for (const { name, event } of sampleEvents()) {
    it(`${name} is valid OCSF 1.8.0`, () => {
      expect(schema.validate(event)).toEqual([]);
      expect(event.type_uid).toBe(event.class_uid * 100 + event.activity_id);
    });
  }

  it('builders emit keys in canonical order, so the log serialises them with JSON.stringify', () => {
    const next = syntheticEvents(ctx, 3);
    const all = [...sampleEvents().map((s) => s.event), ...Array.from({ length: 240 }, next)];
    for (const e of all) expect(JSON.stringify(e)).toBe(canonicalizeSlow(e));
  });

  it('synthetic events of every kind are valid OCSF', () => {
    const next = syntheticEvents(ctx, 5);
    for (let i = 0; i < 240; i++) expect(schema.validate(next())).toEqual([]);
  });

  it('the validator catches a wrong type_uid, a bad enum, a missing required field, an unknown field', () => {
    const base = sampleEvents()[0]!.event;
    expect(schema.validate({ ...base, type_uid: base.type_uid + 1 }).join()).toMatch(/type_uid/);
    expect(schema.validate({ ...base, disposition_id: 4242 }).join()).toMatch(
      /disposition_id.*enum/,
    );
    expect(schema.validate({ ...base, activity_id: 77, type_uid: 100177 }).join()).toMatch(
      /activity_id.*enum/,
    );
    const noFile: Record<string, unknown> = { ...base };
    delete noFile['file'];
    expect(schema.validate(noFile).join()).toMatch(/\/file: required/);
    const meta = base['metadata'] as Record<string, unknown>;
    const metaNoVersion = { ...meta };
    delete metaNoVersion['version'];
    expect(schema.validate({ ...base, metadata: metaNoVersion }).join()).toMatch(
      /metadata\/version: required/,
    );
    expect(schema.validate({ ...base, colour: 'red' }).join()).toMatch(/colour: not an attribute/);
    expect(schema.validate({ ...base, time: 'yesterday' }).join()).toMatch(/time.*timestamp_t/);
    expect(schema.validate({ ...base, disposition: 'Blocked' }).join()).toMatch(/caption/);
    expect(schema.validate({ ...base, severity_id: 42 }).join()).toMatch(/severity_id.*enum/);
    expect(schema.validate({ ...base, category_uid: 4 }).join()).toMatch(/category_uid/);
    expect(schema.validate({ ...base, class_uid: 9999 }).join()).toMatch(/not an OCSF class/);
    const net = sampleEvents().find((s) => s.event.class_uid === 4001)!.event;
    expect(
      schema.validate({ ...net, metadata: { ...meta, profiles: ['security_control'] } }).join(),
    ).toMatch(/profile host/);
    expect(schema.validate({ ...net, dst_endpoint: { ip: '999.1.1.1' } }).join()).toMatch(/ip_t/);
  });

  it('never logs credentials: headers, URL userinfo and secret query values are redacted', () => {
    const http = sampleEvents().find((s) => s.name === 'http post with headers')!.event;
    const text = JSON.stringify(http);
    expect(text).not.toMatch(/Bearer secret|a=1|b=2|abc|u:p@/);
    expect(text).toContain(REDACTED);
    expect(text).toContain('application/json');
    expect(redactUrl('https://x.example/?api_key=1&sig=2&q=ok')['query_string']).toBe(
      'api_key=%5BREDACTED%5D&sig=%5BREDACTED%5D&q=ok',
    );
  });

  it('DLP findings carry type and location, never the matched text', () => {
    const dlp = sampleEvents().find((s) => s.event.class_uid === 2006)!.event;
    const details = (dlp['data_security'] as { discovery_details: Record<string, unknown>[] })
      .discovery_details;
    expect(details[0]).not.toHaveProperty('value');
    expect(Object.keys(details[0]!).sort()).toEqual(['count', 'occurrences', 'type']);
  });

  it('an approval is recorded on the action itself, with the approver as actor.user', () => {
    const e = sampleEvents().find((s) => s.name === 'api call approved')!.event;
    expect(e['disposition_id']).toBe(8);
    expect((e['actor'] as { user: { name: string }; app_name: string }).user.name).toBe('bob');
    expect((e['actor'] as { app_name: string }).app_name).toBe(ctx.actor.name);
  });
});
