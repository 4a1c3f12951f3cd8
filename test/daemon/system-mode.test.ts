import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processActivityEvent } from '../../src/audit/events.js';
import { EGRESS_SOCKET_NAME, sessionEgressDir } from '../../src/daemon/paths.js';
import { parseRecordLine, readAfter } from '../../src/audit/reader.js';
import { auditPaths } from '../../src/audit/store.js';
import { parseStrictJson } from '../../src/manifest/json.js';
import { startUpstreams, type Upstreams } from '../egress/harness.js';
import { BIN } from '../sandbox/harness.js';
import {
  as,
  curl,
  exec,
  startDaemonProcess,
  stopDaemonProcess,
  until,
  type DaemonProcess,
} from './harness.js';

// The system service, run the way its unit runs it but without systemd: as a dedicated
// unprivileged user (setpriv), policy owned by root, state owned by the service user. Its
// clients are two ordinary users and a member of the admin group, each a separate account.
const SVC = 'cordon-tsvc';
const A = 'cordon-ta';
const B = 'cordon-tb';
const ADM = 'cordon-tadm';
const ADMIN_GROUP = 'cordon-admin';
const HOMES = join(tmpdir(), 'cordon-test-homes');

interface Account {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  readonly home: string;
}

function getent(db: string, key: string): string[] | undefined {
  const r = spawnSync('getent', [db, key], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim().split(':') : undefined;
}

/**
 * Run an account-database tool, retrying while another process holds /etc/passwd's lock (tests
 * of other files may add accounts at the same time). A name that appeared meanwhile is success.
 */
function accountTool(argv: string[], done: () => boolean): void {
  for (let i = 0; i < 50; i++) {
    if (done()) return;
    const r = spawnSync(argv[0] ?? '', argv.slice(1), { encoding: 'utf8' });
    if (r.status === 0 || done()) return;
    spawnSync('sleep', ['0.1']);
    if (i === 49) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
  }
}

/** Create (once) a throwaway account; an existing one is reused as it is. */
function ensureAccount(name: string, opts: { system?: boolean; groups?: string } = {}): Account {
  const home = opts.system === true ? '/nonexistent' : join(HOMES, name);
  accountTool(
    [
      'useradd',
      ...(opts.system === true ? ['--system'] : []),
      '--no-create-home',
      '--home-dir',
      home,
      '--shell',
      opts.system === true ? '/usr/sbin/nologin' : '/bin/bash',
      '--user-group',
      ...(opts.groups === undefined ? [] : ['--groups', opts.groups]),
      name,
    ],
    () => getent('passwd', name) !== undefined,
  );
  if (opts.groups !== undefined)
    accountTool(['usermod', '--append', '--groups', opts.groups, name], () =>
      (getent('group', opts.groups ?? '')?.[3] ?? '').split(',').includes(name),
    );
  const f = getent('passwd', name);
  if (f === undefined) throw new Error(`no account ${name}`);
  return { name, uid: Number(f[2]), gid: Number(f[3]), home: f[5] ?? '' };
}

const SOON = new Date(Date.now() + 30 * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z');

let dir: string;
let policy: string;
let state: string;
let runtime: string;
let socket: string;
let manifest: string;
let otherManifest: string;
let up: Upstreams;
let daemon: DaemonProcess | undefined;
let svc: Account;
let a: Account;
let b: Account;
let adm: Account;
const children: ChildProcess[] = [];

function cli(args: string[], env: Record<string, string>): void {
  const r = spawnSync(process.execPath, [BIN, ...args], { env, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
}

beforeAll(async () => {
  expect(process.getuid?.(), 'these tests create accounts and run them with setpriv').toBe(0);
  accountTool(
    ['groupadd', '--system', ADMIN_GROUP],
    () => getent('group', ADMIN_GROUP) !== undefined,
  );
  svc = ensureAccount(SVC, { system: true });
  a = ensureAccount(A);
  b = ensureAccount(B);
  adm = ensureAccount(ADM, { groups: ADMIN_GROUP });
  for (const u of [a, b, adm]) {
    expect(u.home.startsWith(HOMES + '/'), `${u.name}'s home is a test home`).toBe(true);
    rmSync(u.home, { recursive: true, force: true });
    mkdirSync(join(u.home, 'Work'), { recursive: true });
    writeFileSync(join(u.home, 'Work/f'), `file of ${u.name}\n`);
    for (const p of [u.home, join(u.home, 'Work'), join(u.home, 'Work/f')])
      chownSync(p, u.uid, u.gid);
    // Traversable but not listable, as many distributions make homes: the service (another
    // user) resolves granted paths in it. Below a directory it cannot enter, it denies.
    chmodSync(u.home, 0o711);
    mkdirSync(join(u.home, 'Work/private'), { mode: 0o700 });
    writeFileSync(join(u.home, 'Work/private/p'), 'private\n');
    chownSync(join(u.home, 'Work/private'), u.uid, u.gid);
    chownSync(join(u.home, 'Work/private/p'), u.uid, u.gid);
  }
  chmodSync(HOMES, 0o755);

  dir = mkdtempSync(join(tmpdir(), 'cordon-system-'));
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, 'up'), { mode: 0o700 });
  up = await startUpstreams(join(dir, 'up'));
  // The administrators' side (root only): the organisation key that signs manifests and the
  // revocation list. The endpoint gets the trust store and the list, never the key.
  const admin = join(dir, 'admin');
  mkdirSync(admin, { mode: 0o700 });
  const adminEnv = { PATH: '/usr/bin:/bin', HOME: admin, CORDON_HOME: join(admin, '.cordon') };
  cli(['init'], adminEnv);
  policy = join(dir, 'policy');
  const org = join(admin, '.cordon/policy');
  cli(
    [
      'init',
      '--endpoint',
      policy,
      '--trust',
      join(org, 'trust.json'),
      '--revocations',
      join(org, 'revocations.json'),
    ],
    adminEnv,
  );
  writeFileSync(join(policy, 'enforcement.json'), JSON.stringify({ allowWithoutGuardrails: true }));
  chmodSync(policy, 0o755);
  const m = join(dir, 'agent.json');
  writeFileSync(
    m,
    JSON.stringify({
      apiVersion: 'cordon.dev/v1',
      agentName: 'fleet-agent',
      version: '1.0.0',
      role: 'developer',
      dataClassification: 'internal',
      owner: 'o@example.com',
      notAfter: SOON,
      readPaths: ['~/Work/**'],
      writePaths: ['~/Work/**'],
      networkScopes: [`http://127.0.0.1:${up.httpPort}`],
      commandsAllowed: [
        '/usr/bin/bash',
        '/usr/bin/cat',
        '/usr/bin/id',
        '/usr/bin/curl',
        '/usr/bin/sleep',
      ],
    }),
  );
  cli(['manifest', 'sign', m, '--key', join(org, 'keys/org.key')], adminEnv);
  manifest = join(dir, 'agent.signed.json');
  chmodSync(manifest, 0o644);
  // Another agent, which only B runs.
  const other = JSON.parse(readFileSync(m, 'utf8')) as Record<string, unknown>;
  writeFileSync(join(dir, 'other.json'), JSON.stringify({ ...other, agentName: 'other-agent' }));
  cli(['manifest', 'sign', join(dir, 'other.json'), '--key', join(org, 'keys/org.key')], adminEnv);
  otherManifest = join(dir, 'other.signed.json');
  chmodSync(otherManifest, 0o644);

  state = join(dir, 'state');
  runtime = join(dir, 'run');
  mkdirSync(state, { mode: 0o700 });
  mkdirSync(runtime, { mode: 0o755 });
  chownSync(state, svc.uid, svc.gid);
  chownSync(runtime, svc.uid, svc.gid);
  socket = join(runtime, 'daemon.sock');
  daemon = await startDaemonProcess(
    socket,
    ['--system', '--policy-dir', policy, '--state-dir', state, '--runtime-dir', runtime],
    { prefix: as(SVC) },
  );
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await stopDaemonProcess(daemon);
  await up?.close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

/** The environment of a user's shell pointed at the system service. */
function envOf(u: Account): Record<string, string> {
  return { PATH: '/usr/bin:/bin', HOME: u.home, LANG: 'C.UTF-8', CORDON_SOCKET: socket };
}

/** `cordon run` as a user, its agent printing "ready" then waiting for ~/Work/go. */
async function runAgent(
  u: Account,
  script: string,
): Promise<{
  child: ChildProcess;
  out: () => string;
  err: () => string;
  closed: Promise<number | null>;
}> {
  const child = spawn(
    'setpriv',
    [
      ...as(u.name).slice(1),
      process.execPath,
      BIN,
      'run',
      '--manifest',
      manifest,
      '--',
      'bash',
      '-c',
      `${script}\necho ready\nwhile [ ! -e ~/Work/go ]; do sleep 0.05; done\necho done`,
    ],
    { env: envOf(u), cwd: u.home, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.push(child);
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const closed = new Promise<number | null>((r) => child.on('close', (c) => r(c)));
  let ended = false;
  void closed.then(() => (ended = true));
  await until(() => {
    if (ended) throw new Error(`${u.name}'s cordon run exited early: ${err}`);
    return out.includes('ready') ? true : undefined;
  }, `${u.name}'s agent`);
  return { child, out: () => out, err: () => err, closed };
}

/** A Node program run as a user against the service; it prints one JSON value. */
const PRELUDE = `
const http = require('node:http');
const net = require('node:net');
const fs = require('node:fs');
const socket = process.env.SOCK;
const args = JSON.parse(process.env.ARGS || '{}');
function req(method, path, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const p = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const r = http.request({ socketPath: socket, method, path, agent: false, headers: {
      host: 'cordon', ...(p ? { 'content-type': 'application/json', 'content-length': p.length } : {}), ...headers } },
      (s) => { let d = ''; s.setEncoding('utf8'); s.on('data', (c) => (d += c));
        s.on('end', () => { let b = {}; try { b = JSON.parse(d); } catch {} resolve({ status: s.statusCode, body: b }); }); });
    r.on('error', reject);
    r.end(p);
  });
}
function attempt(fn) { try { fn(); return 'ok'; } catch (e) { return e.code || String(e); } }
`;

function nodeAs(u: string, code: string, args: unknown = {}): ChildProcess {
  const file = join(dir, `script-${Math.random().toString(36).slice(2)}.cjs`);
  writeFileSync(
    file,
    `${PRELUDE}\n(async () => { const out = await (async () => { ${code} })(); process.stdout.write(JSON.stringify(out) + '\\n'); })().catch((e) => { console.error(e.stack); process.exit(1); });\n`,
    { mode: 0o644 },
  );
  const child = spawn('setpriv', [...as(u).slice(1), process.execPath, file], {
    env: { PATH: '/usr/bin:/bin', SOCK: socket, ARGS: JSON.stringify(args) },
    stdio: ['pipe', 'pipe', 'pipe'],
    cwd: '/',
  });
  children.push(child);
  return child;
}

/** Run a Node program as a user and parse what it printed. */
async function runAs<T = Record<string, unknown>>(
  u: string,
  code: string,
  args: unknown = {},
): Promise<T> {
  const child = nodeAs(u, code, args);
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const c = await new Promise<number | null>((r) => child.on('close', r));
  expect(c, err).toBe(0);
  return JSON.parse(out) as T;
}

function openBody(home?: string, file = manifest): Record<string, unknown> {
  return {
    manifest: readFileSync(file).toString('base64'),
    manifestPath: file,
    command: ['/usr/bin/bash'],
    cwd: '/',
    ...(home === undefined ? {} : { home }),
  };
}

type Listed = {
  sessions: { id: string; uid: number; state: string; attached: boolean; sandboxPid?: number }[];
};

/** Every record in the service's log (read as root). */
function records(): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  readAfter(auditPaths(state), 0, (line) => {
    out.push(parseRecordLine(line).event);
    return true;
  });
  return out;
}

describe('the system service, run as its own user, with two ordinary users as clients', () => {
  it('runs both users’ sessions at once; each sees only its own, root and the admin group see both', async () => {
    const url = `http://127.0.0.1:${up.httpPort}/`;
    const script = `id -u; cat ~/Work/f; curl -s -m 20 -o /dev/null -w 'egress=%{http_code}\\n' ${url}`;
    const [ra, rb] = await Promise.all([runAgent(a, script), runAgent(b, script)]);
    expect(ra.out()).toContain(`${a.uid}\nfile of ${A}`);
    expect(ra.out()).toContain('egress=200');
    expect(rb.out()).toContain(`${b.uid}\nfile of ${B}`);
    expect(rb.out()).toContain('egress=200');

    const mine = async (who: string[]): Promise<Listed['sessions']> => {
      const r = await curl(who, socket, 'GET', '/v1/sessions');
      expect(r.status, r.raw).toBe(200);
      return (r.body as unknown as Listed).sessions;
    };
    const ofA = await mine(as(A));
    const ofB = await mine(as(B));
    expect(ofA.map((s) => s.uid)).toEqual([a.uid]);
    expect(ofB.map((s) => s.uid)).toEqual([b.uid]);
    expect(ofA[0]?.attached).toBe(true);
    // The real sandbox's pid is accepted (it descends from the client that opened the session).
    expect(typeof ofA[0]?.sandboxPid).toBe('number');
    const all = await mine([]);
    expect(all.map((s) => s.uid).sort()).toEqual([a.uid, b.uid].sort());
    expect((await mine(as(ADM))).map((s) => s.id).sort()).toEqual(all.map((s) => s.id).sort());

    // `cordon daemon status` as A: the caller is A (from the kernel), not an administrator.
    const st = await exec([...as(A), process.execPath, BIN, 'daemon', 'status', '--json'], {
      env: envOf(a),
    });
    expect(st.code, st.stderr).toBe(0);
    const status = JSON.parse(st.stdout) as {
      mode: string;
      caller: { uid: number; admin: boolean };
      sessions: { yours: number };
    };
    expect(status.mode).toBe('system');
    expect(status.caller).toMatchObject({ uid: a.uid, admin: false });
    expect(status.sessions.yours).toBe(1);
    const stAdm = await curl(as(ADM), socket, 'GET', '/v1/status');
    expect((stAdm.body['caller'] as { admin: boolean }).admin).toBe(true);

    // Their process events are recorded under each one's own uid.
    const launches = records().filter(
      (e) =>
        e['class_uid'] === 1007 &&
        (e['actor'] as { session?: { uid: string } }).session?.uid === ofA[0]?.id,
    );
    expect(launches.length).toBeGreaterThan(0);
    for (const e of launches)
      expect((e['actor'] as { user: { uid: string } }).user.uid).toBe(String(a.uid));

    // A cannot quarantine B's session (it does not even see it); an administrator can.
    const idB = ofB[0]?.id ?? '';
    const q = await curl(as(A), socket, 'POST', `/v1/sessions/${idB}/quarantine`, {});
    expect(q.status).toBe(404);
    expect(q.body['code']).toBe('SESSION_NOT_FOUND');
    const qCli = await exec([...as(A), process.execPath, BIN, 'quarantine', idB], {
      env: envOf(a),
    });
    expect(qCli.code).not.toBe(0);
    expect((await mine([])).find((s) => s.id === idB)?.state).toBe('running');
    const qa = await curl(as(ADM), socket, 'POST', `/v1/sessions/${idB}/quarantine`, {
      reason: 'by the admin group',
    });
    expect(qa.status, qa.raw).toBe(200);
    expect(await rb.closed).not.toBe(0);
    expect(rb.out()).not.toContain('done');

    // A's session was untouched: it ends normally.
    writeFileSync(join(a.home, 'Work/go'), '');
    expect(await ra.closed, ra.err()).toBe(0);
    expect(ra.out()).toContain('done');
    rmSync(join(a.home, 'Work/go'));
  });

  it('lets only a session’s own client append to or close it: another user holding its id, its capability or a forged one is refused', async () => {
    // B opens a session by hand and keeps it open; A learns its id and even its capability.
    const holder = nodeAs(
      B,
      `const r = await req('POST', '/v1/sessions', args.open);
       process.stdout.write(JSON.stringify(r) + '\\n');
       await new Promise((res) => process.stdin.on('end', res).resume());
       return null;`,
      { open: openBody(undefined, otherManifest) },
    );
    let line = '';
    holder.stdout?.on('data', (d: Buffer) => (line += d.toString()));
    const opened = await until(
      () =>
        line.includes('\n')
          ? (JSON.parse(line.split('\n')[0] ?? '') as {
              status: number;
              body: { session: string; capability: string };
            })
          : undefined,
      "B's session",
    );
    expect(opened.status).toBe(200);
    const { session: idB, capability: capB } = opened.body;
    // Which agent B runs is not A's to know; root and the admin group see it.
    const agents = async (who: string[]): Promise<string[]> =>
      ((await curl(who, socket, 'GET', '/v1/status')).body['manifests'] as { agent: string }[]).map(
        (x) => x.agent,
      );
    expect(await agents(as(A))).not.toContain('other-agent');
    expect(await agents(as(B))).toContain('other-agent');
    expect(await agents(as(ADM))).toContain('other-agent');
    expect(await agents([])).toContain('other-agent');
    // Nor may A record decisions under a manifest nobody signed.
    const unverified = await curl(as(A), socket, 'POST', '/v1/check', {
      manifest: Buffer.from(readFileSync(join(dir, 'other.json'))).toString('base64'),
      manifestPath: join(dir, 'other.json'),
      requests: [{ kind: 'file.read', path: '/etc/shadow' }],
      verify: false,
    });
    expect(unverified.status, unverified.raw).toBe(400);
    expect(unverified.body['code']).toBe('DAEMON_OPTION_FORBIDDEN');
    // Nor answer a granted name with an address of A's choosing (--resolve), or bring its own
    // proxy settings (--config): both would widen what the signed manifest grants.
    for (const extra of [
      { resolve: ['127.0.0.1.nip.io=203.0.113.9'] },
      { config: '/tmp/x.json' },
    ]) {
      const widened = await curl(as(A), socket, 'POST', '/v1/sessions', {
        ...openBody(),
        ...extra,
      });
      expect(widened.status, widened.raw).toBe(400);
      expect(widened.body['code']).toBe('DAEMON_OPTION_FORBIDDEN');
    }

    const out = await runAs<Record<string, { status: number; code: string }>>(
      A,
      `const own = await req('POST', '/v1/sessions', args.open);
       const capA = own.body.capability;
       const ev = { events: [{ seq: 1, event: { class_uid: 1007 } }] };
       const r = {};
       const pick = (x) => ({ status: x.status, code: x.body.code });
       r.eventsNoAuth = pick(await req('POST', '/v1/sessions/' + args.idB + '/events', ev));
       r.eventsOwnCap = pick(await req('POST', '/v1/sessions/' + args.idB + '/events', ev, { authorization: 'Bearer ' + capA }));
       r.eventsForged = pick(await req('POST', '/v1/sessions/' + args.idB + '/events', ev, { authorization: 'Bearer ' + 'A'.repeat(43) }));
       r.eventsStolen = pick(await req('POST', '/v1/sessions/' + args.idB + '/events', ev, { authorization: 'Bearer ' + args.capB }));
       r.closeNoAuth = pick(await req('POST', '/v1/sessions/' + args.idB + '/close', {}));
       r.closeOwnCap = pick(await req('POST', '/v1/sessions/' + args.idB + '/close', {}, { authorization: 'Bearer ' + capA }));
       r.closeStolen = pick(await req('POST', '/v1/sessions/' + args.idB + '/close', {}, { authorization: 'Bearer ' + args.capB }));
       r.decideStolen = pick(await req('POST', '/v1/sessions/' + args.idB + '/decide', { requests: [{ kind: 'file.read', path: '/etc/hostname' }] }, { authorization: 'Bearer ' + args.capB }));
       r.watchStolen = pick(await req('GET', '/v1/sessions/' + args.idB + '/watch', undefined, { authorization: 'Bearer ' + args.capB }));
       r.quarantine = pick(await req('POST', '/v1/sessions/' + args.idB + '/quarantine', {}));
       r.reload = pick(await req('POST', '/v1/reload', {}));
       r.stop = pick(await req('POST', '/v1/stop', {}));
       return r;`,
      { open: openBody(), idB, capB },
    );
    for (const k of [
      'eventsNoAuth',
      'eventsOwnCap',
      'eventsForged',
      'eventsStolen',
      'closeNoAuth',
      'closeOwnCap',
      'closeStolen',
      'decideStolen',
      'watchStolen',
    ])
      expect(out[k], k).toEqual({ status: 401, code: 'SESSION_UNAUTHORIZED' });
    expect(out['quarantine']).toEqual({ status: 404, code: 'SESSION_NOT_FOUND' });
    expect(out['reload']).toEqual({ status: 403, code: 'DAEMON_FORBIDDEN' });
    expect(out['stop']).toEqual({ status: 403, code: 'DAEMON_FORBIDDEN' });

    // The CLI says the same, and exits non-zero.
    const stop = await exec([...as(A), process.execPath, BIN, 'daemon', 'stop'], { env: envOf(a) });
    expect(stop.code).not.toBe(0);
    expect(stop.stderr).toMatch(/may not stop the service/);
    // Nothing reached B's session, and the service still serves.
    const listed = await curl([], socket, 'GET', '/v1/sessions');
    expect((listed.body as unknown as Listed).sessions.map((s) => s.id)).toContain(idB);
    expect(
      records().filter(
        (e) =>
          (e['unmapped'] as { client_seq?: number } | undefined)?.client_seq !== undefined &&
          (e['actor'] as { session?: { uid: string } }).session?.uid === idB,
      ),
    ).toEqual([]);
    // B itself may close it with its capability.
    const closed = await curl(
      as(B),
      socket,
      'POST',
      `/v1/sessions/${idB}/close`,
      {},
      {
        authorization: `Bearer ${capB}`,
      },
    );
    expect(closed.status, closed.raw).toBe(200);
    holder.stdin?.end();

    // An administrator reloads; only root or the admin group.
    expect((await curl(as(ADM), socket, 'POST', '/v1/reload', {})).status).toBe(200);
    expect((await curl([], socket, 'POST', '/v1/reload', {})).status).toBe(200);
  });

  it('records the caller from the kernel: a body claiming uid 0 or another home is ignored', async () => {
    const out = await runAs<{
      pid: number;
      open: { status: number; body: { session: string; home: string } };
      decisions: { effect: string; code: string }[];
      events: { status: number; body: { acked: number } };
    }>(
      A,
      `const open = await req('POST', '/v1/sessions', args.open);
       const auth = { authorization: 'Bearer ' + open.body.capability };
       const d = await req('POST', '/v1/sessions/' + open.body.session + '/decide',
         { requests: args.requests }, auth);
       const ev = JSON.parse(JSON.stringify(args.event));
       const events = await req('POST', '/v1/sessions/' + open.body.session + '/events',
         { events: [{ seq: 1, event: ev }] }, auth);
       await req('POST', '/v1/sessions/' + open.body.session + '/close', {}, auth);
       return { pid: process.pid, open: { status: open.status, body: { session: open.body.session, home: open.body.home } }, decisions: d.body.decisions, events };`,
      {
        open: openBody(b.home),
        requests: [
          { kind: 'file.read', path: join(b.home, 'Work/f') },
          { kind: 'file.read', path: join(a.home, 'Work/f') },
          { kind: 'file.read', path: join(a.home, 'Work/private/p') },
        ],
        // A well-formed event that claims to come from root's pid 1 in another session.
        event: (() => {
          const e = processActivityEvent(
            {
              productVersion: '0.1.0',
              device: { hostname: 'forged', osName: 'Linux' },
              actor: {
                name: 'forged',
                pid: 1,
                processName: 'systemd',
                session: '00000000-0000-0000-0000-000000000000',
                user: { name: 'root', uid: '0' },
              },
            },
            { activity: 'launch', path: '/usr/bin/id', argv: ['id'] },
          ) as unknown as Record<string, unknown>;
          return e;
        })(),
      },
    );
    expect(out.open.status).toBe(200);
    // The home of the session is A's from the user database, not the one the body named.
    expect(out.open.body.home).toBe(a.home);
    // B's file is not A's to read; A's is granted; what the service cannot resolve is denied.
    expect(out.decisions.map((d) => [d.effect, d.code])).toEqual([
      ['deny', 'NOT_GRANTED'],
      ['allow', 'ALLOWED'],
      ['deny', 'PATH_UNRESOLVABLE'],
    ]);
    expect(out.events.status).toBe(200);
    expect(out.events.body.acked).toBe(1);
    const rec = records().find(
      (e) =>
        (e['actor'] as { session?: { uid: string } }).session?.uid === out.open.body.session &&
        (e['unmapped'] as { client_seq?: number } | undefined)?.client_seq === 1,
    );
    expect(rec).toBeDefined();
    const actor = rec?.['actor'] as {
      user: { uid: string; name: string };
      process: { pid: number };
      session: { uid: string };
    };
    expect(actor.user).toEqual({ name: A, uid: String(a.uid) });
    expect(actor.process.pid).toBe(out.pid);
    expect((rec?.['device'] as { hostname: string }).hostname).not.toBe('forged');
  });

  it('keeps the log, the device key and the session records out of the users’ reach', async () => {
    // A session keeps a record on disk while it runs.
    const ra = await runAgent(a, 'true');
    const sessions = join(state, 'daemon/sessions');
    const record = await until(
      () => readdirSync(sessions).find((n) => n.endsWith('.json')),
      'a session record',
    );
    const segs = auditPaths(state).segments;
    const seg = readdirSync(segs).sort()[0] ?? '';
    const before = readFileSync(join(segs, seg));
    const keyBefore = readFileSync(join(state, 'device.key'));
    for (const p of [state, join(state, 'device.key'), join(segs, seg)])
      expect(statSync(p).uid).toBe(svc.uid);

    for (const user of [A, ADM]) {
      const out = await runAs<Record<string, string>>(
        user,
        `const S = args.state;
         return {
           listState: attempt(() => fs.readdirSync(S)),
           readKey: attempt(() => fs.readFileSync(S + '/device.key')),
           readSegment: attempt(() => fs.readFileSync(args.segment)),
           readRecord: attempt(() => fs.readFileSync(S + '/daemon/sessions/' + args.record)),
           unlinkSegment: attempt(() => fs.unlinkSync(args.segment)),
           unlinkKey: attempt(() => fs.unlinkSync(S + '/device.key')),
           removeLog: attempt(() => fs.rmSync(S + '/audit', { recursive: true })),
           renameLog: attempt(() => fs.renameSync(S + '/audit', S + '/audit.old')),
           freshLog: attempt(() => fs.mkdirSync(S + '/audit2')),
           writeSegment: attempt(() => fs.appendFileSync(args.segment, 'x')),
           replaceState: attempt(() => fs.renameSync(S, S + '.old')),
           killDaemon: attempt(() => process.kill(args.pid, 'SIGKILL')),
         };`,
        {
          state,
          segment: join(segs, seg),
          record,
          pid: daemon?.child.pid,
        },
      );
      expect(out, user).toEqual({
        listState: 'EACCES',
        readKey: 'EACCES',
        readSegment: 'EACCES',
        readRecord: 'EACCES',
        unlinkSegment: 'EACCES',
        unlinkKey: 'EACCES',
        removeLog: 'EACCES',
        renameLog: 'EACCES',
        freshLog: 'EACCES',
        writeSegment: 'EACCES',
        replaceState: 'EACCES',
        killDaemon: 'EPERM',
      });
    }
    // Through the API, A reads only the records that are its own; root reads them all.
    const uids = async (who: string[]): Promise<string[]> => {
      const r = await curl(who, socket, 'GET', '/v1/audit/records?after=0&limit=10000');
      expect(r.status, r.raw).toBe(200);
      return (r.body['records'] as string[]).map(
        (l) =>
          (JSON.parse(l) as { event: { actor?: { user?: { uid?: string } } } }).event.actor?.user
            ?.uid ?? '',
      );
    };
    const seenByA = await uids(as(A));
    expect(seenByA.length).toBeGreaterThan(0);
    expect(new Set(seenByA)).toEqual(new Set([String(a.uid)]));
    expect((await uids([])).length).toBeGreaterThan(seenByA.length);
    expect(readFileSync(join(segs, seg)).subarray(0, before.length)).toEqual(before);
    expect(readFileSync(join(state, 'device.key'))).toEqual(keyBefore);
    expect(existsSync(join(sessions, record))).toBe(true);
    writeFileSync(join(a.home, 'Work/go'), '');
    expect(await ra.closed, ra.err()).toBe(0);
    rmSync(join(a.home, 'Work/go'));
    // The device key is the service's: the policy directory's (root's) is not the one it uses.
    expect(statSync(join(policy, 'device.key')).uid).toBe(0);
  });

  it('lets only the session’s user through its egress socket; the agent’s own egress works', async () => {
    const url = `http://127.0.0.1:${up.httpPort}/`;
    const ra = await runAgent(a, `curl -s -m 20 -o /dev/null -w 'egress=%{http_code}\\n' ${url}`);
    expect(ra.out()).toContain('egress=200');
    const listed = await curl(as(A), socket, 'GET', '/v1/sessions');
    const id = (listed.body as unknown as Listed).sessions[0]?.id ?? '';
    const egress = join(sessionEgressDir(runtime, id), EGRESS_SOCKET_NAME);
    expect(existsSync(egress)).toBe(true);
    const probe = `return await new Promise((resolve) => {
        const s = net.connect(args.path);
        let data = '';
        let err = '';
        s.on('connect', () => s.write('GET ' + args.url + ' HTTP/1.1\\r\\nHost: ' + args.host + '\\r\\nConnection: close\\r\\n\\r\\n'));
        s.on('data', (d) => (data += d));
        s.on('error', (e) => (err = e.code || e.message));
        s.on('close', () => resolve({ data, err }));
        setTimeout(() => { s.destroy(); resolve({ data, err: 'TIMEOUT' }); }, 10000).unref();
      });`;
    const host = `127.0.0.1:${up.httpPort}`;
    const fromB = await runAs<{ data: string; err: string }>(B, probe, { path: egress, url, host });
    expect(fromB.data).toBe('');
    expect(fromB.err).not.toBe('TIMEOUT');
    // A's own process (outside the sandbox, same user) gets through: the check is the uid.
    const fromA = await runAs<{ data: string; err: string }>(A, probe, { path: egress, url, host });
    expect(fromA.data).toMatch(/^HTTP\/1\.1 200/);
    writeFileSync(join(a.home, 'Work/go'), '');
    expect(await ra.closed, ra.err()).toBe(0);
    rmSync(join(a.home, 'Work/go'));
    expect(daemon?.log()).toMatch(
      new RegExp(`uid ${b.uid} is not the session's user \\(${a.uid}\\)`),
    );
    // The egress events of A's session name A (the service acts for A's session), so A reads
    // them through the API; B does not.
    const egressOf = async (who: string[]): Promise<string[]> => {
      const r = await curl(who, socket, 'GET', '/v1/audit/records?after=0&limit=10000');
      expect(r.status, r.raw).toBe(200);
      return (r.body['records'] as string[])
        .map((l) => parseStrictJson(l) as { event: Record<string, unknown> })
        .filter(
          (rec) =>
            (rec.event['class_uid'] === 4001 || rec.event['class_uid'] === 4002) &&
            (rec.event['actor'] as { session?: { uid?: string } }).session?.uid === id,
        )
        .map((rec) => (rec.event['actor'] as { user?: { uid?: string } }).user?.uid ?? '');
    };
    const seenByA = await egressOf(as(A));
    expect(seenByA.length).toBeGreaterThan(0);
    expect(new Set(seenByA)).toEqual(new Set([String(a.uid)]));
    expect(await egressOf(as(B))).toEqual([]);
  });

  it('lets only the session’s user through a standalone proxy on loopback TCP, and listens nowhere else', async () => {
    const url = `http://127.0.0.1:${up.httpPort}/`;
    // The service does not take the client's word that the address is loopback.
    const wide = await runAs<{ status: number; code: string }>(
      A,
      `const r = await req('POST', '/v1/sessions', { ...args.open, kind: 'proxy', command: ['cordon', 'proxy'], listen: { host: '0.0.0.0', port: 0 } });
       return { status: r.status, code: r.body.code };`,
      { open: openBody() },
    );
    expect(wide).toEqual({ status: 400, code: 'REQUEST_INVALID' });
    const proxy = spawn(
      'setpriv',
      [
        ...as(A).slice(1),
        process.execPath,
        BIN,
        'proxy',
        '--manifest',
        manifest,
        '--listen',
        '127.0.0.1:0',
      ],
      { env: envOf(a), cwd: a.home, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(proxy);
    let err = '';
    proxy.stdout.on('data', (d: Buffer) => (err += d.toString()));
    proxy.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const proxyUrl = await until(
      () => /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(err)?.[1],
      'the proxy',
    ).catch((e: unknown) => {
      throw new Error(`${String(e)}: ${err}`);
    });
    const through = async (user: string): Promise<string> => {
      const r = await exec([
        ...as(user),
        'curl',
        '-s',
        '-m',
        '10',
        '-o',
        '/dev/null',
        '-w',
        '%{http_code}',
        '-x',
        proxyUrl,
        url,
      ]);
      return r.stdout;
    };
    expect(await through(A)).toBe('200');
    expect(await through(B)).toBe('000');
    expect(await through(ADM)).toBe('000');
    proxy.kill('SIGTERM');
    await new Promise((r) => proxy.on('close', r));
    expect(daemon?.log()).toMatch(
      new RegExp(`uid ${b.uid} is not the session's user \\(${a.uid}\\)`),
    );
  });

  it('keeps serving other users while one user holds every connection it can', async () => {
    // Connections the service holds open, counted from its descriptors (the kernel's view).
    const pid = daemon?.child.pid ?? 0;
    const sockets = (): number =>
      readdirSync(`/proc/${pid}/fd`).filter((fd) => {
        try {
          return readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:');
        } catch {
          return false;
        }
      }).length;
    const baseline = sockets();
    const flood = nodeAs(
      A,
      `const socks = [];
       let busy = 0, failed = 0;
       await Promise.all(Array.from({ length: args.n }, () => new Promise((res) => {
         const c = net.connect(socket);
         socks.push(c);
         let d = '';
         c.on('data', (x) => { d += x; if (d.startsWith('HTTP/1.1 429') && d.includes('DAEMON_BUSY')) busy++; });
         c.on('error', () => { failed++; res(); });
         c.on('close', () => res());
         c.on('connect', () => setTimeout(res, 200));
       })));
       await new Promise((r) => setTimeout(r, 1000));
       process.stdout.write(JSON.stringify({ busy, failed }) + '\\n');
       await new Promise((res) => process.stdin.on('end', res).resume());
       for (const c of socks) c.destroy();
       return null;`,
      { n: 4200 },
    );
    try {
      let line = '';
      flood.stdout?.on('data', (d: Buffer) => (line += d.toString()));
      let most = 0;
      const held = await until(() => {
        most = Math.max(most, sockets() - baseline);
        return line.includes('\n')
          ? (JSON.parse(line.split('\n')[0] ?? '') as { busy: number })
          : undefined;
      }, "A's connections");
      // A holds its share; the rest of its connections were told why they were refused.
      expect(most).toBeLessThanOrEqual(512 + 8);
      expect(held.busy).toBeGreaterThan(0);
      // Meanwhile B and root are served.
      const r = await curl(as(B), socket, 'GET', '/v1/status');
      expect(r.status, r.raw).toBe(200);
      expect((await curl([], socket, 'GET', '/v1/status')).status).toBe(200);
    } finally {
      flood.stdin?.end();
      await new Promise((res) => flood.on('close', res));
    }
  });

  it('refuses a session to a uid the user database does not know (no home to take)', async () => {
    const ghost = ['setpriv', '--reuid=54321', '--regid=54321', '--clear-groups', '--'];
    expect(getent('passwd', '54321')).toBeUndefined();
    const r = await curl(ghost, socket, 'POST', '/v1/sessions', openBody('/tmp'));
    expect(r.status, r.raw).toBe(400);
    expect(r.body['code']).toBe('DAEMON_USER_UNKNOWN');
  });

  it('caps one user’s open sessions; other users still open theirs', async () => {
    const holder = nodeAs(
      A,
      `const codes = {};
       const opened = [];
       for (let i = 0; i < 257; i += 8) {
         const batch = await Promise.all(Array.from({ length: Math.min(8, 257 - i) }, () => req('POST', '/v1/sessions', args.open)));
         for (const r of batch) {
           const k = r.status + ' ' + (r.body.code || '');
           codes[k] = (codes[k] || 0) + 1;
           if (r.status === 200) opened.push(r.body);
         }
       }
       process.stdout.write(JSON.stringify(codes) + '\\n');
       await new Promise((res) => process.stdin.on('end', res).resume());
       for (const o of opened) await req('POST', '/v1/sessions/' + o.session + '/close', {}, { authorization: 'Bearer ' + o.capability });
       return null;`,
      { open: openBody() },
    );
    let line = '';
    let err = '';
    holder.stdout?.on('data', (d: Buffer) => (line += d.toString()));
    holder.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    const codes = await until(
      () =>
        line.includes('\n')
          ? (JSON.parse(line.split('\n')[0] ?? '') as Record<string, number>)
          : undefined,
      "A's sessions",
      100_000,
    ).catch((e: unknown) => {
      throw new Error(`${String(e)}: ${err}`);
    });
    expect(codes).toEqual({ '200 ': 256, '429 DAEMON_BUSY': 1 });
    // B is not held back by A's sessions.
    const b1 = await curl(as(B), socket, 'POST', '/v1/sessions', openBody());
    expect(b1.status, b1.raw).toBe(200);
    holder.stdin?.end();
    expect(await new Promise((res) => holder.on('close', res))).toBe(0);
  }, 150_000);

  it('a user-mode client does not talk to a daemon another user planted in its runtime directory', async () => {
    // Without XDG_RUNTIME_DIR (su, cron, ssh without a login session) A's user daemon lives in
    // /tmp/cordon-<uid>: B creates that first and serves a fake daemon there.
    const planted = `/tmp/cordon-${a.uid}`;
    rmSync(planted, { recursive: true, force: true });
    const fake = nodeAs(
      B,
      `fs.mkdirSync(args.dir, { mode: 0o755 });
       fs.chmodSync(args.dir, 0o755);
       const srv = http.createServer((q, r) => {
         r.writeHead(200, { 'content-type': 'application/json' });
         r.end(JSON.stringify({ ok: true, mode: 'user', pid: 1, version: 'fake', uptimeSeconds: 0, socket: 'fake', policyDir: 'fake', stateDir: 'fake', log: { seq: 0, hash: 'x', durableSeq: 0 }, sinks: [], sessions: { running: 0, quarantined: 0, yours: 0 }, manifests: [], caller: { uid: 0, pid: 0, admin: true } }));
       });
       await new Promise((res) => srv.listen(args.dir + '/daemon.sock', res));
       fs.chmodSync(args.dir + '/daemon.sock', 0o777);
       process.stdout.write('listening\\n');
       await new Promise((res) => process.stdin.on('end', res).resume());
       srv.close();
       return null;`,
      { dir: planted },
    );
    let line = '';
    fake.stdout?.on('data', (d: Buffer) => (line += d.toString()));
    await until(() => (line.includes('listening') ? true : undefined), 'the planted daemon');
    try {
      const env = {
        PATH: '/usr/bin:/bin',
        HOME: a.home,
        LANG: 'C.UTF-8',
        CORDON_NO_AUTOSTART: '1',
      };
      const st = await exec([...as(A), process.execPath, BIN, 'daemon', 'status', '--json'], {
        env,
      });
      expect(st.stdout).not.toContain('fake');
      expect(st.code).not.toBe(0);
      expect(st.stderr).toMatch(/DAEMON_DIR_UNSAFE/);
      const run = await exec(
        [...as(A), process.execPath, BIN, 'run', '--manifest', manifest, '--', 'true'],
        { env: { ...env, CORDON_NO_AUTOSTART: '' }, cwd: a.home },
      );
      expect(run.code).not.toBe(0);
      expect(run.stderr).toMatch(/DAEMON_DIR_UNSAFE/);
    } finally {
      fake.stdin?.end();
      await new Promise((res) => fake.on('close', res));
      rmSync(planted, { recursive: true, force: true });
    }
  });

  it('never signals a process the session’s client did not start, whatever pid the client names', async () => {
    // A names the service's own process as its "sandbox", then quarantines its own session: the
    // service must not kill itself (nor anything else of its user's) on an ordinary user's word.
    const pid = daemon?.child.pid ?? 0;
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
    const out = await runAs<Record<string, { status: number; code?: string }>>(
      A,
      `const open = await req('POST', '/v1/sessions', args.open);
       const auth = { authorization: 'Bearer ' + open.body.capability };
       const pick = (x) => ({ status: x.status, code: x.body.code });
       const id = open.body.session;
       const r = {};
       r.init = pick(await req('POST', '/v1/sessions/' + id + '/state', { sandboxPid: 1 }, auth));
       r.daemon = pick(await req('POST', '/v1/sessions/' + id + '/state', { sandboxPid: args.pid, sandboxStart: args.start }, auth));
       r.quarantine = pick(await req('POST', '/v1/sessions/' + id + '/quarantine', {}));
       r.status = pick(await req('GET', '/v1/status'));
       await req('POST', '/v1/sessions/' + id + '/close', {}, auth);
       return r;`,
      { open: openBody(), pid, start },
    );
    expect(out['daemon'], JSON.stringify(out)).toEqual({ status: 400, code: 'REQUEST_INVALID' });
    expect(out['init']).toEqual({ status: 400, code: 'REQUEST_INVALID' });
    expect(out['quarantine']?.status).toBe(200);
    expect(out['status']?.status).toBe(200);
    expect(daemon?.child.exitCode).toBe(null);
    expect(daemon?.child.signalCode).toBe(null);
  });

  it('stops for root', async () => {
    const r = await curl([], socket, 'POST', '/v1/stop', {});
    expect(r.status, r.raw).toBe(200);
    const exited = await daemon?.exited;
    expect(exited?.code).toBe(0);
    expect(existsSync(socket)).toBe(false);
  });
});
