import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { auditPaths } from '../../src/audit/store.js';
import { verifyLog } from '../../src/audit/verify.js';
import { tempDir } from '../helpers.js';
import { deviceKey, lineReader, ORIGIN, verifier } from './helpers.js';

const fixture = (name: string) => join(import.meta.dirname, '..', 'fixtures', name);
const WRITERS = 6;
const ROUNDS = 30;

interface Racer {
  child: ChildProcessWithoutNullStreams;
  next: () => Promise<string>;
}

function startRacer(dir: string, keyFile: string): Racer {
  const child = spawn(process.execPath, [fixture('audit-racer.mjs'), dir, keyFile, '5', ORIGIN], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  return { child, next: lineReader(child.stdout) };
}

async function kill(r: Racer): Promise<void> {
  if (r.child.exitCode !== null || r.child.signalCode !== null) return;
  const exited = new Promise((res) => r.child.once('exit', res));
  r.child.kill('SIGKILL');
  await exited;
}

describe('audit writer lock', () => {
  it(`${WRITERS} writers racing over a lock left by a SIGKILLed writer: exactly one writes, ${ROUNDS} rounds`, async () => {
    expect(existsSync(fixture('../../dist/audit/log.js')), 'npm run build first').toBe(true);
    const dir = tempDir();
    const keyFile = join(dir, 'device.key');
    writeFileSync(keyFile, deviceKey.export({ type: 'pkcs8', format: 'pem' }));
    let expectedHead = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const racers = Array.from({ length: WRITERS }, () => startRacer(dir, keyFile));
      try {
        for (const r of racers) expect(await r.next()).toBe('ready');
        // Precondition from the second round on: the lock file still names the writer that
        // was killed holding it (what a crash, SIGKILL or full disk leaves behind).
        if (round > 0) expect(readFileSync(auditPaths(dir).lock, 'utf8')).toMatch(/^[0-9]+$/);
        for (const r of racers) r.child.stdin.write('go\n');
        const answers = await Promise.all(racers.map((r) => r.next()));
        const won = answers.filter((a) => a.startsWith('won '));
        expect(answers.filter((a) => a !== 'locked' && !a.startsWith('won '))).toEqual([]);
        expect(won, `round ${round}: ${answers.join(', ')}`).toHaveLength(1);
        // The winner continued the log from where the killed writer left it.
        const [, first] = (won[0] as string).split(' ');
        expect(Number(first)).toBeGreaterThan(expectedHead);
      } finally {
        // The winner is killed holding the log: the next round races over its stale lock.
        await Promise.all(racers.map(kill));
      }
      const report = await verifyLog(dir, { verifiers: [verifier], workers: 0 });
      expect(report.damage).toBeUndefined();
      expect(report.ok).toBe(true);
      expectedHead = report.lastSeq ?? 0;
    }
  }, 300_000);
});
