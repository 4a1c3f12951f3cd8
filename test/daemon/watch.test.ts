import {
  cpSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
  mkdirSync,
  type PathLike,
} from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  PolicyWatcher,
  type PolicyWatcherOptions,
  type WatchedSession,
} from '../../src/daemon/watch.js';
import { parseStrictJson } from '../../src/manifest/json.js';
import {
  signRevocationList,
  verifyRevocationList,
  type RevocationList,
} from '../../src/manifest/revocation.js';
import { signManifest } from '../../src/manifest/sign.js';
import { ManifestVerifier, MemoryAcceptanceStore } from '../../src/manifest/verify.js';
import { readPrivateKey, readRevocationBytes, readTrustStore } from '../../src/store/policy-dir.js';
import { cli } from '../cli/harness.js';
import { manifest, tempDir } from '../helpers.js';

// The watcher against a real policy directory made by `cordon init`, real signed manifests and
// the real verifier: revocations written by `cordon revoke` (atomic rename) and in place, a
// revoked or removed signing key, expiry, corrupt files, and many sessions at once.

interface Reported {
  id: string;
  code: string;
  reason: string;
  trigger: string;
}

let home: string;
let cordonHome: string;
let policyDir: string;
const watchers: PolicyWatcher[] = [];

const run = async (...args: string[]): Promise<void> => {
  const r = await cli(args, { home, cordonHome });
  expect(r.code, r.stderr).toBe(0);
};
const orgKeyFile = (): string => join(policyDir, 'keys', 'org.key');
const opsKeyFile = (): string => join(policyDir, 'keys', 'ops.key');

beforeEach(async () => {
  const dir = tempDir();
  home = join(dir, 'home');
  cordonHome = join(dir, 'cordon');
  mkdirSync(home);
  policyDir = join(cordonHome, 'policy');
  await run('init');
  // A second signer trusted for manifests only, so revoking or removing it leaves the
  // organisation key (which signs the revocation list) in place.
  await run('keys', 'generate', '--name', 'ops');
  await run(
    'keys',
    'trust',
    '--name',
    'ops',
    '--pub',
    join(policyDir, 'keys', 'ops.pub'),
    '--purpose',
    'manifest',
  );
});

afterEach(() => {
  for (const w of watchers.splice(0)) w.close();
});

/** A signed manifest (the envelope bytes), its digest and its notAfter. */
function signed(
  agentName: string,
  keyFile: string,
  notAfter = '2027-06-30T00:00:00Z',
): { bytes: Buffer; digest: string; notAfter: Date } {
  const r = signManifest(manifest({ agentName, notAfter }), readPrivateKey(keyFile), {
    home,
    now: new Date(),
  });
  return {
    bytes: Buffer.from(JSON.stringify(r.envelope)),
    digest: r.digest,
    notAfter: new Date(notAfter),
  };
}

/** What the daemon does: verify the in-force bytes against the policy directory as it is now. */
function reverify(s: WatchedSession): { ok: true } | { ok: false; code: string; reason: string } {
  const v = new ManifestVerifier({
    trust: readTrustStore(policyDir),
    revocationList: readRevocationBytes(policyDir),
    store: new MemoryAcceptanceStore(),
    lint: { home },
    record: false,
  });
  const r = v.verify(s.bytes);
  return r.ok ? { ok: true } : { ok: false, code: r.code ?? 'VERIFY_ERROR', reason: r.message };
}

