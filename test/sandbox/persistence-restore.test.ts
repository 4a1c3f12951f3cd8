import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeNoFollow } from '../../src/sandbox/persistence.js';

// The guard puts launch-time files back while another sandboxed session may still be running
// on the same tree: that session can plant a link where the file is about to be restored
// (a race a red team won against copyFileSync + chmodSync, overwriting ~/.bashrc with mode
// 0755). The restore primitive must never write or chmod through a link.
const dir = mkdtempSync(join(tmpdir(), 'cordon-restore-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the persistence guard writes files back without following links', () => {
  it('replaces a link planted at the path instead of writing through it', () => {
    const victim = join(dir, 'bashrc');
    writeFileSync(victim, '# the user’s bashrc\n', { mode: 0o644 });
    const hooks = join(dir, 'repo/.git/hooks');
    mkdirSync(hooks, { recursive: true });
    const hook = join(hooks, 'pre-commit');
    symlinkSync(victim, hook);
    writeNoFollow(hook, '#!/bin/sh\necho launch-time hook\n', 0o755);
    expect(readFileSync(victim, 'utf8')).toBe('# the user’s bashrc\n');
    expect(lstatSync(victim).mode & 0o777).toBe(0o644);
    const st = lstatSync(hook);
    expect(st.isFile()).toBe(true);
    expect(st.mode & 0o777).toBe(0o755);
    expect(readFileSync(hook, 'utf8')).toBe('#!/bin/sh\necho launch-time hook\n');
    // No temporary file is left beside it.
    expect(readdirSync(hooks)).toEqual(['pre-commit']);
  });

  it('refuses when a directory on the way was swapped for a link, and writes nothing there', () => {
    const home = join(dir, 'home');
    mkdirSync(home);
    const repo = join(dir, 'repo2');
    mkdirSync(repo);
    // `.git` is now a link into the user's home: a restore of .git/config would land in ~/config.
    symlinkSync(home, join(repo, '.git'));
    expect(() => writeNoFollow(join(repo, '.git/config'), '[core]\n', 0o644)).toThrow(
      /symbolic link/,
    );
    expect(readdirSync(home)).toEqual([]);
  });
});
