import { spawn, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OCSF_DIR, OcsfSchema } from '../audit/ocsf-schema.js';
import { startUpstreams, type Upstreams } from '../egress/harness.js';
import {
  BIN,
  egressDirOf,
  probeResults,
  listSessions,
  ROOT,
  runningSession,
  sandboxEnv,
  sessionLeftovers,
  startAgent,
  type RunResult,
  type SandboxEnv,
} from './harness.js';

let s: SandboxEnv;
let up: Upstreams;
let manifest: string;
let outside: string;
const KEY = '-----BEGIN OPENSSH PRIVATE KEY----- test key material';
/** The dynamic loader, by architecture: running a program through it must not bypass exec rules. */
const HOST_LOADER: Partial<Record<string, string>> = {
  x64: '/lib64/ld-linux-x86-64.so.2',
  arm64: '/lib/ld-linux-aarch64.so.1',
};
/** A program that lives in a library directory (apt's http method, on every Debian system). */
const APT_HTTP = '/usr/lib/apt/methods/http';

const run = (script: string, extra: string[] = []): Promise<RunResult> =>
  s.bash(manifest, script, extra);

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Outcome lines `name=exit-status` printed by a test script. */
function statuses(out: string): Record<string, string> {
  const r: Record<string, string> = {};
  for (const m of out.matchAll(/^(\S+)=(\S*)$/gm)) r[m[1] ?? ''] = m[2] ?? '';
  return r;
}

beforeAll(async () => {
  s = sandboxEnv('run');
  up = await startUpstreams(s.dir);
  const h = s.home;
  mkdirSync(join(h, '.ssh'));
  writeFileSync(join(h, '.ssh/id_rsa'), KEY);
  writeFileSync(join(h, '.bashrc'), '# rc\n');
  mkdirSync(join(h, 'Work/out/repo/.git/hooks'), { recursive: true });
  writeFileSync(join(h, 'Work/notes.txt'), 'notes\n');
  writeFileSync(join(h, 'Work/out/repo/.git/hooks/pre-commit'), '#!/bin/sh\n');
  symlinkSync(join(h, '.ssh/id_rsa'), join(h, 'Work/link-to-key'));
  // Created before launch, as an attacker with earlier access could have done.
  linkSync(join(h, '.ssh/id_rsa'), join(h, 'Work/hard-key'));
  // A binary that was already in a read grant (a project's build output, say).
  mkdirSync(join(h, 'Work/tools'));
  copyFileSync('/usr/bin/cat', join(h, 'Work/tools/mycat'));
  outside = join(s.dir, 'outside');
  mkdirSync(outside);
  writeFileSync(join(outside, 'secret.txt'), 'outside\n');
  manifest = s.sign({
    // Home-wide reads are only for public-data agents (an org guardrail); masks are the point here.
    dataClassification: 'public',
    readPaths: ['~/**'],
    writePaths: ['~/Work/out/**'],
    networkScopes: [`http://127.0.0.1:${up.httpPort}`],
    commandsAllowed: [
      '/usr/bin/bash',
      '/usr/bin/cat',
      '/usr/bin/ls',
      '/usr/bin/cp',
      '/usr/bin/curl',
      '/usr/bin/env',
      '/usr/bin/getent',
      '/usr/bin/unshare',
      '/usr/bin/sleep',
      '/usr/bin/stty',
      s.probe,
    ],
  });
});
afterAll(async () => {
  await up.close();
  rmSync(s.dir, { recursive: true, force: true });
});

