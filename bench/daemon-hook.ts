// A fresh process that asks the endpoint service for one decision and exits: what an agent's
// hook does once per tool call. It loads only the client transport (src/daemon/wire-client.ts:
// node:net and the frame format; no zod, policy, Cedar or proxy) and checks the answer by hand.
// `node daemon-hook.js SOCKET SESSION CAPABILITY REQUEST_JSON`
import { DaemonClient } from '../src/daemon/wire-client.js';
import { decideAnswer } from '../src/protocol/answers.js';
import { parseStrictJson } from '../src/manifest/json.js';

const [socket = '', session = '', capability = '', request = '{}'] = process.argv.slice(2);
const client = new DaemonClient({ socket, via: 'CORDON_SOCKET' });
// No top-level await: the bundle is CommonJS, which Node starts faster than an ES module.
client
  .request(
    'POST',
    `/v1/sessions/${session}/decide`,
    { requests: [parseStrictJson(request)] },
    decideAnswer,
    { capability },
  )
  .then(
    (r) => process.stdout.write(`${r.decisions[0]?.effect ?? 'none'}\n`),
    (e: unknown) => {
      process.stderr.write(`${(e as Error).message}\n`);
      process.exitCode = 1;
    },
  );
