// Time to revoke: from a signed revocation list that revokes a running session's manifest being
// in place (written the way `cordon revoke` writes it: beside, fsync, rename) to the policy
// watcher reporting that session. 50 sessions run; each trial revokes one more of them. The
// baseline is the stat poll interval: the worst case when fs.watch misses the change.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { PolicyWatcher, type WatchedSession } from '../src/daemon/watch.js';
import { signManifest } from '../src/manifest/sign.js';
import { instantiateTemplate } from '../src/manifest/templates.js';
import { ManifestVerifier, MemoryAcceptanceStore } from '../src/manifest/verify.js';
import {
  initAdminPolicyDir,
  readPrivateKey,
  readRevocationBytes,
  readTrustStore,
  updateRevocationList,
} from '../src/store/policy-dir.js';

export interface RevokeBench {
  lines: string[];
  checks: [string, boolean][];
}

const POLL_MS = 250;
const HOME = '/home/bench';

const quantile = (xs: readonly number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] ?? NaN;
};

async function trialsOf(trials: number, fsWatch: boolean): Promise<number[]> {
  const dir = mkdtempSync(join(tmpdir(), 'cordon-bench-revoke-'));
  try {
    const now = new Date();
    initAdminPolicyDir(dir, now);
    const org = readPrivateKey(join(dir, 'keys', 'org.key'));
    const sessions: WatchedSession[] = [];
    const digests: string[] = [];
    for (let i = 0; i < trials; i++) {
      const r = signManifest(
        instantiateTemplate({ template: 'developer', agentName: `bench-${i}`, now }),
        org,
        { home: HOME, now },
      );
      sessions.push({
        id: `s${i}`,
        bytes: Buffer.from(JSON.stringify(r.envelope)),
        notAfter: new Date(r.manifest.notAfter),
      });
      digests.push(r.digest);
    }
    const reportedAt = new Map<string, number>();
    const w = new PolicyWatcher({
      policyDir: dir,
      sessions: () => sessions,
      reverify: (s) => {
        const r = new ManifestVerifier({
          trust: readTrustStore(dir),
          revocationList: readRevocationBytes(dir),
          store: new MemoryAcceptanceStore(),
          lint: { home: HOME },
          record: false,
        }).verify(s.bytes);
        return r.ok
          ? { ok: true }
          : { ok: false, code: r.code ?? 'VERIFY_ERROR', reason: r.message };
      },
      onInvalid: (s) => reportedAt.set(s.id, performance.now()),
      pollMs: POLL_MS,
      fsWatch,
    });
    w.start();
    const out: number[] = [];
    try {
      for (let i = 0; i < trials; i++) {
        const digest = digests[i] as string;
        updateRevocationList(dir, org, new Date(), (l) => ({
          ...l,
          manifests: [...l.manifests, { digest, reason: 'bench', revokedAt: now.toISOString() }],
        }));
        const written = performance.now();
        const id = `s${i}`;
        const deadline = written + 5000;
        while (!reportedAt.has(id) && performance.now() < deadline)
          await new Promise((r) => setTimeout(r, 1));
        out.push((reportedAt.get(id) ?? Infinity) - written);
        // Let the poll phase drift against the writes, as real revocations do.
        await new Promise((r) => setTimeout(r, Math.random() * POLL_MS));
      }
    } finally {
      w.close();
    }
    if (reportedAt.size !== trials)
      throw new Error(`revoke bench: ${reportedAt.size} of ${trials} sessions reported`);
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchRevokeLatency(trials = 50): Promise<RevokeBench> {
  const both = await trialsOf(trials, true);
  const pollOnly = await trialsOf(trials, false);
  const ms = (x: number): string => `${x.toFixed(1)} ms`;
  const p99 = quantile(both, 0.99);
  const pollP99 = quantile(pollOnly, 0.99);
  return {
    lines: [
      `time to revoke — revocation list in place (written like \`cordon revoke\`) to the session reported, ${trials} sessions, ${trials} trials`,
      `  fs.watch + ${POLL_MS} ms poll   p50 ${ms(quantile(both, 0.5))}   p99 ${ms(p99)}   max ${ms(Math.max(...both))}`,
      `  ${POLL_MS} ms poll alone       p50 ${ms(quantile(pollOnly, 0.5))}   p99 ${ms(pollP99)}   max ${ms(Math.max(...pollOnly))}`,
      `  baseline: the poll interval, ${POLL_MS} ms`,
    ],
    checks: [
      [`time to revoke p99 ${ms(p99)} <= 1000 ms`, p99 <= 1000],
      [
        `time to revoke with fs.watch missing every change: p99 ${ms(pollP99)} <= 1000 ms`,
        pollP99 <= 1000,
      ],
    ],
  };
}
