import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/manifest/schema.js';
import { draftPlan, planFromDraft, type PlanDraftInput } from '../../src/sandbox/launcher.js';
import { planSandbox } from '../../src/sandbox/linux/plan.js';
import { validManifest } from '../helpers.js';
import { ROOT } from './harness.js';

// `cordon run` plans the sandbox while the service verifies the manifest, from the manifest as
// it read it. That plan may only ever be the plan the session would have made itself.
let dir: string;
let home: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'cordon-draft-'));
  home = join(dir, 'home');
  mkdirSync(join(home, 'proj/repo/.git'), { recursive: true });
  mkdirSync(join(home, 'docs'), { recursive: true });
  mkdirSync(join(dir, 'elsewhere'), { recursive: true });
  symlinkSync(join(dir, 'elsewhere'), join(home, 'linked'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function input(manifest: Manifest, over: Partial<PlanDraftInput> = {}): PlanDraftInput {
  return {
    manifest,
    home,
    cwd: join(home, 'proj'),
    command: ['/usr/bin/cat'],
    agentRuntimes: [],
    hidden: [join(dir, 'policy'), join(dir, 'state')],
    helperPath: join(ROOT, 'build/Release/cordon-sandbox'),
    parentEnv: { PATH: '/usr/bin', LANG: 'C.UTF-8' },
    limits: { memoryBytes: 1 << 30 },
    ...over,
  };
}
const session = {
  egressDir: '/run/user/1000/cordon/s/0123456789abcdef',
  session: 'b7c1c8a4-2f4e-4d43-9a51-1f0e2c3d4e5f',
};
const m = validManifest({
  readPaths: ['~/docs/**'],
  writePaths: ['~/proj/**'],
  commandsAllowed: ['/usr/bin/cat', '/usr/bin/true'],
});

describe('a plan drafted before the session is open', () => {
  it('is exactly the plan the session would have made, with the session’s egress and id', () => {
    const draft = draftPlan(input(m));
    expect(draft).toBeDefined();
    const used = planFromDraft(draft, { ...input(m), ...session });
    expect(used).toEqual(planSandbox({ ...input(m), ...session }));
    // The session's own values, and no stand-in left anywhere.
    expect(used?.bwrapArgs).toContain(session.egressDir);
    expect(used?.env['CORDON_SESSION']).toBe(session.session);
    expect(JSON.stringify(used)).not.toContain('\\u0000');
  });

  it('is not used when the verified manifest or anything else the plan reads differs', () => {
    const draft = draftPlan(input(m));
    const other = validManifest({ ...m, commandsAllowed: ['/usr/bin/true'] });
    const wider = validManifest({ ...m, writePaths: ['~/**'] });
    for (const changed of [
      input(other),
      input(wider),
      input(m, { hidden: [join(dir, 'policy')] }),
      input(m, { agentRuntimes: [{ path: '/usr/bin/perl', rule: '/agentRuntimes/0' }] }),
      input(m, { cwd: home }),
      input(m, { command: ['/usr/bin/true'] }),
      input(m, { parentEnv: { PATH: '/usr/bin', LANG: 'C.UTF-8', LC_ALL: 'C' } }),
      input(m, { limits: {} }),
      input(m, { home: join(home, 'proj') }),
    ])
      expect(planFromDraft(draft, { ...changed, ...session })).toBeUndefined();
    expect(planFromDraft(undefined, { ...input(m), ...session })).toBeUndefined();
  });

  it('changes nothing on disk: a plan that must make a directory is left to the session', () => {
    // A writable home: the user site of each python3 on the host is masked, and the
    // directories holding the mask are made by the plan when missing.
    const wide = validManifest({ writePaths: ['~/**'], commandsAllowed: ['/usr/bin/cat'] });
    const holder = join(home, '.local');
    expect(existsSync(holder)).toBe(false);
    expect(draftPlan(input(wide))).toBeUndefined();
    expect(existsSync(holder)).toBe(false);
    // The session's own plan makes them (the precondition of the test: it needs them).
    planSandbox({ ...input(wide), ...session });
    expect(existsSync(holder)).toBe(true);
  });

  it('does not wait on what an unverified manifest names: a FIFO as a command', () => {
    const fifo = join(dir, 'fifo');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    const named = validManifest({ commandsAllowed: ['/usr/bin/cat', fifo] });
    // Opening a FIFO for reading waits for a writer: the draft returns at once instead.
    expect(draftPlan(input(named))).toBeDefined();
  });

  it('is not made when the plan needs an answer of the decision point', () => {
    // A grant through a symbolic link is mounted only where the decision point allows its
    // target: a draft cannot ask, so there is none.
    const linked = validManifest({ readPaths: ['~/linked/**'], commandsAllowed: ['/usr/bin/cat'] });
    expect(draftPlan(input(linked))).toBeUndefined();
  });
});