describe('cordon run: the first session', () => {
  it('in a fresh state directory prints nothing on stderr and leaves nothing behind', async () => {
    const f = sandboxEnv('first-run');
    try {
      // Fresh: no endpoint service has run for this state directory yet.
      expect(existsSync(join(f.cordonHome, 'state/daemon'))).toBe(false);
      const m = f.sign({ commandsAllowed: ['/usr/bin/true'] });
      // The service is started on demand by this first client, silently.
      const r = await f.cordon(['run', '--manifest', m, '--', '/usr/bin/true']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('');
      // The service served the session (its registry exists) and dropped it when it ended: no
      // record, no egress socket directory.
      expect(existsSync(join(f.cordonHome, 'state/daemon/sessions'))).toBe(true);
      expect(sessionLeftovers(f.env, f.cordonHome)).toEqual([]);
      expect(f.events().some((e) => e['status_code'] === 'SANDBOX_STARTED')).toBe(true);
    } finally {
      rmSync(f.dir, { recursive: true, force: true });
    }
  });
});

describe('cordon run: files', () => {
  it('shows only the grants; mandatory denies, symlinks and /proc do not reach past them', async () => {
    const h = s.home;
    const r = await run(
      [
        `cat ${h}/.ssh/id_rsa; echo ssh=$?`,
        `ls ${h}/.ssh; echo ssh_list=$?`,
        `cat ${h}/Work/link-to-key; echo symlink=$?`,
        `cat /proc/self/root${h}/.ssh/id_rsa; echo proc_self_root=$?`,
        `cat /proc/1/root${h}/.ssh/id_rsa; echo proc_1_root=$?`,
        `cat ${outside}/secret.txt; echo outside=$?`,
        `cat ${s.cordonHome}/policy/trust.json; echo trust=$?`,
        `ls ${s.cordonHome}/state/audit; echo audit_log=$?`,
        `cat ${manifest}; echo manifest=$?`,
        `cat ${h}/Work/notes.txt; echo granted_read=$?`,
        `echo x > ${h}/Work/new.txt; echo write_read_only=$?`,
        `echo x > ${h}/new-in-home.txt; echo write_home=$?`,
        `echo x > ${h}/Work/out/new.txt; echo write_granted=$?`,
        `echo x >> ${h}/.bashrc; echo bashrc=$?`,
        `echo x >> ${h}/Work/out/repo/.git/hooks/pre-commit; echo git_hook=$?`,
        `echo x > /tmp/scratch && cat /tmp/scratch >/dev/null; echo private_tmp=$?`,
        `cat ${h}/Work/hard-key; r=$?; echo; echo hard_link=$r`,
      ].join('\n'),
    );
    expect(r.code, r.stderr).toBe(0);
    const st = statuses(r.stdout);
    expect(st['ssh']).not.toBe('0');
    expect(st['ssh_list']).toBe('0'); // an empty read-only tmpfs: the directory exists, empty
    expect(st['symlink']).not.toBe('0');
    expect(st['proc_self_root']).not.toBe('0');
    expect(st['proc_1_root']).not.toBe('0');
    expect(st['outside']).not.toBe('0');
    expect(st['trust']).not.toBe('0');
    expect(st['manifest']).not.toBe('0');
    expect(st['granted_read']).toBe('0');
    expect(st['write_read_only']).not.toBe('0');
    expect(st['write_home']).not.toBe('0');
    expect(st['write_granted']).toBe('0');
    expect(st['bashrc']).not.toBe('0');
    expect(st['git_hook']).not.toBe('0');
    expect(st['private_tmp']).toBe('0');
    // The audit log directory is masked by an empty tmpfs: nothing of it is visible.
    expect(r.stdout).not.toMatch(/seg-\d+\.ndjson|checkpoints/);
    // Honest limit: a hard link made before launch inside a grant is the same file.
    expect(st['hard_link']).toBe('0');
    expect(r.stdout).toContain(KEY);
    expect(readFileSync(join(s.home, 'Work/out/new.txt'), 'utf8')).toBe('x\n');
    expect(existsSync(join(s.home, 'Work/new.txt'))).toBe(false);
    expect(readFileSync(join(s.home, '.bashrc'), 'utf8')).toBe('# rc\n');
    expect(existsSync('/tmp/scratch')).toBe(false);
    // Only the .ssh content above came from the hard link.
    expect(r.stdout.split(KEY).length - 1).toBe(1);
  });
});

describe('cordon run: execution', () => {
  it('runs only allowed binaries: not copies, not through the loader, not from writable paths', async () => {
    const h = s.home;
    // Preconditions on this machine, so that each refusal below is the sandbox's doing and not
    // a missing program: perl runs, the dynamic loader runs a program, apt's http method exists.
    const loader = HOST_LOADER[process.arch];
    expect(loader, `no dynamic loader known for ${process.arch}`).toBeDefined();
    const ld = loader ?? '';
    expect(
      spawnSync('/usr/bin/perl', ['-e', '1']).status,
      '/usr/bin/perl must run on the host',
    ).toBe(0);
    expect(
      spawnSync(ld, ['/usr/bin/cat', '/etc/hostname']).status,
      `${ld} must run cat on the host`,
    ).toBe(0);
    expect(existsSync(APT_HTTP), `${APT_HTTP} (apt) must exist`).toBe(true);
    const r = await run(
      [
        `perl -e 1; echo perl=$?`,
        `/usr/bin/perl -e 1; echo perl_path=$?`,
        // Controls: the loader itself runs inside, and runs an allowed program.
        `${ld} /usr/bin/cat /etc/passwd >/dev/null; echo loader_allowed=$?`,
        `${ld} /usr/bin/perl -e 1; echo loader_perl=$?`,
        `cp /usr/bin/cat ${h}/Work/out/mycat; echo copy=$?`,
        `${h}/Work/out/mycat /etc/hostname; echo copied_exec=$?`,
        `${ld} ${h}/Work/out/mycat /etc/passwd >/dev/null; echo loader_copied=$?`,
        `cp /usr/bin/cat /tmp/c; /tmp/c /etc/passwd >/dev/null; echo tmp_exec=$?`,
        `cp /usr/bin/cat /dev/shm/c; echo shm_write=$?; /dev/shm/c /etc/passwd >/dev/null; echo shm_exec=$?`,
        `${ld} /dev/shm/c /etc/passwd >/dev/null; echo loader_shm=$?`,
        `${ld} /tmp/c /etc/passwd >/dev/null; echo loader_tmp=$?`,
        // A program in a library directory: visible (read), not executable.
        `cat ${APT_HTTP} >/dev/null; echo lib_read=$?`,
        `${APT_HTTP} </dev/null; echo lib_exec=$?`,
        `${h}/Work/tools/mycat /etc/passwd >/dev/null; echo read_grant_exec=$?`,
        `${ld} ${h}/Work/tools/mycat /etc/passwd >/dev/null; echo loader_read_grant=$?`,
        `cat /etc/passwd >/dev/null; echo allowed=$?`,
      ].join('\n'),
    );
    const st = statuses(r.stdout);
    expect(st['perl']).toBe('127');
    expect(st['perl_path']).toBe('127');
    expect(st['loader_allowed'], r.stderr).toBe('0');
    expect(st['loader_perl']).not.toBe('0');
    expect(st['copy']).toBe('0');
    expect(st['copied_exec']).toBe('126');
    expect(st['loader_copied']).not.toBe('0');
    expect(r.stderr).toMatch(/failed to map segment/);
    expect(st['tmp_exec']).toBe('126');
    expect(st['loader_tmp']).not.toBe('0');
    expect(st['shm_write']).toBe('0');
    expect(st['shm_exec']).toBe('126');
    expect(st['loader_shm']).not.toBe('0');
    expect(st['lib_read']).toBe('0');
    expect(st['lib_exec']).toBe('126');
    expect(st['read_grant_exec']).toBe('126');
    expect(st['loader_read_grant']).not.toBe('0');
    expect(st['allowed']).toBe('0');
  });

  it('refuses a command outside commandsAllowed before starting it (126), with an audit event', async () => {
    const r = await s.cordon(['run', '--manifest', manifest, '--', '/usr/bin/perl', '-e', '1']);
    expect(r.code).toBe(126);
    expect(r.stderr).toContain('COMMAND_NOT_ALLOWED');
    const denied = s
      .events()
      .filter(
        (e) =>
          e['class_uid'] === 1007 &&
          (e['process'] as { file?: { path?: string } }).file?.path === '/usr/bin/perl',
      );
    expect(denied.at(-1)?.['disposition']).toBe('Blocked');
    const missing = await s.cordon(['run', '--manifest', manifest, '--', 'no-such-cmd']);
    expect(missing.code).toBe(127);
    expect(missing.stderr).toContain('COMMAND_NOT_FOUND');
  });

  it('denies escapes at the system-call layer', async () => {
    const r = await s.cordon(['run', '--manifest', manifest, '--', s.probe, String(process.pid)]);
    expect(r.code, r.stderr).toBe(0);
    const p = probeResults(r.stdout);
    for (const k of [
      'ptrace-attach',
      'ptrace-traceme',
      'process_vm_readv',
      'unshare-user',
      'unshare-net',
      'clone-newuser',
      'mount',
      'umount',
      'pivot_root',
      'bpf',
      'perf_event_open',
      'keyctl',
      'add_key',
      'io_uring_setup',
      'kexec_load',
      'settimeofday',
      'set_mempolicy',
      'modify_ldt',
    ])
      expect(`${k} ${p[k]}`).toBe(`${k} EPERM`);
    expect(p['clone3-newuser']).toBe('ENOSYS');
    // Socket families are an allow list: IP (which leads only to the bridge) and socketpair's
    // unnamed Unix sockets. vsock is not isolated by the network namespace; the kernel itself
    // would answer ok (vsock), EPERM (XDP) or EOPNOTSUPP (socketpair of IP) to these.
    for (const k of [
      'socket-unix',
      'socket-netlink',
      'socket-packet',
      'socket-vsock',
      'socket-alg',
      'socket-bluetooth',
      'socket-key',
      'socket-xdp',
      'socket-unknown',
      'socketpair-inet',
      'socketpair-vsock',
    ])
      expect(`${k} ${p[k]}`).toBe(`${k} EAFNOSUPPORT`);
    expect(p['socket-inet']).toBe('ok');
    expect(p['socket-inet6']).toBe('ok');
    expect(p['socketpair-unix']).toBe('ok');
    // A copy of an allowed binary in anonymous memory is not an allowed binary: only memfds
    // sealed non-executable can be made, and executing one fails.
    expect(p['memfd_create']).toBe('EPERM');
    expect(p['memfd_create-exec']).toBe('EPERM');
    expect(p['memfd_create-noexec']).toBe('ok');
    expect(p['memfd-exec']).toBe('EACCES');
    // The sandbox's init is outside the agent's Landlock domain; the host is another pid namespace.
    expect(p['kill-1']).toBe('EPERM');
    expect(p['proc-1-mem']).toBe('EACCES');
    expect(p['kill-host']).toBe('ESRCH');
    const u = await run('unshare -U true; echo unshare=$?');
    expect(statuses(u.stdout)['unshare']).toBe('1');
    expect(u.stderr).toMatch(/Operation not permitted/);
  });
});

describe('cordon run: network', () => {
  it('reaches granted hosts only through the proxy; nothing else leaves', async () => {
    const url = `http://127.0.0.1:${up.httpPort}/`;
    // A server on one of this machine's own non-loopback addresses, which the host reaches
    // (the control): a refusal inside is then the sandbox's, even on a machine with no route out.
    const hostIp = Object.values(networkInterfaces())
      .flat()
      .find((a) => a !== undefined && a.family === 'IPv4' && !a.internal)?.address;
    expect(hostIp, 'a non-loopback IPv4 address on this machine').toBeDefined();
    const lan = createServer((_q, res) => res.end('lan\n'));
    await new Promise<void>((resolve) => lan.listen(0, hostIp, resolve));
    const lanUrl = `http://${hostIp ?? ''}:${(lan.address() as AddressInfo).port}/`;
    expect(await (await fetch(lanUrl)).text()).toBe('lan\n');
    const r = await run(
      [
        `curl -s -m 5 --noproxy '*' ${lanUrl} >/dev/null; echo noproxy_lan=$?`,
        `curl -s -o /dev/null -w 'allowed=%{http_code}\\n' ${url}`,
        `curl -s -o /dev/null -w 'denied=%{http_code}\\n' http://not-granted.example/`,
        `curl -s -o /dev/null -w 'metadata=%{http_code}\\n' http://169.254.169.254/latest/meta-data/`,
        `curl -s -m 5 --noproxy '*' ${url} >/dev/null; echo noproxy_loopback=$?`,
        `curl -s -m 5 --noproxy '*' http://93.184.216.34/ >/dev/null; echo noproxy_public=$?`,
        `getent hosts example.com; echo dns=$?`,
        `(echo x > /dev/udp/1.1.1.1/53) 2>/dev/null; echo udp=$?`,
        `(echo x > /dev/tcp/1.1.1.1/443) 2>/dev/null; echo tcp=$?`,
        'env',
      ].join('\n'),
    );
    expect(r.code, r.stderr).toBe(0);
    const st = statuses(r.stdout);
    expect(st['allowed']).toBe('200');
    expect(st['denied']).toBe('403');
    expect(st['metadata']).toBe('403');
    expect(st['noproxy_loopback']).toBe('7');
    expect(st['noproxy_public']).toBe('7');
    lan.close();
    expect(st['noproxy_lan']).toBe('7');
    expect(st['dns']).toBe('2');
    expect(st['udp']).not.toBe('0');
    expect(st['tcp']).not.toBe('0');
    const proxy = 'http://127.0.0.1:3128';
    for (const k of [
      'HTTP_PROXY',
      'HTTPS_PROXY',
      'ALL_PROXY',
      'http_proxy',
      'https_proxy',
      'all_proxy',
    ])
      expect(st[k]).toBe(proxy);
    expect(st['NO_PROXY']).toBe('');
    expect(st['no_proxy']).toBe('');
    expect(st['HOME']).toBe(s.home);
    expect(r.stdout).not.toContain('parent-secret');
    expect(r.stdout).not.toContain('AWS_SECRET_ACCESS_KEY');

    // The proxy's decisions are audit events of this session.
    const events = s.events();
    const launch = events
      .filter((e) => e['class_uid'] === 1007 && e['status_code'] === 'SANDBOX_STARTED')
      .at(-1);
    const session = (launch?.['actor'] as { session: { uid: string } }).session.uid;
    const http = events.filter(
      (e) =>
        e['class_uid'] === 4002 &&
        e['http_status'] !== undefined &&
        (e['actor'] as { session?: { uid: string } }).session?.uid === session,
    );
    expect(http.map((e) => e['disposition'])).toEqual(['Allowed', 'Blocked', 'Blocked']);
  });
});

describe('cordon run: the session', () => {
  it('returns the exit code, records launch, processes and exit, and leaves nothing behind', async () => {
    const r = await run('sleep 313 & sleep 1.5; exit 42');
    expect(r.code, r.stderr).toBe(42);
    // The service closed the session when cordon run ended: no record, no egress directory.
    expect(sessionLeftovers(s.env, s.cordonHome)).toEqual([]);
    expect(listSessions(s.env)).toEqual([]);
    const left = spawnSync('pgrep', ['-f', 'sleep 313'], { encoding: 'utf8' });
    expect(left.stdout.trim()).toBe('');
    const events = s.events();
    const launch = events.filter((e) => e['status_code'] === 'SANDBOX_STARTED').at(-1) ?? {};
    const session = (launch['actor'] as { session: { uid: string } }).session.uid;
    const mine = events.filter(
      (e) => (e['actor'] as { session?: { uid: string } }).session?.uid === session,
    );
    const end = mine.find((e) => e['class_uid'] === 1007 && e['activity_id'] === 2);
    expect(end?.['exit_code']).toBe(42);
    // The sampled process tree names what ran inside.
    const names = mine
      .filter((e) => e['class_uid'] === 1007 && e['activity_id'] === 1)
      .map((e) => (e['process'] as { cmd_line?: string }).cmd_line ?? '');
    expect(names.some((n) => n.includes('sleep 313'))).toBe(true);
    const unmapped = launch['unmapped'] as { sandbox: { grants: string[]; masked: string[] } };
    expect(unmapped.sandbox.grants).toContain(`write ${s.home}/Work/out`);
    expect(unmapped.sandbox.masked).toContain(`${s.home}/.ssh`);
    // Nothing of the session in /tmp either (egress sockets live in the runtime directory).
    expect(readdirSync(tmpdir()).filter((f) => f.includes(session))).toEqual([]);
    const schema = new OcsfSchema(OCSF_DIR);
    for (const e of mine) expect(schema.validate(e)).toEqual([]);
  });

  it('passes SIGTERM to the agent and returns its status', async () => {
    const a = await startAgent(
      s.env,
      manifest,
      'trap "echo got-term; exit 7" TERM; echo ready; while :; do sleep 0.1; done',
    );
    a.child.kill('SIGTERM');
    const code = await a.closed;
    expect(a.stdout()).toContain('got-term');
    expect(code).toBe(7);
  });

  it('applies resource limits given on the command line', async () => {
    // --max-processes is in limits.test.ts: it is refused under root, which these tests run as.
    const r = await run('ulimit -t; ulimit -v; ulimit -f', [
      '--max-cpu-seconds',
      '30',
      '--max-memory',
      '2G',
      '--max-file-size',
      '1M',
    ]);
    expect(r.code, r.stderr).toBe(0);
    // bash reports -v and -f in KiB and 1024-byte blocks.
    expect(r.stdout.trim().split('\n')).toEqual(['30', String(2 * 1024 * 1024), '1024']);
    const bad = await run('true', ['--max-memory', 'lots']);
    expect(bad.code).toBe(125);
    expect(bad.stderr).toMatch(/--max-memory "lots" is not a size/);
  });

  it('leaves nothing running when cordon itself is killed outright; the service drops and records the session', async () => {
    const a = await startAgent(s.env, manifest, 'sleep 331 & echo ready; wait');
    expect(spawnSync('pgrep', ['-f', 'sleep 331']).status).toBe(0);
    // The session is the service's while cordon run lives: its record and egress directory.
    const live = await runningSession(s.env);
    expect(live.clientPid).toBe(a.child.pid);
    const record = join(s.cordonHome, 'state/daemon/sessions', `${live.id}.json`);
    expect(existsSync(record)).toBe(true);
    const egress = egressDirOf(s.env, live.id) ?? 'no egress directory';
    expect(existsSync(join(egress, 'egress.sock'))).toBe(true);
    a.child.kill('SIGKILL');
    await a.closed;
    const gone = Date.now() + 5000;
    while (spawnSync('pgrep', ['-f', 'sleep 331']).status === 0 && Date.now() < gone)
      await new Promise((r) => setTimeout(r, 20));
    expect(spawnSync('pgrep', ['-f', 'sleep 331']).status).toBe(1);
    // The service notices its client is gone, closes the session, and says so in the log.
    await until(() => !existsSync(record));
    expect(listSessions(s.env)).toEqual([]);
    expect(existsSync(egress)).toBe(false);
    expect(sessionLeftovers(s.env, s.cordonHome)).toEqual([]);
    const ended = s
      .events()
      .filter(
        (e) =>
          (e['actor'] as { session?: { uid: string } }).session?.uid === live.id &&
          String(e['status_detail']).includes(
            `its client (pid ${live.clientPid}) exited without closing it`,
          ),
      );
    expect(ended.length).toBe(1);
  });

  it('keeps a terminal a terminal (and denies TIOCSTI on it)', () => {
    const cmd = `node ${BIN} run --manifest ${manifest} -- bash -c 'test -t 0 && test -t 1 && echo is-a-tty; ${s.probe}'`;
    const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { env: s.env, encoding: 'utf8' });
    expect(r.stdout).toContain('is-a-tty');
    expect(r.stdout).toMatch(/tiocsti EPERM/);
  });

  it('passes window-size changes to the agent (the terminal signals its foreground group)', () => {
    const agent = `trap 'echo size=$(stty size)' WINCH; echo ready; while :; do sleep 0.1; done`;
    const r = spawnSync(
      'python3',
      [
        join(ROOT, 'test/sandbox/on-pty.py'),
        '101x33',
        '--',
        'node',
        BIN,
        'run',
        '--manifest',
        manifest,
        '--',
        'bash',
        '-c',
        agent,
      ],
      { env: s.env, encoding: 'utf8', timeout: 30_000 },
    );
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('size=33 101');
    // Ctrl-C then ended the agent: 128 + SIGINT.
    expect(r.stdout).toMatch(/status=130/);
  });

  it('Ctrl-C reaches the agent once, even when stdin is not the terminal', async () => {
    const agent = `trap "echo got-int; exit 9" INT; echo ready; while :; do sleep 0.1; done`;
    const cmd = `node ${BIN} run --manifest ${manifest} -- bash -c '${agent}' < /dev/null`;
    const child = spawn('script', ['-qec', cmd, '/dev/null'], {
      env: s.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    await new Promise<void>((resolve) =>
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('ready')) resolve();
      }),
    );
    child.stdin.write('\x03');
    const code = await new Promise<number | null>((resolve) =>
      child.on('close', (c) => resolve(c)),
    );
    expect(out.match(/got-int/g)?.length).toBe(1);
    expect(code).toBe(9);
  });

  it('job control: Ctrl-Z stops the job, the shell takes the terminal back, fg gives it to the agent again', async () => {
    // A real interactive shell on a pseudo-terminal, as a person would use it.
    const child = spawn('script', ['-qec', 'bash --norc --noprofile -i', '/dev/null'], {
      env: { ...s.env, PS1: 'prompt$ ' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const type = (text: string): boolean => child.stdin.write(text);
    await until(() => out.includes('prompt$ '));
    const agent = `echo ready; read line; echo got=$line; exit 4`;
    type(`node ${BIN} run --manifest ${manifest} -- bash -c '${agent}'\n`);
    // The agent's line, not the echo of the command typed.
    await until(() => out.includes('ready\r\n'));
    type('\x1a');
    // The shell reports the stopped job and prompts again: it has the terminal back.
    await until(() => /Stopped/.test(out));
    const mark = out.length;
    type('echo shell-has-it\n');
    await until(() => out.slice(mark).includes('shell-has-it\r\nprompt$ '));
    type('fg\n');
    await new Promise((r) => setTimeout(r, 300));
    // Reading the terminal works only for its foreground group: the agent has it again.
    type('hello\n');
    // The next command is typed once the shell prompts again, as a person does: keys typed
    // while the session is still ending go to the session.
    await until(() => /got=hello\r\nprompt\$ /.test(out));
    type('echo status=$?\n');
    await until(() => /status=4/.test(out));
    type('exit\n');
    await new Promise((r) => child.on('close', r));
  });

  it('fails closed on a manifest that does not verify: nothing runs (125)', async () => {
    const env = JSON.parse(readFileSync(manifest, 'utf8')) as { payload: string };
    const m = JSON.parse(Buffer.from(env.payload, 'base64').toString()) as { readPaths: string[] };
    m.readPaths = ['/'];
    env.payload = Buffer.from(JSON.stringify(m)).toString('base64');
    const tampered = join(s.dir, 'tampered.signed.json');
    writeFileSync(tampered, JSON.stringify(env));
    const marker = join(s.home, 'Work/out/ran');
    const r = await s.cordon([
      'run',
      '--manifest',
      tampered,
      '--',
      'bash',
      '-c',
      `echo > ${marker}`,
    ]);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/SIGNATURE|verification failed/);
    expect(existsSync(marker)).toBe(false);
  });

  it('--unsafe-no-sandbox is refused (exit 125, audited) unless the policy directory allows it', async () => {
    const enforcement = join(s.cordonHome, 'policy', 'enforcement.json');
    expect(JSON.parse(readFileSync(enforcement, 'utf8'))).not.toHaveProperty(
      'allowUnsafeNoSandbox',
    );
    const r = await s.cordon([
      'run',
      '--manifest',
      manifest,
      '--unsafe-no-sandbox',
      '--',
      'bash',
      '-c',
      `cat ${outside}/secret.txt`,
    ]);
    expect(r.code, r.stderr).toBe(125);
    expect(r.stdout).not.toContain('outside');
    expect(r.stderr).toMatch(/UNSAFE_NO_SANDBOX_FORBIDDEN/);
    expect(r.stderr).toContain('allowUnsafeNoSandbox');
    expect(r.stderr).toContain(enforcement);
    const e = s.events().filter((x) => x['status_code'] === 'UNSAFE_NO_SANDBOX_FORBIDDEN');
    expect(e.length).toBe(1);
    // A false setting refuses the same way.
    writeFileSync(
      enforcement,
      JSON.stringify({ allowWithoutGuardrails: true, allowUnsafeNoSandbox: false }),
    );
    const f = await s.cordon(['run', '--manifest', manifest, '--unsafe-no-sandbox', '--', 'true']);
    expect(f.code, f.stderr).toBe(125);
    expect(f.stderr).toMatch(/UNSAFE_NO_SANDBOX_FORBIDDEN/);
  });

  it('--unsafe-no-sandbox, allowed by the policy directory, runs unconfined, warns, and is audited as such', async () => {
    const enforcement = join(s.cordonHome, 'policy', 'enforcement.json');
    writeFileSync(
      enforcement,
      JSON.stringify({ allowWithoutGuardrails: true, allowUnsafeNoSandbox: true }),
    );
    const r = await s.cordon([
      'run',
      '--manifest',
      manifest,
      '--unsafe-no-sandbox',
      '--',
      'bash',
      '-c',
      `cat ${outside}/secret.txt; echo "proxy=$HTTP_PROXY"`,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/WARNING: --unsafe-no-sandbox/);
    expect(r.stdout).toContain('outside');
    expect(r.stdout).toMatch(/proxy=http:\/\/127\.0\.0\.1:\d+/);
    const e = s.events().filter((x) => x['status_code'] === 'UNSAFE_NO_SANDBOX');
    expect(e.length).toBe(1);
    writeFileSync(enforcement, JSON.stringify({ allowWithoutGuardrails: true }));
  });
});

describe('cordon doctor', () => {
  it('reports every layer working on this machine', () => {
    const r = spawnSync(process.execPath, [BIN, 'doctor', '--json'], {
      env: s.env,
      encoding: 'utf8',
    });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as {
      ok: boolean;
      checks: { id: string; ok: boolean }[];
      landlockAbi: number;
    };
    expect(j.ok).toBe(true);
    expect(j.checks.map((c) => c.id)).toEqual([
      'bubblewrap',
      'userns',
      'helper',
      'sandbox',
      'landlock',
      'seccomp',
    ]);
    expect(j.landlockAbi).toBeGreaterThanOrEqual(3);
  });
});
