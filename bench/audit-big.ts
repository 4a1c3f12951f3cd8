// Writes an N-record audit log through the real append path, then verifies it while sampling
// RSS at every tenth: verification must stream, so memory stays flat however long the log is.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileActivityEvent, type EventContext } from '../src/audit/events.js';
import { AuditLog } from '../src/audit/log.js';
import { parseVerifierKey, verifierKey } from '../src/audit/note.js';
import { verifyLog } from '../src/audit/verify.js';

const n = Number(process.argv[2] ?? '10000000');
const ctx: EventContext = {
  productVersion: '0.1.0',
  device: { hostname: 'laptop-42', uid: '0d2e3f4a5b6c7d8e' },
  actor: { name: 'cowork-finance', pid: 4242 },
};
const origin = 'cordon.audit/laptop-42/0d2e3f4a5b6c7d8e';
const deviceKey = generateKeyPairSync('ed25519').privateKey;
const dir = mkdtempSync(join(tmpdir(), 'cordon-bench-big-'));
try {
  const log = AuditLog.open({
    stateDir: dir,
    deviceKey,
    origin,
    context: ctx,
    checkpointEvery: 10_000,
  });
  for (let i = 0; i < n;) {
    const window: Promise<unknown>[] = [];
    for (const end = Math.min(n, i + 8192); i < end; i++) {
      window.push(
        log.append(
          fileActivityEvent(
            { ...ctx, time: 1_790_000_000_000 + i },
            {
              activity: 'read',
              path: `/home/alice/Work/Reports/${i % 977}.csv`,
              control: {
                decision: {
                  effect: 'allow',
                  reason: 'granted',
                  rule: '/readPaths/0',
                  code: 'ALLOWED',
                },
              },
            },
          ),
        ),
      );
    }
    await Promise.all(window);
  }
  await log.close();
  global.gc?.();
  const rssMb: number[] = [];
  const step = Math.max(1, Math.floor(n / 10));
  const start = process.hrtime.bigint();
  const report = await verifyLog(dir, {
    verifiers: [parseVerifierKey(verifierKey(origin, deviceKey))],
    onProgressEvery: step,
    onProgress: () => rssMb.push(process.memoryUsage.rss() / 1024 / 1024),
  });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  process.stdout.write(JSON.stringify({ records: report.records, seconds, rssMb, ok: report.ok }));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
