// A fresh process that asks the endpoint service for one decision and exits: what an agent's
// hook does once per tool call. It loads only the thin client (no policy, Cedar, proxy or
// zod classic). `node daemon-hook.js SOCKET SESSION CAPABILITY REQUEST_JSON`
import { DaemonClient } from '../src/daemon/client.js';
import { DecideResponseSchema } from '../src/protocol/daemon.js';

const [socket = '', session = '', capability = '', request = '{}'] = process.argv.slice(2);
const client = new DaemonClient({ socket, via: 'CORDON_SOCKET' });
const r = await client.request(
  'POST',
  `/v1/sessions/${session}/decide`,
  { requests: [JSON.parse(request) as unknown] },
  DecideResponseSchema,
  { capability },
);
process.stdout.write(`${r.decisions[0]?.effect ?? 'none'}\n`);
