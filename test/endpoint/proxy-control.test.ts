import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { OcsfEvent } from '../../src/audit/events.js';
import { CordonError } from '../../src/errors.js';
import { loadEnforcedPolicy, type EnforcedPolicy } from '../../src/endpoint/policy.js';
import { ProxyPolicyControl, type ControlledProxy } from '../../src/endpoint/proxy-control.js';
import { tempDir, validManifest } from '../helpers.js';

function policy(version: string): EnforcedPolicy {
  const d = tempDir();
  return loadEnforcedPolicy({
    dirs: { policyDir: join(d, 'policy'), stateDir: join(d, 'state') },
    home: d,
    now: () => new Date(),
    source: 'm.json',
    bytes: Buffer.from(JSON.stringify(validManifest({ version }))),
    guardrails: false,
    lexical: true,
  });
}

/** A proxy that remembers what it was told, in order. */
function proxy(): ControlledProxy & { calls: string[]; denying: boolean } {
  const p = {
    calls: [] as string[],
    denying: false,
    reload: (_pdp: unknown, ref: { version: string }) => {
      p.calls.push(`reload ${ref.version}`);
      return 0;
    },
    denyAll: (reason: string) => {
      p.calls.push(`deny-all ${reason}`);
      p.denying = true;
    },
    resume: () => {
      p.calls.push('resume');
      p.denying = false;
    },
  };
  return p;
}

function control(next: () => EnforcedPolicy, append?: (e: OcsfEvent) => Promise<unknown>) {
  const px = proxy();
  const events: OcsfEvent[] = [];
  const diag: string[] = [];
  const c = new ProxyPolicyControl({
    proxy: px,
    policy: policy('1.0.0'),
    load: next,
    append:
      append ??
      ((e) => {
        events.push(e);
        return Promise.resolve();
      }),
    context: {
      productVersion: '0',
      device: { hostname: 'h', uid: 'u', osName: 'Linux' },
      actor: { name: 'a', pid: 1, processName: 'cordon' },
    },
    now: () => new Date(),
    onDiagnostic: (m) => diag.push(m),
  });
  return { c, px, events, diag };
}

const codeOf = (e: OcsfEvent): unknown => (e as Record<string, unknown>)['status_code'];

describe('the egress proxy reload and deny-all state machine', () => {
  it('a reload that fails denies everything; the next good reload lifts it', () => {
    let fail = true;
    const { c, px, events } = control(() => {
      if (fail) throw new CordonError('MANIFEST_REVOKED', 'revoked');
      return policy('2.0.0');
    });
    expect(c.reload()).toBe(false);
    expect(px.denying).toBe(true);
    expect(c.reloadFailed).toBe(true);
    expect(c.policy.ref.version).toBe('1.0.0');
    fail = false;
    expect(c.reload()).toBe(true);
    expect(px.denying).toBe(false);
    expect(c.policy.ref.version).toBe('2.0.0');
    expect(events.map(codeOf)).toEqual(['MANIFEST_REVOKED', 'VERIFIED']);
  });

  it('a quarantine is never lifted by a reload, good or failed', () => {
    let fail = false;
    const { c, px } = control(() => {
      if (fail) throw new CordonError('MANIFEST_EXPIRED', 'expired');
      return policy('2.0.0');
    });
    c.handle('deny-all');
    expect(c.quarantined).toBe(true);
    expect(c.reload()).toBe(true);
    fail = true;
    expect(c.reload()).toBe(false);
    fail = false;
    expect(c.reload()).toBe(true);
    expect(px.denying).toBe(true);
    expect(px.calls).not.toContain('resume');
    // The quarantine's reason stays the one in force: a failed reload does not replace it.
    expect(px.calls.filter((x) => x.startsWith('deny-all'))).toHaveLength(1);
  });

  it('an event that cannot be written is reported, and the reload still takes effect', async () => {
    const { c, diag } = control(
      () => policy('2.0.0'),
      () => Promise.reject(new Error('ENOSPC')),
    );
    expect(c.reload()).toBe(true);
    expect(c.policy.ref.version).toBe('2.0.0');
    await new Promise((r) => setImmediate(r));
    expect(diag.some((m) => /audit: ENOSPC/.test(m))).toBe(true);
  });
});
