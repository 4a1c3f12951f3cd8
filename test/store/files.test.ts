import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { FileAcceptanceStore } from '../../src/store/acceptance.js';
import {
  readFileCapped,
  withFileLock,
  writeFileAtomic,
  writeFileNew,
} from '../../src/store/files.js';
import { errorCode, tempDir } from '../helpers.js';

const code = errorCode;

describe('file helpers', () => {
  it('atomic writes replace, new-file writes refuse to overwrite', () => {
    const d = tempDir();
    const f = join(d, 'sub', 'a.json');
    writeFileAtomic(f, 'one');
    writeFileAtomic(f, 'two');
    expect(readFileSync(f, 'utf8')).toBe('two');
    expect(code(() => writeFileNew(f, 'three'))).toBe('FILE_EXISTS');
    expect(readFileSync(f, 'utf8')).toBe('two');
  });

  it('capped reads refuse oversized files before reading them', () => {
    const d = tempDir();
    const f = join(d, 'big');
    writeFileSync(f, Buffer.alloc(1000));
    expect(code(() => readFileCapped(f, 999))).toBe('FILE_TOO_LARGE');
    expect(readFileCapped(f, 1000).length).toBe(1000);
  });

  it('a lock held by another process times out with FILE_LOCKED; a holder killed with SIGKILL leaves nothing to take over', async () => {
    const d = tempDir();
    const f = join(d, 'state.json');
    const root = fileURLToPath(new URL('../..', import.meta.url));
    // Another process holds the lock (the real addon, from the built package) until killed.
    const holder = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const { withFileLock } = await import(${JSON.stringify(join(root, 'dist/store/files.js'))});
         withFileLock(${JSON.stringify(f)}, () => { process.stdout.write('held\\n'); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60000); });`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((res) => holder.stdout.once('data', () => res()));
    expect(code(() => withFileLock(f, () => 1, 100))).toBe('FILE_LOCKED');
    // A pid file naming a dead process was taken over by read-then-delete before: the lock
    // file's content means nothing now, and the file stays.
    holder.kill('SIGKILL');
    await new Promise((res) => holder.once('exit', res));
    expect(existsSync(`${f}.lock`)).toBe(true);
    expect(withFileLock(f, () => 42, 1000)).toBe(42);
    // Nested use from the same process is a second open file description: refused, not granted.
    expect(withFileLock(f, () => code(() => withFileLock(f, () => 0, 50)), 1000)).toBe(
      'FILE_LOCKED',
    );
  });
});

describe('file lock under contention', () => {
  it('processes racing over a lock file left by a dead process never run the critical section at once', async () => {
    const root = fileURLToPath(new URL('../..', import.meta.url));
    const d = tempDir();
    const f = join(d, 'state.json');
    const counter = join(d, 'counter');
    // Each worker loads, then waits for a common start time, so all meet the stale lock at once.
    const worker = (
      startAt: number,
    ): string => `const { withFileLock } = await import(${JSON.stringify(join(root, 'dist/store/files.js'))});
      const fs = await import('node:fs');
      while (Date.now() < ${startAt});
      withFileLock(${JSON.stringify(f)}, () => {
        const n = Number(fs.readFileSync(${JSON.stringify(counter)}, 'utf8'));
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
        fs.writeFileSync(${JSON.stringify(counter)}, String(n + 1));
      }, 20000);`;
    for (let round = 0; round < 8; round++) {
      // What a crashed holder of the old pid-file lock left: a lock naming a dead process.
      writeFileSync(`${f}.lock`, '2147483646');
      writeFileSync(counter, '0');
      const startAt = Date.now() + 1500;
      const codes = await Promise.all(
        Array.from(
          { length: 6 },
          () =>
            new Promise<number>((res) =>
              spawn(process.execPath, ['--input-type=module', '-e', worker(startAt)], {
                stdio: 'ignore',
              }).on('exit', (c) => res(c ?? -1)),
            ),
        ),
      );
      expect(codes).toEqual([0, 0, 0, 0, 0, 0]);
      // Every increment survived: no two holders at once.
      expect(readFileSync(counter, 'utf8')).toBe('6');
    }
  });
});

describe('FileAcceptanceStore', () => {
  it('never moves an agent backwards and keeps the highest revocation serial', () => {
    const d = tempDir();
    const a = new FileAcceptanceStore(d);
    const b = new FileAcceptanceStore(d);
    a.accept('x', '2.0.0', 'sha256:a', new Date());
    b.accept('x', '1.0.0', 'sha256:b', new Date());
    a.acceptRevocationSerial(5, new Date());
    b.acceptRevocationSerial(3, new Date());
    const c = new FileAcceptanceStore(d);
    expect(c.lastAccepted('x')?.version).toBe('2.0.0');
    expect(c.revocationSerial()).toBe(5);
  });

  it('writes only what is newer: verifying an accepted version again leaves the file alone', () => {
    const d = tempDir();
    const a = new FileAcceptanceStore(d);
    const file = join(d, 'accepted.json');
    a.accept('x', '2.0.0', 'sha256:a', new Date());
    a.acceptRevocationSerial(5, new Date());
    // A write replaces the file (a fresh modification time); nothing newer, nothing written.
    // Nor is the lock taken (its file holds the holder's pid, written as it is taken).
    const lock = `${file}.lock`;
    const untouched = (): boolean => statSync(file).mtimeMs === 0 && statSync(lock).mtimeMs === 0;
    utimesSync(file, 0, 0);
    utimesSync(lock, 0, 0);
    a.accept('x', '2.0.0', 'sha256:a', new Date());
    a.accept('x', '1.0.0', 'sha256:b', new Date());
    a.acceptRevocationSerial(5, new Date());
    a.acceptRevocationSerial(4, new Date());
    expect(untouched()).toBe(true);
    a.accept('x', '2.0.1', 'sha256:c', new Date());
    expect(untouched()).toBe(false);
    expect(new FileAcceptanceStore(d).lastAccepted('x')).toMatchObject({ version: '2.0.1' });
    utimesSync(file, 0, 0);
    utimesSync(lock, 0, 0);
    a.acceptRevocationSerial(6, new Date());
    expect(untouched()).toBe(false);
    expect(new FileAcceptanceStore(d).revocationSerial()).toBe(6);
  });

  it('concurrent cordon processes verifying different agents all get recorded', async () => {
    const root = fileURLToPath(new URL('../..', import.meta.url));
    const bin = join(root, 'dist/cli/main.js');
    const home = tempDir();
    const env = { ...process.env, CORDON_HOME: join(home, 'c'), HOME: home };
    const sh = (args: string[]): Promise<number> =>
      new Promise((res) => {
        const p = spawn(process.execPath, [bin, ...args], { env, stdio: 'ignore' });
        p.on('exit', (c) => res(c ?? -1));
      });
    expect(await sh(['init'])).toBe(0);
    const names = Array.from({ length: 6 }, (_, i) => `agent-${i}`);
    for (const n of names) {
      expect(
        await sh([
          'manifest',
          'new',
          '--template',
          'developer',
          '--agent',
          n,
          '--out',
          join(home, `${n}.json`),
        ]),
      ).toBe(0);
      expect(
        await sh([
          'manifest',
          'sign',
          join(home, `${n}.json`),
          '--key',
          join(home, 'c/policy/keys/org.key'),
        ]),
      ).toBe(0);
    }
    const codes = await Promise.all(
      names.map((n) => sh(['manifest', 'verify', join(home, `${n}.signed.json`)])),
    );
    expect(codes).toEqual(names.map(() => 0));
    const state = JSON.parse(readFileSync(join(home, 'c/state/accepted.json'), 'utf8')) as {
      agents: Record<string, unknown>;
    };
    expect(Object.keys(state.agents).sort()).toEqual(names);
  }, 120_000);
});
