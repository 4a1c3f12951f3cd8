import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const bin = join(root, 'dist/cli/main.js');

function cordon(
  args: string[],
  env: Record<string, string>,
): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], {
    env: {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      HOME: env['HOME'] ?? '/nonexistent',
      ...env,
    },
    encoding: 'utf8',
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('the built CLI, as a user runs it', () => {
  it('is built (npm test builds before running the suite)', () => {
    expect(existsSync(bin)).toBe(true);
  });

  it('runs the README quick start: sign, verify, explain, and refuse a tampered copy', () => {
    // The agent's "perl: command not found" shows the sandbox only where perl is installed.
    expect(existsSync('/usr/bin/perl'), '/usr/bin/perl is needed to show the refusal').toBe(true);
    const demo = tempDir();
    const r = spawnSync('bash', [join(root, 'scripts/quickstart.sh')], {
      env: { ...process.env, CORDON_DEMO_DIR: demo },
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('OK: verified cowork-lite 1.0.0');
    expect(r.stdout).toContain('Risk: MEDIUM');
    expect(r.stdout).toContain('REJECTED [SIGNATURE_INVALID]');
    // The decision point under the verified manifest: allow, mandatory deny, ask, metadata address.
    expect(r.stdout).toMatch(/ALLOW {2}ALLOWED {2}rule=\/readPaths\/0/);
    expect(r.stdout).toMatch(/DENY {2}MANDATORY_DENY {2}rule=deny:ssh/);
    expect(r.stdout).toMatch(/ASK {2}APPROVAL_REQUIRED {2}rule=\/requiresApproval\/0/);
    expect(r.stdout).toMatch(/DENY {2}NET_INTERNAL_ADDRESS/);
    expect(r.stdout).toContain('20 passed, 0 failed');
    // Every decision went to the audit log; the log verifies, and an edited copy does not.
    expect(r.stdout).toMatch(/File System Activity: Read Blocked cowork-lite: .*\[deny:ssh\]/);
    expect(r.stdout).toMatch(/^records 1\.\.\d+: chain intact/m);
    expect(r.stdout).toMatch(/^signed checkpoints: \d+ verified/m);
    expect(r.stdout).toMatch(/completeness: NOT PROVEN \(no witness/);
    expect(r.stdout).toMatch(/DAMAGE \(modified\) at record 3/);
    // The egress proxy with real curl: granted name through, the rest refused with the header.
    expect(r.stdout).toContain('Q3 revenue: 4.2M');
    expect(r.stdout).toContain('X-Cordon-Decision: deny; rule=default-deny; code=NOT_GRANTED');
    expect(r.stdout).toMatch(/169\.254\.169\.254 is a metadata address/);
    expect(r.stdout).toMatch(/intranet\.demo resolves to 10\.20\.30\.40, a private address/);
    // The sandboxed agent: grants only, allowed programs only, no route but the proxy.
    expect(r.stdout).toContain('cordon run can sandbox agents on this machine');
    expect(r.stdout).toContain('  Q3 draft: revenue 4.2M');
    expect(r.stdout).toMatch(/id_ed25519: No such file or directory/);
    expect(r.stdout).toMatch(/q3\.txt: Read-only file system/);
    expect(r.stdout).toContain('  written');
    expect(r.stdout).toMatch(/perl: command not found/);
    expect(r.stdout).toMatch(/\/tmp\/c: Permission denied/);
    expect(r.stdout).toMatch(/# curl a host the manifest does not grant\n {2}403\n/);
    expect(r.stdout).toMatch(/curl: \(7\) Failed to connect/);
    expect(r.stdout).toContain('on the host: summary');
    expect(r.stdout).toMatch(
      /Process Activity: Launch Allowed report-writer: \/usr\/bin\/bash \[sandbox\]/,
    );
    expect(r.stdout).toMatch(
      /HTTP Activity: Post Blocked web-reports: http:\/\/exfil\.demo\/upload/,
    );
    // The proxy stopped on SIGTERM (it printed its per-destination summary) and left nothing running.
    expect(readFileSync(join(demo, 'proxy.err'), 'utf8')).toMatch(/exfil\.demo:80: 1 request\(s\)/);
  }, 120_000);

  it('exits with the documented codes and honours HOME and CORDON_HOME', () => {
    const home = tempDir();
    expect(cordon(['--version'], { HOME: home }).stdout.trim()).toBe('0.1.0');
    expect(cordon(['--help'], { HOME: home }).status).toBe(0);
    expect(cordon(['bogus'], { HOME: home }).status).toBe(2);
    expect(cordon(['manifest', 'verify', join(home, 'missing.json')], { HOME: home }).status).toBe(
      3,
    );
    // No CORDON_HOME: XDG defaults under HOME.
    expect(cordon(['init'], { HOME: home }).status).toBe(0);
    expect(existsSync(join(home, '.config/cordon/trust.json'))).toBe(true);
    const ch = join(home, 'ch');
    expect(cordon(['init', '--json'], { HOME: home, CORDON_HOME: ch }).status).toBe(0);
    expect(existsSync(join(ch, 'policy/keys/org.key'))).toBe(true);
  });
});
