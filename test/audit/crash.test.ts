import { spawn, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/log.js';
import { parseVerifierKey, verifierKey } from '../../src/audit/note.js';
import { scanRecord } from '../../src/audit/record.js';
import { auditPaths, forEachLine, readIndex } from '../../src/audit/store.js';
import { verifyLog } from '../../src/audit/verify.js';
import { tempDir } from '../helpers.js';
import { ctx } from './samples.js';
import { segmentFiles } from './tamper-tools.js';

const fixture = (name: string) => join(import.meta.dirname, '..', 'fixtures', name);

function onDisk(stateDir: string): Map<number, string> {
  const m = new Map<number, string>();
  for (const f of segmentFiles(stateDir)) {
    forEachLine(f, 0, (line) => {
      const r = scanRecord(line);
      m.set(r.seq, r.hash);
      return true;
    });
  }
  return m;
}

/** Start the writer, let it run until it has acknowledged something plus a random while, SIGKILL it. */
function runAndKill(
  stateDir: string,
  keyFile: string,
  extraMs: number,
): Promise<Map<number, string>> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fixture('audit-writer.mjs'), stateDir, keyFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const acked = new Map<number, string>();
    let buf = '';
    let stderr = '';
    let armed = false;
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const l of lines) {
        const [seq, hash] = l.split(' ');
        acked.set(Number(seq), hash!);
      }
      if (!armed && acked.size > 0) {
        armed = true;
        setTimeout(() => child.kill('SIGKILL'), extraMs);
      }
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') reject(new Error(`writer exited ${code ?? ''}: ${stderr}`));
      else resolve(acked);
    });
  });
}

describe('crash safety', () => {
  it('SIGKILL at random moments, 50 times: every acknowledged append survives, recovery and verify pass', async () => {
    const stateDir = tempDir();
    const key = generateKeyPairSync('ed25519');
    const keyFile = join(stateDir, 'device.key');
    writeFileSync(keyFile, key.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    mkdirSync(join(stateDir, 'audit'), { recursive: true });
    const verifiers = [
      parseVerifierKey(verifierKey('cordon.audit/crash-host/0000', key.privateKey)),
    ];
    let totalAcked = 0;
    let recoveries = 0;
    for (let round = 0; round < 50; round++) {
      const acked = await runAndKill(stateDir, keyFile, Math.floor(Math.random() * 60));
      totalAcked += acked.size;
      const present = onDisk(stateDir);
      for (const [seq, hash] of acked) {
        expect(present.get(seq), `acknowledged record ${seq} lost in round ${round}`).toBe(hash);
      }
      // A kill cannot split one write() call, but a power loss can leave part of the last write:
      // every fifth round, leave the start of a record behind as such a torn write would.
      if (round % 5 === 4) {
        const segs = segmentFiles(stateDir);
        const index = readIndex(auditPaths(stateDir))!;
        const lastSeg = join(
          stateDir,
          'audit',
          'segments',
          index.segments[index.segments.length - 1]!.file,
        );
        const sample = readFileSync(segs[0]!, 'utf8').split('\n')[0]!;
        appendFileSync(
          lastSeg,
          sample.slice(0, 1 + Math.floor(Math.random() * (sample.length - 2))),
        );
      }
      // The next writer recovers (cutting a torn tail if there is one) and continues the chain.
      const log = AuditLog.open({
        stateDir,
        deviceKey: key.privateKey,
        origin: 'cordon.audit/crash-host/0000',
        context: ctx,
      });
      if (log.recovery.cutBytes > 0) recoveries++;
      await log.close();
      const report = await verifyLog(stateDir, { verifiers });
      expect(report.damage, `round ${round}`).toBeUndefined();
    }
    expect(totalAcked).toBeGreaterThan(1000);
    expect(recoveries).toBeGreaterThanOrEqual(10);
    // Informational: how many kills landed mid-write.
    console.log(`crash test: ${totalAcked} acknowledged appends, ${recoveries} torn tails cut`);
  }, 240_000);

  it('a full disk fails the append loudly, keeps the log consistent, and works again once space is freed', () => {
    const dir = tempDir();
    // A tiny tmpfs in a private mount namespace: as an unprivileged user through a user
    // namespace, or directly when running as root where user namespaces are not allowed.
    const inTmpfs = (userns: boolean) =>
      spawnSync(
        'unshare',
        [
          ...(userns ? ['--user', '--map-root-user'] : []),
          '--mount',
          'sh',
          '-c',
          `mount -t tmpfs -o size=256k tmpfs "$0" && exec "$1" "$2" "$0"`,
          dir,
          process.execPath,
          fixture('audit-fill.mjs'),
        ],
        { encoding: 'utf8', timeout: 60_000 },
      );
    let r = inTmpfs(true);
    if (r.status !== 0 && r.stdout === '' && process.getuid?.() === 0) r = inTmpfs(false);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as {
      acked: number;
      failure: { code: string; hint: string; errno: string };
      stillFull: string;
      headWhenFull: number;
      after: { seq: number };
      reported: string[];
      verified: boolean;
      records: number;
    };
    expect(out.acked).toBeGreaterThan(10);
    expect(out.failure).toMatchObject({ code: 'AUDIT_WRITE_FAILED', errno: 'ENOSPC' });
    expect(out.failure.hint).toMatch(/disk is full/);
    expect(out.stillFull).toBe('AUDIT_WRITE_FAILED');
    expect(out.reported).toContain('AUDIT_WRITE_FAILED');
    // The failed records were rolled back: the next append continues right after the last durable one.
    expect(out.after.seq).toBe(out.headWhenFull + 1);
    expect(out.verified).toBe(true);
  });
});
