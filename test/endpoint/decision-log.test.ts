import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseRecordLine, readAfter } from '../../src/audit/reader.js';
import { auditPaths } from '../../src/audit/store.js';
import {
  DECISION_UNRECORDED,
  openDecisionLog,
  recordDecision,
} from '../../src/endpoint/decision-log.js';
import type { Decision } from '../../src/policy/types.js';
import { tempDir } from '../helpers.js';

const allow: Decision = { effect: 'allow', code: 'ALLOWED', rule: '/readPaths/0', reason: 'ok' };
const ref = { agent: 'agent-x', version: '1.0.0', digest: 'sha256:' + '0'.repeat(64) };

function open(): {
  dirs: { policyDir: string; stateDir: string };
  seqs: number[];
  errors: unknown[];
} & ReturnType<typeof openDecisionLog> {
  const d = tempDir();
  const dirs = { policyDir: join(d, 'policy'), stateDir: join(d, 'state') };
  const seqs: number[] = [];
  const errors: unknown[] = [];
  const dlog = openDecisionLog(dirs, {
    ref,
    service: 'cordon.test',
    now: () => new Date('2026-01-02T03:04:05Z'),
    onRecorded: (s) => seqs.push(s),
    onUnrecorded: (e) => errors.push(e),
  });
  return Object.assign(dlog, { dirs, seqs, errors });
}

function events(stateDir: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  readAfter(auditPaths(stateDir), 0, (line) => {
    const e = parseRecordLine(line).event;
    // Decisions only: the log adds its own lifecycle events and checkpoints.
    if (e['status_code'] !== undefined && e['class_uid'] !== 6002 && e['class_uid'] !== 1008)
      out.push(e);
    return true;
  });
  return out;
}

describe('the audited decision', () => {
  it('a recorded decision stands, and its event names the manifest and the agent', async () => {
    const dlog = open();
    const d = await recordDecision(dlog, { kind: 'file.read', path: '/w/a' }, allow);
    await dlog.log.close();
    expect(d).toEqual(allow);
    expect(dlog.seqs).toHaveLength(1);
    const [e] = events(dlog.dirs.stateDir).slice(-1);
    expect(JSON.stringify(e)).toContain('agent-x');
    expect(JSON.stringify(e)).toContain(ref.digest);
  });

  it('a request too malformed for its own event class is recorded as an API Activity of the service', async () => {
    const dlog = open();
    const deny: Decision = {
      effect: 'deny',
      code: 'REQUEST_INVALID',
      rule: 'request',
      reason: 'bad',
    };
    const d = await recordDecision(
      dlog,
      { kind: 'teleport', to: 'mars' },
      deny,
      'invalid request (line 3)',
    );
    await dlog.log.close();
    expect(d).toEqual(deny);
    const last = events(dlog.dirs.stateDir).slice(-1)[0] ?? {};
    expect(last['class_uid']).toBe(6003);
    expect(JSON.stringify(last)).toContain('cordon.test');
    expect(JSON.stringify(last)).toContain('invalid request (line 3)');
  });

  it(`a decision that cannot be recorded is a deny (${DECISION_UNRECORDED}), whatever it was`, async () => {
    const dlog = open();
    await dlog.log.close(); // appends are refused from now on, as on a broken disk
    const d = await recordDecision(dlog, { kind: 'file.read', path: '/w/a' }, allow);
    expect(d.effect).toBe('deny');
    expect(d.code).toBe('DECISION_UNRECORDED');
    expect(d.rule).toBe('audit');
    expect(dlog.seqs).toEqual([]);
    expect(dlog.errors).toHaveLength(1);
  });
});
