import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
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

  it('a lock held by a live process times out with FILE_LOCKED; a dead holder is taken over', () => {
    const d = tempDir();
    const f = join(d, 'state.json');
    writeFileSync(`${f}.lock`, String(process.pid));
    expect(code(() => withFileLock(f, () => 1, 100))).toBe('FILE_LOCKED');
    writeFileSync(`${f}.lock`, '2147483646');
    expect(withFileLock(f, () => 42, 100)).toBe(42);
    expect(existsSync(`${f}.lock`)).toBe(false);
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
