import { spawn } from 'node:child_process';
import { chmodSync, closeSync, existsSync, openSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { peerOf, type Peer } from '../../src/daemon/peer.js';
import { CordonError } from '../../src/errors.js';
import { peerCredentials } from '../../src/native.js';
import { errorCode, tempDir } from '../helpers.js';

// A client is a separate process: it prints its own pid, sends a body that claims to be root
// (uid 0, pid 1) and waits for the server to close the connection.
const CLIENT = `
const s = require('node:net').connect(process.argv[1], () => {
  process.stdout.write(String(process.pid) + '\\n');
  s.end(JSON.stringify({ uid: 0, gid: 0, pid: 1, user: 'root' }));
});
s.on('error', (e) => { console.error(e.message); process.exit(2); });
s.resume();
`;

interface Seen {
  peer: Peer | CordonError;
  body: string;
}

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/** A Unix-socket server any local user can connect to, recording each caller's identity. */
async function listen(): Promise<{
  path: string;
  seen: Map<number, Seen>;
  next: () => Promise<Seen>;
}> {
  const dir = tempDir();
  chmodSync(dir, 0o755);
  const path = join(dir, 'daemon.sock');
  const seen = new Map<number, Seen>();
  const waiting: ((s: Seen) => void)[] = [];
  const queued: Seen[] = [];
  const server = createServer((socket: Socket) => {
    let peer: Peer | CordonError;
    try {
      peer = peerOf(socket);
    } catch (e) {
      peer = e as CordonError;
    }
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => {
      const s = { peer, body: Buffer.concat(chunks).toString('utf8') };
      if (!(peer instanceof CordonError)) seen.set(peer.pid, s);
      const w = waiting.shift();
      if (w !== undefined) w(s);
      else queued.push(s);
      socket.end();
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(path, r));
  // connect(2) on a Unix socket needs write permission on the socket file.
  chmodSync(path, 0o777);
  const next = (): Promise<Seen> => {
    const q = queued.shift();
    return q !== undefined ? Promise.resolve(q) : new Promise((r) => waiting.push(r));
  };
  return { path, seen, next };
}

/** Run the client as `prefix` (e.g. setpriv ...) and return the pid it printed. */
function client(prefix: string[], socket: string): Promise<number> {
  const argv = [...prefix, process.execPath, '-e', CLIENT, socket];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(Number(out.trim().split('\n')[0]));
      else reject(new Error(`client ${argv.join(' ')} exited ${code}: ${err}`));
    });
  });
}

const asUser = (uid: number): string[] => [
  'setpriv',
  `--reuid=${uid}`,
  `--regid=${uid}`,
  '--clear-groups',
  '--',
];

function rootPrecondition(): void {
  // Separate processes under other uids need root to start; CI runs as root.
  expect(process.getuid?.(), 'these tests start clients as other users and need root').toBe(0);
  expect(existsSync('/usr/bin/setpriv'), 'setpriv (util-linux) starts the clients').toBe(true);
}

describe('peerOf: the caller is who the kernel says', () => {
  it('sees exactly the uid, gid and pid of each client process: root, nobody and an unnamed uid', async () => {
    rootPrecondition();
    const { path, seen } = await listen();
    const cases: [string[], number][] = [
      [[], 0],
      [asUser(65534), 65534],
      // A uid with no passwd entry is still an identity.
      [asUser(60123), 60123],
    ];
    const pids = await Promise.all(cases.map(([prefix]) => client(prefix, path)));
    for (const [i, [, uid]] of cases.entries()) {
      const pid = pids[i]!;
      expect(pid).toBeGreaterThan(1);
      expect(pid).not.toBe(process.pid);
      const s = seen.get(pid);
      expect(s, `no connection seen from pid ${pid}`).toBeDefined();
      expect(s!.peer).toEqual({ pid, uid, gid: uid });
    }
    expect(seen.size).toBe(3);
  });

  it('ignores what the body claims: a client as uid 65534 saying it is root is still 65534', async () => {
    rootPrecondition();
    const { path, next } = await listen();
    const pid = await client(asUser(65534), path);
    const s = await next();
    expect(JSON.parse(s.body)).toMatchObject({ uid: 0, pid: 1 });
    expect(s.peer).toEqual({ pid, uid: 65534, gid: 65534 });
  });

  it('a client in a pid namespace of its own, calling itself pid 1, is seen by its real pid', async () => {
    rootPrecondition();
    const { path, next } = await listen();
    const inner = await client(
      ['unshare', '--pid', '--fork', '--kill-child', ...asUser(65534)],
      path,
    );
    expect(inner).toBe(1);
    const s = await next();
    const peer = s.peer as Peer;
    expect(peer.uid).toBe(65534);
    // The daemon's view: a pid in its own namespace, never the 1 the client sees itself as.
    expect(peer.pid).toBeGreaterThan(1);
  });

  it('a caller that connects and exits at once is still identified', async () => {
    const { path, next } = await listen();
    const c = connect(path);
    await new Promise<void>((r) => c.on('connect', r));
    c.destroy();
    const s = await next();
    expect(s.peer).toEqual({ pid: process.pid, uid: process.getuid?.(), gid: process.getgid?.() });
  });
});

describe('peerOf fails closed', () => {
  it('a TCP connection has no peer credentials: PEER_UNKNOWN, not the overflow uid', async () => {
    const server = createServer();
    servers.push(server);
    const accepted = new Promise<Socket>((r) => server.on('connection', r));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as { port: number };
    const c = connect(port, '127.0.0.1');
    const s = await accepted;
    let err: unknown;
    try {
      peerOf(s);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CordonError);
    expect((err as CordonError).code).toBe('PEER_UNKNOWN');
    expect(((err as CordonError).cause as { code: string }).code).toBe('EAFNOSUPPORT');
    c.destroy();
    s.destroy();
  });

  it('a socket already closed has no descriptor: PEER_UNKNOWN', async () => {
    const { path } = await listen();
    const c = connect(path);
    await new Promise<void>((r) => c.on('connect', r));
    c.destroy();
    await new Promise<void>((r) => c.on('close', () => r()));
    expect(errorCode(() => peerOf(c))).toBe('PEER_UNKNOWN');
  });
});

describe('peerCredentials (native)', () => {
  const code = (fn: () => unknown): string => {
    try {
      fn();
      return 'OK';
    } catch (e) {
      return (e as { code: string }).code;
    }
  };

  it('refuses a descriptor that is not a socket, a closed one and a negative one', () => {
    const fd = openSync(fileURLToPath(import.meta.url), 'r');
    try {
      expect(code(() => peerCredentials(fd))).toBe('ENOTSOCK');
    } finally {
      closeSync(fd);
    }
    expect(code(() => peerCredentials(fd))).toBe('EBADF');
    expect(code(() => peerCredentials(-1))).toBe('EINVAL');
  });

  it('refuses a listening socket: its creator is nobody’s peer', async () => {
    const { path } = await listen();
    const server = servers.at(-1)!;
    const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
    expect(path).toBeTruthy();
    expect(code(() => peerCredentials(fd))).toBe('ENOTCONN');
  });
});
