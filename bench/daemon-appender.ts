// One of the concurrent clients of the audit-append benchmark: opens a session at the endpoint
// service, says `ready`, and on `go` (stdin) appends COUNT events through ClientSession (the
// batching client `cordon run` uses), then says `done` once every one is acknowledged durable.
// `node daemon-appender.js SOCKET MANIFEST HOME COUNT`
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileActivityEvent } from '../src/audit/events.js';
import { DaemonClient } from '../src/daemon/client.js';
import { ClientSession, clientContext } from '../src/daemon/client-session.js';
import { OpenSessionResponseSchema } from '../src/protocol/daemon.js';

const [socket = '', manifest = '', home = '', countArg = '0'] = process.argv.slice(2);
const count = Number(countArg);
const client = new DaemonClient({ socket, via: 'CORDON_SOCKET' });
const opened = await client.request(
  'POST',
  '/v1/sessions',
  {
    manifest: readFileSync(manifest).toString('base64'),
    manifestPath: manifest,
    command: ['/usr/bin/true'],
    cwd: '/',
    home,
  },
  OpenSessionResponseSchema,
);
const session = new ClientSession(client, opened, () => undefined);
const ctx = clientContext();
// Built beforehand, as a client's events exist before they are sent.
const events = Array.from({ length: count }, (_, i) =>
  fileActivityEvent(
    { ...ctx, time: Date.now() },
    { activity: 'read', path: `/w/src/file-${i}.ts` },
  ),
);
process.stdout.write('ready\n');
await new Promise<void>((resolve) =>
  createInterface({ input: process.stdin }).once('line', () => resolve()),
);
// Up to 4,096 appends in flight: the client's batches of 256 follow each other without a gap.
const WINDOW = 4096;
let next = 0;
let failed = 0;
await new Promise<void>((resolve) => {
  let inFlight = 0;
  const pump = (): void => {
    while (inFlight < WINDOW && next < count) {
      inFlight++;
      session.append(events[next++] as (typeof events)[number]).then(
        () => {
          inFlight--;
          if (next === count && inFlight === 0) resolve();
          else pump();
        },
        () => {
          failed++;
          inFlight--;
          if (next === count && inFlight === 0) resolve();
        },
      );
    }
  };
  pump();
});
process.stdout.write(`done ${failed}\n`);
await session.close(0);
process.exit(0);
