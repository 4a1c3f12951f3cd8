import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, ROOT, runningSession, sandboxEnv, startAgent, type SandboxEnv } from './harness.js';

// Descriptors held by whoever starts `cordon run` (a shell's `exec 7<file`, a connected
// socket) must reach neither bubblewrap nor the agent: an open file passes Landlock and a
// connected socket passes the network namespace.
let s: SandboxEnv;
let manifest: string;
let secret: string;
let server: net.Server;
let port: number;
const conns = new Set<net.Socket>();
const received: string[] = [];
const SECRET = 'ssh-ed25519 PRIVATE secret material outside every grant';

beforeAll(async () => {
  s = sandboxEnv('fds');
  mkdirSync(join(s.home, 'Work/out'), { recursive: true });
  const outside = join(s.dir, 'outside');
  mkdirSync(outside);
  secret = join(outside, 'id_ed25519');
  writeFileSync(secret, SECRET);
  server = net.createServer((c) => {
    conns.add(c);
    c.on('data', (d: Buffer) => received.push(d.toString()));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as net.AddressInfo).port;
  manifest = s.sign({
    readPaths: ['~/Work/**'],
    writePaths: ['~/Work/out/**'],
    commandsAllowed: ['/usr/bin/bash', '/usr/bin/cat', '/usr/bin/ls', '/usr/bin/sleep'],
  });
});
afterAll(async () => {
  for (const c of conns) c.destroy();
  await new Promise((r) => server.close(r));
  rmSync(s.dir, { recursive: true, force: true });
});

/** Open descriptors of a process, by number (as root or as its owner). */
function fdsOf(pid: number): number[] {
  return readdirSync(`/proc/${pid}/fd`)
    .map(Number)
    .sort((a, b) => a - b);
}

function parentOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

describe('cordon run: inherited descriptors', () => {
  it('an open secret and a connected socket held by the caller reach neither bubblewrap nor the agent', async () => {
    const marker = join(s.home, 'Work/out/fds');
    const agent = [
      `ls /proc/self/fd > ${marker}.list`,
      `cat <&20 >> ${marker}.result 2>/dev/null; echo read20=$? >> ${marker}.result`,
      `echo exfiltrated >&40 2>/dev/null; echo write40=$? >> ${marker}.result`,
      `cat /proc/self/fdinfo/20 >/dev/null 2>&1; echo fdinfo20=$? >> ${marker}.result`,
      `echo ready > ${marker}.ready`,
      'sleep 30',
    ].join('; ');
    // The caller: a shell holding fd 20 (the key) and fd 40 (a connected TCP socket), not
    // close-on-exec, as `exec 20<file` leaves them. (Node itself happens to close low ones.)
    const caller = `exec 20<'${secret}' 40<>/dev/tcp/127.0.0.1/${port}; exec node '${BIN}' run --manifest '${manifest}' -- bash -c '${agent}'`;
    const child = spawn('bash', ['-c', caller], { env: s.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const closed = new Promise<number | null>((r) => child.on('close', (c) => r(c)));
    const end = Date.now() + 20_000;
    const ready = (): boolean => {
      try {
        return readFileSync(`${marker}.ready`, 'utf8') === 'ready\n';
      } catch {
        return false;
      }
    };
    while (!ready()) {
      if (Date.now() > end || child.exitCode !== null) throw new Error(`agent never ran: ${err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    // The caller itself does hold both (the precondition of the attack).
    const cordonPid = child.pid ?? 0;
    expect(readlinkSync(`/proc/${cordonPid}/fd/20`)).toBe(secret);
    expect(readlinkSync(`/proc/${cordonPid}/fd/40`)).toMatch(/^socket:/);
    // The endpoint service's session names the sandbox's pid 1; its parent is bubblewrap.
    const session = await runningSession(s.env);
    expect(session.clientPid).toBe(cordonPid);
    const record = { sandboxPid: session.sandboxPid ?? 0 };
    const bwrap = parentOf(record.sandboxPid);
    expect(readFileSync(`/proc/${bwrap}/comm`, 'utf8').trim()).toBe('bwrap');
    // Neither bubblewrap (outside) nor the sandbox's init holds what the caller leaked.
    const leaked = [
      readlinkSync(`/proc/${cordonPid}/fd/20`),
      readlinkSync(`/proc/${cordonPid}/fd/40`),
    ];
    const held = (pid: number): string[] =>
      fdsOf(pid).flatMap((fd) => {
        try {
          return [readlinkSync(`/proc/${pid}/fd/${fd}`)];
        } catch {
          return []; // closed meanwhile
        }
      });
    for (const pid of [bwrap, record.sandboxPid])
      for (const target of held(pid)) expect(leaked, `pid ${pid}`).not.toContain(target);
    // The sandbox's init: standard streams, its status pipe and the egress bridge's listening
    // socket (kept to restart a bridge that dies; close-on-exec, so the agent never holds it).
    expect(fdsOf(record.sandboxPid)).toEqual([0, 1, 2, 3, 4]);
    expect(readlinkSync(`/proc/${record.sandboxPid}/fd/3`)).toMatch(/^socket:/);
    child.kill('SIGTERM');
    await closed;
    const listed = readFileSync(`${marker}.list`, 'utf8').trim().split('\n').map(Number);
    // `ls` itself holds one descriptor for the directory it lists.
    expect(listed.filter((fd) => fd > 2).length, `agent's fds: ${listed.join(' ')}`).toBe(1);
    const result = readFileSync(`${marker}.result`, 'utf8');
    expect(result).toMatch(/^read20=1$/m);
    expect(result).not.toContain(SECRET);
    expect(result).toMatch(/^write40=1$/m);
    expect(result).toMatch(/^fdinfo20=1$/m);
    expect(received.join('')).not.toContain('exfiltrated');
  });

  it('the sandbox helper closes what it inherits, whoever started bubblewrap', () => {
    // Defence in depth: bubblewrap started by hand, holding fd 20, with the helper as its init.
    const helper = join(ROOT, 'build/Release/cordon-sandbox');
    const bwrap =
      `bwrap --unshare-all --unshare-user --die-with-parent --as-pid-1 --ro-bind / / ` +
      `--dev /dev --proc /proc --tmpfs /run --ro-bind '${helper}' /run/helper -- /run/helper --exec-tree / ` +
      `-- /usr/bin/bash -c 'ls /proc/self/fd; cat <&20; echo read20=$?'`;
    const r = spawnSync('bash', ['-c', `exec 20<'${secret}'; ${bwrap}`], { encoding: 'utf8' });
    expect(r.stdout).toMatch(/read20=1/);
    expect(r.stdout).not.toContain(SECRET);
    const fds = r.stdout.split('\n').filter((l) => /^\d+$/.test(l));
    expect(fds).toEqual(['0', '1', '2', '3']);
  });
});

describe('cordon run: bubblewrap killed from outside', () => {
  it('returns 128 + the signal (137 for SIGKILL) and records it in the Terminate event', async () => {
    const a = await startAgent(s.env, manifest, 'echo ready; sleep 60');
    // The endpoint service's session names the sandbox's pid 1; its parent is bubblewrap.
    const listed = await runningSession(s.env);
    const record = { id: listed.id, sandboxPid: listed.sandboxPid ?? 0 };
    const bwrap = parentOf(record.sandboxPid);
    expect(readFileSync(`/proc/${bwrap}/comm`, 'utf8').trim()).toBe('bwrap');
    process.kill(bwrap, 'SIGKILL');
    expect(await a.closed).toBe(137);
    const end = s
      .events()
      .filter(
        (e) =>
          e['class_uid'] === 1007 &&
          e['activity_id'] === 2 &&
          (e['actor'] as { session?: { uid: string } }).session?.uid === record.id,
      );
    expect(end.length).toBe(1);
    expect(end[0]?.['exit_code']).toBe(137);
  });
});
