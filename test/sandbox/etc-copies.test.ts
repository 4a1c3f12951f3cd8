import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIRST_COPY_FD, planSandbox } from '../../src/sandbox/linux/plan.js';
import { validManifest } from '../helpers.js';
import { ROOT, sandboxEnv, type SandboxEnv, removeEnv } from './harness.js';

// Small /etc files reach the sandbox as copies in its read-only root, not as mounts of their
// own (each mount costs bubblewrap a remount and a read of the whole mount table).
let s: SandboxEnv;
beforeAll(() => {
  s = sandboxEnv('etc-copies');
});
afterAll(() => removeEnv(s));

describe('/etc in the sandbox', () => {
  it('copies small world-readable files with their permissions and mounts directories', () => {
    const plan = planSandbox({
      manifest: validManifest({ commandsAllowed: ['/usr/bin/true'] }),
      home: s.home,
      cwd: s.home,
      command: ['/usr/bin/true'],
      agentRuntimes: [],
      hidden: [],
      helperPath: join(ROOT, 'build/Release/cordon-sandbox'),
      egressDir: s.dir,
      parentEnv: {},
      session: 'x',
      limits: {},
    });
    // The precondition: this host has the files the test looks at.
    expect(statSync('/etc/passwd').isFile()).toBe(true);
    expect(statSync('/etc/ssl').isDirectory()).toBe(true);
    const i = plan.copies.indexOf('/etc/passwd');
    expect(i).toBeGreaterThanOrEqual(0);
    const mode = (statSync('/etc/passwd').mode & 0o7777).toString(8).padStart(4, '0');
    const at = plan.bwrapArgs.indexOf(String(FIRST_COPY_FD + i));
    expect(plan.bwrapArgs.slice(at - 3, at + 2)).toEqual([
      '--perms',
      mode,
      '--file',
      String(FIRST_COPY_FD + i),
      '/etc/passwd',
    ]);
    // Directories stay bind mounts (the masks inside them apply there), as do files not copied.
    expect(plan.copies).not.toContain('/etc/ssl');
    expect(plan.bwrapArgs.join(' ')).toContain('--ro-bind /etc/ssl /etc/ssl');
    for (const f of plan.copies)
      expect(plan.bwrapArgs.join(' ')).not.toContain(`--ro-bind ${f} ${f}`);
  });

  it('shows the host’s bytes, read-only, and nothing else of /etc', async () => {
    const manifest = s.sign({ commandsAllowed: ['/usr/bin/bash'] });
    const r = await s.bash(manifest, [
      // Builtins only: the manifest allows bash alone.
      'while IFS= read -r l; do printf "%s\\n" "$l"; done < /etc/passwd',
      'echo x >> /etc/passwd && echo WROTE',
      'echo x > /etc/newfile && echo MADE',
      '[ -e /etc/shadow ] && echo SHADOW',
      'exit 0',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(readFileSync('/etc/passwd', 'utf8'));
    expect(r.stderr).toContain('Read-only file system');
    expect(r.stdout).not.toContain('WROTE');
    expect(r.stdout).not.toContain('MADE');
    expect(r.stdout).not.toContain('SHADOW');
  });
});
