import { describe, expect, it } from 'vitest';
import { validateManifest } from '../../src/manifest/parse.js';
import { resolveManifest } from '../../src/manifest/resolve.js';
import { manifest } from '../helpers.js';

describe('resolveManifest', () => {
  it('expands ~ per user, folds write paths into read paths, and keeps both forms of each command', () => {
    const r = validateManifest(
      manifest({ commandsAllowed: ['/usr/bin/python3', '/usr/bin/gone'] }),
    );
    if (!r.ok) throw new Error('invalid');
    const links: Record<string, string> = { '/usr/bin/python3': '/usr/bin/python3.11' };
    const res = resolveManifest(r.manifest, '/home/bob', (p) => links[p]);
    expect(res.readPaths).toEqual([
      '/home/bob/Work/Reports/**',
      '/home/bob/Work/Reports/outgoing/**',
    ]);
    expect(res.writePaths).toEqual(['/home/bob/Work/Reports/outgoing/**']);
    expect(res.commands).toEqual([
      { declared: '/usr/bin/python3', resolved: '/usr/bin/python3.11' },
      { declared: '/usr/bin/gone', resolved: undefined },
    ]);
  });
});
