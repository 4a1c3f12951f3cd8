// Writes an N-record audit log through the real append path, then verifies it in a fresh
// process while sampling RSS at every tenth: verification streams, so its memory must stay flat
// however long the log is.
//   node audit-big.js N                 write N records, verify in a child, print the figures
//   node audit-big.js verify DIR VKEY N (the child)
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileActivityEvent, type EventContext } from '../src/audit/events.js';
import { AuditLog } from '../src/audit/log.js';
import { parseVerifierKey, verifierKey } from '../src/audit/note.js';
import { verifyLog } from '../src/audit/verify.js';
import { appendPipelined } from './pipeline.js';

const origin = 'cordon.audit/laptop-42/0d2e3f4a5b6c7d8e';

async function verifyChild(dir: string, vkey: string, n: number): Promise<void> {
  const rssMb: number[] = [];
  const heapMb: number[] = [];
  const start = process.hrtime.bigint();
  const report = await verifyLog(dir, {
    verifiers: [parseVerifierKey(vkey)],
    onProgressEvery: Math.max(1, Math.floor(n / 10)),
    onProgress: () => {
      rssMb.push(process.memoryUsage.rss() / 1024 / 1024);
      heapMb.push(process.memoryUsage().heapUsed / 1024 / 1024);
    },
  });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  process.stdout.write(
    JSON.stringify({ records: report.records, seconds, rssMb, heapMb, ok: report.ok }),
  );
}

async function writeAndVerify(n: number): Promise<void> {
  const ctx: EventContext = {
    productVersion: '0.1.0',
    device: { hostname: 'laptop-42', uid: '0d2e3f4a5b6c7d8e' },
    actor: { name: 'cowork-finance', pid: 4242 },
  };
  const deviceKey = generateKeyPairSync('ed25519').privateKey;
  const dir = mkdtempSync(join(tmpdir(), 'cordon-bench-big-'));
  try {
    const writeStart = process.hrtime.bigint();
    const log = AuditLog.open({
      stateDir: dir,
      deviceKey,
      origin,
      context: ctx,
      checkpointEvery: 10_000,
    });
    // A pool of small realistic events, appended with many in flight: writing the log is not
    // what this measures, so it is made as quick as the real append path allows.
    const pool = Array.from({ length: 1024 }, (_, i) =>
      fileActivityEvent(
        { ...ctx, time: 1_790_000_000_000 + i },
        {
          activity: 'read',
          path: `/home/alice/Work/Reports/${i}.csv`,
          control: {
            decision: { effect: 'allow', reason: 'granted', rule: '/readPaths/0', code: 'ALLOWED' },
          },
        },
      ),
    );
    await appendPipelined(log, pool, n, 2048, 8);
    await log.close();
    const writeSeconds = Number(process.hrtime.bigint() - writeStart) / 1e9;
    const out = execFileSync(
      process.execPath,
      [process.argv[1] ?? '', 'verify', dir, verifierKey(origin, deviceKey), String(n)],
      { encoding: 'utf8' },
    );
    process.stdout.write(JSON.stringify({ ...(JSON.parse(out) as object), writeSeconds }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === 'verify') {
  await verifyChild(process.argv[3] ?? '', process.argv[4] ?? '', Number(process.argv[5]));
} else {
  await writeAndVerify(Number(process.argv[2] ?? '10000000'));
}