function startWatcher(
  sessions: WatchedSession[],
  over: Partial<PolicyWatcherOptions> = {},
): { reported: Reported[]; checks: () => number; diagnostics: string[]; w: PolicyWatcher } {
  const reported: Reported[] = [];
  const diagnostics: string[] = [];
  let checks = 0;
  const w = new PolicyWatcher({
    policyDir,
    sessions: () => sessions,
    reverify: (s) => {
      checks++;
      return reverify(s);
    },
    onInvalid: (s, code, reason, trigger) => reported.push({ id: s.id, code, reason, trigger }),
    pollMs: 50,
    onDiagnostic: (m) => diagnostics.push(m),
    ...over,
  });
  watchers.push(w);
  w.start();
  return { reported, checks: () => checks, diagnostics, w };
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The current list, verified, changed and re-signed by the organisation key. */
function nextList(change: (l: RevocationList) => RevocationList): Buffer {
  const raw = readFileSync(join(policyDir, 'revocations.json'));
  const list = verifyRevocationList(raw, readTrustStore(policyDir), { now: new Date() }).list;
  const next = change(list);
  return Buffer.from(
    JSON.stringify(
      signRevocationList(
        { ...next, serial: list.serial + 1, issuedAt: new Date().toISOString() },
        readPrivateKey(orgKeyFile()),
      ),
      null,
      2,
    ) + '\n',
  );
}

/** Write in place: same inode, truncated and rewritten, the way `cp` or an editor may. */
function writeInPlace(file: string, data: Buffer | string): void {
  const ino = statSync(file).ino;
  writeFileSync(file, data);
  expect(statSync(file).ino).toBe(ino);
}

/** Write beside and rename over, the way `cordon revoke` and configuration tools do. */
function writeByRename(file: PathLike, data: Buffer | string): void {
  const tmp = `${String(file)}.new`;
  writeFileSync(tmp, data);
  renameSync(tmp, file);
}

const MODES = {
  'fs.watch and the poll': {},
  'the stat poll alone (fs.watch off)': { fsWatch: false },
  // The poll is set to an hour, so only fs.watch can see the change within the test.
  'fs.watch alone (poll every hour)': { pollMs: 3_600_000 },
} as const;

describe('PolicyWatcher', () => {
  for (const [mode, over] of Object.entries(MODES)) {
    it(`a manifest revoked by \`cordon revoke\` (atomic rename) cuts off exactly its sessions, once each — ${mode}`, async () => {
      const a = signed('agent-a', orgKeyFile());
      const b = signed('agent-b', orgKeyFile());
      const sessions = [
        { id: 'a1', bytes: a.bytes },
        { id: 'a2', bytes: a.bytes },
        { id: 'b1', bytes: b.bytes },
      ];
      const { reported, w } = startWatcher(sessions, over);
      // start() re-verified everything once, and everything holds.
      expect(reported).toEqual([]);
      const ino = statSync(join(policyDir, 'revocations.json')).ino;
      await run(
        'revoke',
        'manifest',
        a.digest,
        '--reason',
        'leaked in a ticket',
        '--key',
        orgKeyFile(),
      );
      expect(statSync(join(policyDir, 'revocations.json')).ino).not.toBe(ino);
      await until(() => reported.length >= 2, 5000, 'both sessions of the revoked manifest');
      expect(reported.map((r) => r.id).sort()).toEqual(['a1', 'a2']);
      for (const r of reported) {
        expect(r.code).toBe('MANIFEST_REVOKED');
        expect(r.reason).toContain('leaked in a ticket');
        expect(r.trigger).toMatch(/revocations\.json/);
      }
      // Later checks, polls and further revocations never report a session twice.
      await run('revoke', 'manifest', b.digest, '--reason', 'retired', '--key', orgKeyFile());
      await until(() => reported.length >= 3, 5000, 'the second revocation');
      w.check('manual');
      await sleep(200);
      expect(reported.map((r) => r.id).sort()).toEqual(['a1', 'a2', 'b1']);
    });

    it(`a revocation list rewritten in place (same inode) is seen — ${mode}`, async () => {
      const a = signed('agent-a', orgKeyFile());
      const b = signed('agent-b', orgKeyFile());
      const { reported } = startWatcher(
        [
          { id: 'a1', bytes: a.bytes },
          { id: 'b1', bytes: b.bytes },
        ],
        over,
      );
      const data = nextList((l) => ({
        ...l,
        manifests: [
          ...l.manifests,
          { digest: a.digest, reason: 'in place', revokedAt: new Date().toISOString() },
        ],
      }));
      writeInPlace(join(policyDir, 'revocations.json'), data);
      await until(() => reported.length >= 1, 5000, 'the revoked session');
      await sleep(150);
      expect(reported).toHaveLength(1);
      expect(reported[0]).toMatchObject({ id: 'a1', code: 'MANIFEST_REVOKED' });
    });
  }

  it('revoking the signing key cuts off every session it signed, and no other', async () => {
    const byOps = signed('ops-agent', opsKeyFile());
    const byOrg = signed('org-agent', orgKeyFile());
    const { reported } = startWatcher([
      { id: 'ops', bytes: byOps.bytes },
      { id: 'org', bytes: byOrg.bytes },
    ]);
    expect(reported).toEqual([]);
    await run('revoke', 'key', 'ops', '--reason', 'key on a shared drive', '--key', orgKeyFile());
    await until(() => reported.length >= 1, 5000, 'the session signed by the revoked key');
    await sleep(150);
    expect(reported).toHaveLength(1);
    expect(reported[0]).toMatchObject({ id: 'ops', code: 'KEY_REVOKED' });
    expect(reported[0]?.reason).toContain('key on a shared drive');
  });

  it('removing the signing key from the trust store cuts off its sessions (SIGNATURE_UNTRUSTED)', async () => {
    const byOps = signed('ops-agent', opsKeyFile());
    const byOrg = signed('org-agent', orgKeyFile());
    const { reported } = startWatcher([
      { id: 'ops', bytes: byOps.bytes },
      { id: 'org', bytes: byOrg.bytes },
    ]);
    const trustFile = join(policyDir, 'trust.json');
    const trust = parseStrictJson(readFileSync(trustFile)) as {
      keys: { name: string }[];
    };
    expect(trust.keys.map((k) => k.name)).toContain('ops');
    writeByRename(
      trustFile,
      JSON.stringify({ ...trust, keys: trust.keys.filter((k) => k.name !== 'ops') }, null, 2),
    );
    await until(() => reported.length >= 1, 5000, 'the session whose signer left the trust store');
    await sleep(150);
    expect(reported).toEqual([
      expect.objectContaining({
        id: 'ops',
        code: 'SIGNATURE_UNTRUSTED',
        trigger: 'policy-change: trust.json',
      }),
    ]);
  });

  it('a manifest that expires while its session runs is reported at its notAfter, by the timer', async () => {
    // A real notAfter just ahead: signed and verified while valid, expired a moment later.
    const soon = new Date(Date.now() + 1500).toISOString();
    const short = signed('short-lived', orgKeyFile(), soon);
    const long = signed('long-lived', orgKeyFile());
    const sessions = [
      { id: 'short', bytes: short.bytes, notAfter: short.notAfter },
      // Further ahead than setTimeout can wait (about 24.8 days): must not fire at once.
      { id: 'long', bytes: long.bytes, notAfter: long.notAfter },
    ];
    expect(long.notAfter.getTime() - Date.now()).toBeGreaterThan(2 ** 31);
    // The poll is slow here, so only the expiry timer can report within the wait.
    const { reported } = startWatcher(sessions, { pollMs: 3_600_000 });
    expect(reported).toEqual([]);
    expect(reverify(sessions[0]!)).toEqual({ ok: true });
    await until(() => reported.length >= 1, 5000, 'the expiry');
    expect(Date.now()).toBeGreaterThanOrEqual(short.notAfter.getTime());
    expect(reported).toEqual([
      expect.objectContaining({ id: 'short', code: 'MANIFEST_EXPIRED', trigger: 'expiry' }),
    ]);
    // The verifier agrees with the watcher's verdict.
    expect(reverify(sessions[0]!)).toMatchObject({ ok: false, code: 'MANIFEST_EXPIRED' });
    await sleep(200);
    expect(reported).toHaveLength(1);
  });

  it('a wall clock that jumps past notAfter (suspend, clock set) is caught by the poll, not only by the timer', async () => {
    const long = signed('long-lived', orgKeyFile());
    let skew = 0;
    const { reported } = startWatcher(
      [{ id: 'long', bytes: long.bytes, notAfter: long.notAfter }],
      { now: () => new Date(Date.now() + skew) },
    );
    await sleep(150);
    expect(reported).toEqual([]);
    skew = long.notAfter.getTime() - Date.now() + 1000;
    await until(() => reported.length >= 1, 5000, 'the expiry after the clock jump');
    expect(reported[0]).toMatchObject({ id: 'long', code: 'MANIFEST_EXPIRED', trigger: 'expiry' });
  });

  it('a session that appears after start gets its own expiry timer', async () => {
    const sessions: WatchedSession[] = [];
    const { reported } = startWatcher(sessions);
    const soon = signed('late', orgKeyFile(), new Date(Date.now() + 1200).toISOString());
    sessions.push({ id: 'late', bytes: soon.bytes, notAfter: soon.notAfter });
    await until(() => reported.length >= 1, 5000, 'the late session expiring');
    expect(reported[0]).toMatchObject({ id: 'late', code: 'MANIFEST_EXPIRED' });
  });

  for (const [mode, over] of Object.entries(MODES))
    it(`a policy directory replaced whole (a new copy renamed over it) is seen, and the new one is watched — ${mode}`, async () => {
      const a = signed('agent-a', orgKeyFile());
      const b = signed('agent-b', orgKeyFile());
      const { reported } = startWatcher(
        [
          { id: 'a1', bytes: a.bytes },
          { id: 'b1', bytes: b.bytes },
        ],
        over,
      );
      // The way configuration management swaps a directory: build a copy, then rename it in.
      const copy = `${policyDir}.new`;
      cpSync(policyDir, copy, { recursive: true });
      writeFileSync(
        join(copy, 'revocations.json'),
        nextList((l) => ({
          ...l,
          manifests: [
            ...l.manifests,
            { digest: a.digest, reason: 'swapped in', revokedAt: new Date().toISOString() },
          ],
        })),
      );
      renameSync(policyDir, `${policyDir}.old`);
      renameSync(copy, policyDir);
      await until(() => reported.length >= 1, 5000, 'the session revoked by the new directory');
      expect(reported[0]).toMatchObject({ id: 'a1', code: 'MANIFEST_REVOKED' });
      // A later change inside the new directory is seen too.
      await sleep(150);
      writeByRename(
        join(policyDir, 'revocations.json'),
        nextList((l) => ({
          ...l,
          manifests: [
            ...l.manifests,
            { digest: b.digest, reason: 'later', revokedAt: new Date().toISOString() },
          ],
        })),
      );
      await until(() => reported.length >= 2, 5000, 'the second session');
      expect(reported[1]).toMatchObject({ id: 'b1', code: 'MANIFEST_REVOKED' });
    });

  it('changes to unrelated files trigger no re-check; a change to a watched file does', async () => {
    const a = signed('agent-a', orgKeyFile());
    const { reported, checks } = startWatcher([{ id: 'a1', bytes: a.bytes }]);
    expect(checks()).toBe(1);
    writeInPlace(join(policyDir, 'groups.json'), '{"apiVersion":"cordon.dev/v1"}\n');
    writeByRename(join(policyDir, 'notes.txt'), 'hello\n');
    writeFileSync(join(policyDir, 'manifests', 'new.json'), '{}');
    writeFileSync(join(policyDir, 'keys', 'spare.pub'), 'not a key');
    writeFileSync(join(policyDir, 'guardrails', 'README.md'), 'edited\n');
    writeFileSync(
      join(policyDir, 'guardrails', 'examples', 'x.cedar'),
      'forbid(principal, action, resource);',
    );
    await sleep(400); // eight polls
    expect(checks()).toBe(1);
    expect(reported).toEqual([]);
    // The same bytes written again still count as a change (new inode): re-checked, still valid.
    writeByRename(join(policyDir, 'trust.json'), readFileSync(join(policyDir, 'trust.json')));
    await until(() => checks() >= 2, 5000, 'a re-check after trust.json changed');
    // A new guardrail file is a change too.
    writeFileSync(join(policyDir, 'guardrails', 'extra.cedar'), '// nothing yet\n');
    await until(() => checks() >= 3, 5000, 'a re-check after a guardrail appeared');
    await sleep(100);
    expect(reported).toEqual([]);
  });

  it('a corrupt revocation list cuts every session off (REVOCATION_LIST_INVALID), after a confirming second look', async () => {
    const a = signed('agent-a', orgKeyFile());
    const b = signed('agent-b', opsKeyFile());
    const { reported } = startWatcher([
      { id: 'a1', bytes: a.bytes },
      { id: 'b1', bytes: b.bytes },
    ]);
    writeByRename(join(policyDir, 'revocations.json'), '{"payloadType": "garbage"');
    await until(() => reported.length >= 2, 5000, 'both sessions cut off');
    for (const r of reported) {
      expect(r.code).toBe('REVOCATION_LIST_INVALID');
      expect(r.reason).toMatch(/revocation list/);
    }
  });

  it('a deleted revocation list cuts every session off (REVOCATION_LIST_MISSING)', async () => {
    const a = signed('agent-a', orgKeyFile());
    const { reported } = startWatcher([{ id: 'a1', bytes: a.bytes }]);
    renameSync(join(policyDir, 'revocations.json'), join(policyDir, 'revocations.json.bak'));
    await until(() => reported.length >= 1, 5000, 'the session cut off');
    expect(reported[0]).toMatchObject({ id: 'a1', code: 'REVOCATION_LIST_MISSING' });
  });

  it('a re-check that throws (trust store unreadable) fails closed with POLICY_RECHECK_FAILED', async () => {
    const a = signed('agent-a', orgKeyFile());
    const { reported } = startWatcher([{ id: 'a1', bytes: a.bytes }]);
    writeInPlace(join(policyDir, 'trust.json'), '{"keys": [');
    await until(() => reported.length >= 1, 5000, 'the session cut off');
    expect(reported[0]).toMatchObject({ id: 'a1', code: 'POLICY_RECHECK_FAILED' });
    expect(reported[0]?.reason).toContain(join(policyDir, 'trust.json'));
    expect(reported[0]?.reason).toContain('TRUST_STORE_INVALID');
  });

  it('a policy file caught half-written and complete a moment later cuts nobody off', async () => {
    const a = signed('agent-a', orgKeyFile());
    const { reported, diagnostics, w } = startWatcher([{ id: 'a1', bytes: a.bytes }], {
      fsWatch: false,
      pollMs: 3_600_000,
    });
    const file = join(policyDir, 'revocations.json');
    const good = readFileSync(file);
    // The torn state is read by a check; the writer finishes before the confirming look.
    writeInPlace(file, good.subarray(0, 40));
    w.check('manual');
    writeInPlace(file, good);
    await sleep(400);
    expect(reported).toEqual([]);
    expect(diagnostics.join('\n')).toMatch(/passed a moment later/);
    // A torn file that stays torn is reported.
    writeInPlace(file, good.subarray(0, 40));
    w.check('manual');
    await until(() => reported.length >= 1, 5000, 'the session cut off');
    expect(reported[0]).toMatchObject({ id: 'a1', code: 'REVOCATION_LIST_INVALID' });
  });

  it('50 sessions at once: a key revocation cuts off exactly the 25 it signed, each once; then the rest', async () => {
    const sessions: WatchedSession[] = [];
    const digests: string[] = [];
    for (let i = 0; i < 50; i++) {
      const m = signed(`agent-${i}`, i % 2 === 0 ? opsKeyFile() : orgKeyFile());
      sessions.push({ id: `s${i}`, bytes: m.bytes, notAfter: m.notAfter });
      digests.push(m.digest);
    }
    const { reported } = startWatcher(sessions);
    expect(reported).toEqual([]);
    await run('revoke', 'key', 'ops', '--reason', 'compromised', '--key', orgKeyFile());
    await until(() => reported.length >= 25, 5000, '25 sessions');
    await sleep(200);
    expect(reported).toHaveLength(25);
    expect(new Set(reported.map((r) => r.id)).size).toBe(25);
    expect(reported.every((r) => r.code === 'KEY_REVOKED' && Number(r.id.slice(1)) % 2 === 0)).toBe(
      true,
    );
    // Every manifest of the organisation key revoked in one list: the other 25.
    const data = nextList((l) => ({
      ...l,
      manifests: [
        ...l.manifests,
        ...digests
          .filter((_, i) => i % 2 === 1)
          .map((digest) => ({
            digest,
            reason: 'all at once',
            revokedAt: new Date().toISOString(),
          })),
      ],
    }));
    writeByRename(join(policyDir, 'revocations.json'), data);
    await until(() => reported.length >= 50, 5000, 'all 50 sessions');
    await sleep(200);
    expect(reported).toHaveLength(50);
    expect(new Set(reported.map((r) => r.id)).size).toBe(50);
  });

  it('an onInvalid that throws is reported as a diagnostic and never retried for that session', async () => {
    const a = signed('agent-a', orgKeyFile());
    const calls: string[] = [];
    const diagnostics: string[] = [];
    const w = new PolicyWatcher({
      policyDir,
      sessions: () => [{ id: 'a1', bytes: a.bytes }],
      reverify,
      onInvalid: (s) => {
        calls.push(s.id);
        throw new Error('proxy gone');
      },
      pollMs: 50,
      onDiagnostic: (m) => diagnostics.push(m),
    });
    watchers.push(w);
    w.start();
    await run('revoke', 'manifest', a.digest, '--reason', 'x', '--key', orgKeyFile());
    await until(() => calls.length >= 1, 5000, 'the report');
    w.check('manual');
    await sleep(200);
    expect(calls).toEqual(['a1']);
    expect(diagnostics.join('\n')).toMatch(
      /cutting off session a1 \(MANIFEST_REVOKED\) failed: proxy gone/,
    );
  });

  it('after close() nothing is reported', async () => {
    const a = signed('agent-a', orgKeyFile());
    const soon = signed('soon', orgKeyFile(), new Date(Date.now() + 300).toISOString());
    const { reported, w } = startWatcher([
      { id: 'a1', bytes: a.bytes },
      { id: 'soon', bytes: soon.bytes, notAfter: soon.notAfter },
    ]);
    w.close();
    await run('revoke', 'manifest', a.digest, '--reason', 'x', '--key', orgKeyFile());
    w.check('manual');
    await sleep(600);
    expect(reported).toEqual([]);
  });
});
