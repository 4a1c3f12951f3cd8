import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  ADMIN_GROUP,
  installSystem,
  installUser,
  processesOf,
  SERVICE_COMMENT,
  serviceProgram,
  systemUnit,
  uninstallSystem,
  uninstallUser,
  userUnit,
  type InstallReport,
  type ServiceProgram,
} from '../../src/daemon/install.js';
import { CordonError } from '../../src/errors.js';
import { tempDir } from '../helpers.js';
import { cli } from '../cli/harness.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const MAIN = join(REPO, 'dist/cli/main.js');
const NOBODY = 65534;

/** A unit file as systemd reads it: sections of `Key=value` lines, comments dropped. */
function parseUnit(text: string): Map<string, [string, string][]> {
  const sections = new Map<string, [string, string][]>();
  let current: [string, string][] | undefined;
  for (const line of text.split('\n')) {
    if (line.trim() === '' || /^[#;]/.test(line)) continue;
    const header = /^\[([A-Za-z]+)\]$/.exec(line);
    if (header !== null) {
      current = [];
      sections.set(header[1]!, current);
      continue;
    }
    const kv = /^([A-Za-z]+)=(.*)$/.exec(line);
    expect(kv, `not a directive: ${line}`).not.toBeNull();
    expect(current, `directive outside a section: ${line}`).toBeDefined();
    current!.push([kv![1]!, kv![2]!]);
  }
  return sections;
}

/** The one value of `key` in `section` (a key given twice would be a mistake here). */
function directive(unit: Map<string, [string, string][]>, section: string, key: string): string {
  const values = (unit.get(section) ?? []).filter(([k]) => k === key).map(([, v]) => v);
  expect(values, `${section}.${key}`).toHaveLength(1);
  return values[0]!;
}

// A seccomp filter like the one RestrictAddressFamilies= installs, refusing only AF_NETLINK.
const NO_NETLINK_C = `#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
/* Refuse socket(AF_NETLINK, ...) with EAFNOSUPPORT, as systemd's RestrictAddressFamilies= does
 * (a seccomp filter on socket()'s first argument), then run the program. */
int main(int argc, char **argv) {
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 3),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_NETLINK, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAFNOSUPPORT),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof f / sizeof f[0], f};
  if (argc < 2 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
    perror("nonl");
    return 125;
  }
  if (socket(AF_NETLINK, SOCK_RAW, 0) >= 0 || errno != EAFNOSUPPORT) {
    fputs("nonl: the filter does not hold\\n", stderr);
    return 125;
  }
  execv(argv[1], argv + 1);
  perror("execv");
  return 127;
}
`;

// The unit's SystemCallFilter=@system-service with SystemCallErrorNumber=EPERM and
// RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6, as a seccomp filter of its own (systemd's,
// without systemd), with NoNewPrivileges; then it runs the program.
const SYSTEM_SERVICE_FILTER_C = `#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#define ALLOW(name) \\
  BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_##name, 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
int main(int argc, char **argv) {
  struct sock_filter f[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 6),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 2, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_INET, 1, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_INET6, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAFNOSUPPORT),
@ALLOW@
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
  };
  struct sock_fprog prog = {sizeof f / sizeof f[0], f};
  if (argc < 2 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
    perror("filter");
    return 125;
  }
  execv(argv[1], argv + 1);
  perror("execv");
  return 127;
}
`;

function rootPrecondition(): void {
  expect(process.getuid?.(), 'installing the system service needs root; CI runs as root').toBe(0);
}

function passwdEntry(root: string, db: 'passwd' | 'group', name: string): string[] | undefined {
  const file = join(root, 'etc', db);
  if (!existsSync(file)) return undefined;
  return readFileSync(file, 'utf8')
    .split('\n')
    .map((l) => l.split(':'))
    .find((f) => f[0] === name);
}

const mode = (p: string): number => lstatSync(p).mode & 0o7777;
const changes = (r: InstallReport): string[] => r.steps.filter((s) => s.change).map((s) => s.text);

function codeOf(fn: () => unknown): string {
  try {
    fn();
    return 'OK';
  } catch (e) {
    if (e instanceof CordonError) return e.code;
    throw e;
  }
}

/**
 * The program the installs below run: this node and a package in a place the service can see
 * and only root can change (a checkout may lie under /tmp or /home, which the unit hides; the
 * refusal of those is tested on its own below).
 */
let shippedProgram: ServiceProgram | undefined;
function prog(): ServiceProgram {
  if (shippedProgram !== undefined) return shippedProgram;
  const pkg = mkdtempSync('/run/cordon-install-pkg-');
  chmodSync(pkg, 0o755);
  mkdirSync(join(pkg, 'dist/cli'), { recursive: true });
  writeFileSync(join(pkg, 'dist/cli/bin.js'), '');
  shippedProgram = { ...serviceProgram(), bin: join(pkg, 'dist/cli/bin.js') };
  return shippedProgram;
}
afterAll(() => {
  if (shippedProgram !== undefined)
    rmSync(dirname(dirname(dirname(shippedProgram.bin))), { recursive: true, force: true });
});

const hostPasswd = readFileSync('/etc/passwd', 'utf8');
const hostGroup = readFileSync('/etc/group', 'utf8');

describe('cordon daemon install --system (under --root)', () => {
  it('creates the accounts, the directories with their owners and modes, and the unit; the host is untouched', () => {
    rootPrecondition();
    const root = tempDir();
    const r = installSystem({ root, program: prog() });
    expect(r.dryRun).toBe(false);

    const user = passwdEntry(root, 'passwd', 'cordon');
    expect(user, 'the service user is in the prefix passwd').toBeDefined();
    const [, , uid, gid, comment, home, shell] = user!;
    expect(comment).toBe(SERVICE_COMMENT);
    expect(home).toBe('/var/lib/cordon');
    expect(shell).toBe('/usr/sbin/nologin');
    // A system account: below the first uid of people.
    expect(Number(uid)).toBeGreaterThan(0);
    expect(Number(uid)).toBeLessThan(1000);
    expect(passwdEntry(root, 'group', 'cordon')?.[2]).toBe(gid);
    expect(passwdEntry(root, 'group', ADMIN_GROUP)).toBeDefined();

    const policy = lstatSync(join(root, 'etc/cordon'));
    expect([policy.isDirectory(), policy.uid, policy.gid, mode(join(root, 'etc/cordon'))]).toEqual([
      true,
      0,
      0,
      0o755,
    ]);
    const state = lstatSync(join(root, 'var/lib/cordon'));
    expect([state.isDirectory(), state.uid, state.gid]).toEqual([true, Number(uid), Number(gid)]);
    expect(mode(join(root, 'var/lib/cordon'))).toBe(0o700);
    const unitFile = join(root, 'etc/systemd/system/cordond.service');
    expect(r.unitFile).toBe(realpathSync(unitFile));
    expect([lstatSync(unitFile).uid, mode(unitFile)]).toEqual([0, 0o644]);

    // useradd --prefix wrote the prefix's files only.
    expect(readFileSync('/etc/passwd', 'utf8')).toBe(hostPasswd);
    expect(readFileSync('/etc/group', 'utf8')).toBe(hostGroup);
  });

  it('writes a unit with every hardening directive, running this node and this package', () => {
    rootPrecondition();
    const root = tempDir();
    installSystem({ root, program: prog() });
    const unit = parseUnit(readFileSync(join(root, 'etc/systemd/system/cordond.service'), 'utf8'));
    const program = prog();
    expect(directive(unit, 'Service', 'ExecStart')).toBe(
      `${program.node} ${program.bin} daemon --system`,
    );
    expect(program.node).toBe(realpathSync(process.execPath));
    const expected: Record<string, string> = {
      Type: 'exec',
      User: 'cordon',
      Group: 'cordon',
      RuntimeDirectory: 'cordon',
      RuntimeDirectoryMode: '0755',
      // Sandboxes hold the session directories they were given: a restart must keep them.
      RuntimeDirectoryPreserve: 'restart',
      StateDirectory: 'cordon',
      StateDirectoryMode: '0700',
      ReadOnlyPaths: '/etc/cordon',
      NoNewPrivileges: 'yes',
      ProtectSystem: 'strict',
      ProtectHome: 'yes',
      PrivateTmp: 'yes',
      PrivateDevices: 'yes',
      ProtectKernelTunables: 'yes',
      ProtectKernelModules: 'yes',
      ProtectKernelLogs: 'yes',
      ProtectControlGroups: 'yes',
      ProtectClock: 'yes',
      ProtectHostname: 'yes',
      RestrictAddressFamilies: 'AF_UNIX AF_INET AF_INET6',
      RestrictNamespaces: 'yes',
      LockPersonality: 'yes',
      MemoryDenyWriteExecute: 'no',
      RestrictRealtime: 'yes',
      RestrictSUIDSGID: 'yes',
      SystemCallArchitectures: 'native',
      SystemCallFilter: '@system-service',
      SystemCallErrorNumber: 'EPERM',
      CapabilityBoundingSet: '',
      AmbientCapabilities: '',
      UMask: '0077',
      Restart: 'always',
      RestartSec: '1s',
      LimitNOFILE: '65536',
    };
    for (const [k, v] of Object.entries(expected)) expect(directive(unit, 'Service', k), k).toBe(v);
    // Not there on purpose: the policy must stay root's, and peer uids must stay real.
    for (const k of ['ConfigurationDirectory', 'PrivateUsers', 'DynamicUser'])
      expect(
        unit.get('Service')?.some(([key]) => key === k),
        k,
      ).toBe(false);
    expect(directive(unit, 'Install', 'WantedBy')).toBe('multi-user.target');
    // The text says why W^X is off.
    expect(systemUnit(program)).toMatch(/# [^\n]*JIT[^\n]*\nMemoryDenyWriteExecute=no/);
  });

  it('systemd-analyze verify accepts the system and user units without a warning (needs systemd-analyze)', () => {
    const analyze = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((p) => existsSync(p));
    expect(analyze, 'systemd-analyze (Debian package systemd) checks the units').toBeDefined();
    const dir = tempDir();
    const program = serviceProgram();
    for (const [name, text] of [
      ['system', systemUnit(program)],
      ['user', userUnit(program, [], [['CORDON_HOME', '/srv/a "b"/$c/100%']])],
    ] as const) {
      mkdirSync(join(dir, name));
      const file = join(dir, name, 'cordond.service');
      writeFileSync(file, text);
      const r = spawnSync(analyze!, ['verify', file], { encoding: 'utf8' });
      expect(r.status, `${name}: ${r.stderr}`).toBe(0);
      expect(r.stderr + r.stdout, name).toBe('');
    }
    // The offline security review: an exposure level systemd calls OK (it was 1.9 when written).
    const file = join(dir, 'system', 'cordond.service');
    const s = spawnSync(analyze!, ['security', '--offline=yes', file], { encoding: 'utf8' });
    const level = /Overall exposure level for cordond\.service: ([\d.]+) (\w+)/.exec(s.stdout);
    expect(level, s.stdout + s.stderr).not.toBeNull();
    expect(Number(level![1])).toBeLessThanOrEqual(2.0);
    expect(level![2]).toBe('OK');
  });

  it('a second install changes nothing', () => {
    rootPrecondition();
    const root = tempDir();
    installSystem({ root, program: prog() });
    const before = ['etc/passwd', 'etc/group', 'etc/systemd/system/cordond.service'].map((f) =>
      readFileSync(join(root, f), 'utf8'),
    );
    const unitIno = lstatSync(join(root, 'etc/systemd/system/cordond.service')).ino;
    const again = installSystem({ root, program: prog() });
    expect(changes(again)).toEqual([]);
    expect(again.steps.length).toBeGreaterThanOrEqual(5);
    expect(
      ['etc/passwd', 'etc/group', 'etc/systemd/system/cordond.service'].map((f) =>
        readFileSync(join(root, f), 'utf8'),
      ),
    ).toEqual(before);
    expect(lstatSync(join(root, 'etc/systemd/system/cordond.service')).ino).toBe(unitIno);
  });

  it('a dry run reports the steps and changes nothing', () => {
    rootPrecondition();
    const root = tempDir();
    const r = installSystem({ root, dryRun: true, program: prog() });
    expect(r.dryRun).toBe(true);
    expect(changes(r).join('\n')).toMatch(/create system user cordon[\s\S]*cordond\.service/);
    expect(existsSync(join(root, 'etc'))).toBe(false);
    expect(existsSync(join(root, 'var'))).toBe(false);
  });

  it('repairs a policy directory others could write to', () => {
    rootPrecondition();
    const root = tempDir();
    mkdirSync(join(root, 'etc/cordon'), { recursive: true });
    chmodSync(join(root, 'etc/cordon'), 0o777);
    chownSync(join(root, 'etc/cordon'), NOBODY, NOBODY);
    const r = installSystem({ root, program: prog() });
    expect(changes(r).join('\n')).toMatch(
      /make \/etc\/cordon root:root 755 \(was 65534:65534 777\)/,
    );
    const st = lstatSync(join(root, 'etc/cordon'));
    expect([st.uid, st.gid, mode(join(root, 'etc/cordon'))]).toEqual([0, 0, 0o755]);
  });
});

describe('cordon daemon uninstall --system (under --root)', () => {
  it('reverses the install but keeps the audit log, closed to root; --purge removes it', () => {
    rootPrecondition();
    const root = tempDir();
    installSystem({ root, program: prog() });
    const state = join(root, 'var/lib/cordon');
    const uid = Number(passwdEntry(root, 'passwd', 'cordon')![2]);
    writeFileSync(join(state, 'log'), 'records\n');
    chownSync(join(state, 'log'), uid, uid);
    // What `systemctl enable` leaves.
    const wants = join(root, 'etc/systemd/system/multi-user.target.wants');
    mkdirSync(wants);
    symlinkSync('/etc/systemd/system/cordond.service', join(wants, 'cordond.service'));

    const r = uninstallSystem({ root, program: prog() });
    expect(existsSync(join(root, 'etc/systemd/system/cordond.service'))).toBe(false);
    expect(existsSync(join(wants, 'cordond.service'))).toBe(false);
    expect(passwdEntry(root, 'passwd', 'cordon')).toBeUndefined();
    expect(passwdEntry(root, 'group', 'cordon')).toBeUndefined();
    expect(passwdEntry(root, 'group', ADMIN_GROUP)).toBeUndefined();
    // The policy directory was empty: nothing of the administrator's is lost.
    expect(existsSync(join(root, 'etc/cordon'))).toBe(false);
    // The log stays, in a directory only root can enter: a later account given the same uid
    // cannot reach it.
    expect(readFileSync(join(state, 'log'), 'utf8')).toBe('records\n');
    const st = lstatSync(state);
    expect([st.uid, st.gid, mode(state)]).toEqual([0, 0, 0o700]);
    expect(r.steps.map((s) => s.text).join('\n')).toMatch(/keep \/var\/lib\/cordon/);

    // Idempotent.
    expect(changes(uninstallSystem({ root, program: prog() }))).toEqual([]);

    // A new install leaves the kept directory closed for systemd to hand over at start.
    const again = installSystem({ root, program: prog() });
    expect(changes(again).join('\n')).toMatch(/keep \/var\/lib\/cordon closed/);
    expect(lstatSync(state).uid).toBe(0);

    uninstallSystem({ root, purge: true });
    expect(existsSync(state)).toBe(false);
  });

  it('keeps what is not its own: a non-empty policy directory, admins, a cordon user made elsewhere', () => {
    rootPrecondition();
    const root = tempDir();
    mkdirSync(join(root, 'etc/cordon'), { recursive: true });
    writeFileSync(join(root, 'etc/cordon/trust.json'), '{}');
    writeFileSync(
      join(root, 'etc/passwd'),
      'root:x:0:0:root:/root:/bin/bash\ncordon:x:990:990:made by config management:/nonexistent:/usr/sbin/nologin\nalice:x:1000:1000::/home/alice:/bin/bash\n',
    );
    writeFileSync(
      join(root, 'etc/group'),
      `root:x:0:\ncordon:x:990:\nalice:x:1000:\n${ADMIN_GROUP}:x:989:alice\n`,
    );
    const r = installSystem({ root, program: prog() });
    expect(r.steps.map((s) => s.text).join('\n')).toMatch(
      /user cordon exists \(uid 990\), made elsewhere/,
    );
    expect(lstatSync(join(root, 'var/lib/cordon')).uid).toBe(990);

    const u = uninstallSystem({ root, program: prog() });
    const text = u.steps.map((s) => s.text).join('\n');
    expect(passwdEntry(root, 'passwd', 'cordon')).toBeDefined();
    expect(text).toMatch(/keep user cordon/);
    expect(passwdEntry(root, 'group', ADMIN_GROUP)?.[3]).toBe('alice');
    expect(text).toMatch(/keep group cordon-admin: members alice/);
    expect(readFileSync(join(root, 'etc/cordon/trust.json'), 'utf8')).toBe('{}');

    uninstallSystem({ root, purge: true });
    expect(passwdEntry(root, 'group', ADMIN_GROUP)).toBeUndefined();
    expect(passwdEntry(root, 'passwd', 'alice')).toBeDefined();
  });
});

describe('cordon daemon install --system refuses', () => {
  it('a cordon account that belongs to a person, before changing anything', () => {
    rootPrecondition();
    const root = tempDir();
    mkdirSync(join(root, 'etc'));
    writeFileSync(
      join(root, 'etc/passwd'),
      'cordon:x:1001:1001:Cordon Smith:/home/cordon:/bin/bash\n',
    );
    writeFileSync(join(root, 'etc/group'), 'cordon:x:1001:\n');
    expect(codeOf(() => installSystem({ root, program: prog() }))).toBe('DAEMON_INSTALL_CONFLICT');
    expect(existsSync(join(root, 'etc/systemd'))).toBe(false);
    expect(existsSync(join(root, 'var'))).toBe(false);
  });

  it('a group named cordon with members (they would share the service group)', () => {
    rootPrecondition();
    const root = tempDir();
    mkdirSync(join(root, 'etc'));
    writeFileSync(join(root, 'etc/passwd'), 'bob:x:1002:1002::/home/bob:/bin/bash\n');
    writeFileSync(join(root, 'etc/group'), 'cordon:x:995:bob\n');
    expect(codeOf(() => installSystem({ root, program: prog() }))).toBe('DAEMON_INSTALL_CONFLICT');
    expect(passwdEntry(root, 'passwd', 'cordon')).toBeUndefined();
  });

  it('code the service cannot see or that others can change, and a path that would inject a directive', () => {
    rootPrecondition();
    const root = tempDir();
    const real = serviceProgram();
    // Under /tmp: PrivateTmp= hides it from the service.
    const hidden = join(tempDir(), 'bin.js');
    writeFileSync(hidden, '');
    expect(codeOf(() => installSystem({ root, program: { node: real.node, bin: hidden } }))).toBe(
      'DAEMON_INSTALL_UNSAFE',
    );
    // A package directory anyone can write to: whoever does runs code as the service. (Made in
    // /run: a directory the service sees, outside the repository other tests read.)
    const pkg = mkdtempSync('/run/cordon-install-test-');
    try {
      chmodSync(pkg, 0o777);
      mkdirSync(join(pkg, 'dist/cli'), { recursive: true });
      writeFileSync(join(pkg, 'dist/cli/bin.js'), '');
      const bin = join(pkg, 'dist/cli/bin.js');
      let err: unknown;
      try {
        installSystem({ root, program: { node: real.node, bin } });
      } catch (e) {
        err = e;
      }
      expect((err as CordonError).code).toBe('DAEMON_INSTALL_UNSAFE');
      expect((err as CordonError).file).toBe(pkg);
      // Made safe, the same package is accepted (the check is what refused it).
      chmodSync(pkg, 0o755);
      expect(codeOf(() => installSystem({ root, program: { node: real.node, bin } }))).toBe('OK');
    } finally {
      rmSync(pkg, { recursive: true, force: true });
    }
    // A newline would end ExecStart= and start a directive of its own.
    const inject = { node: `${real.node}\nExecStartPre=/bin/sh -c id`, bin: real.bin };
    expect(codeOf(() => systemUnit(inject))).toBe('DAEMON_INSTALL_UNSAFE');
    expect(codeOf(() => installSystem({ root: tempDir(), program: inject }))).toBe(
      'DAEMON_INSTALL_UNSAFE',
    );
  });

  it('a --root that is not a directory: DAEMON_INSTALL_FAILED, exit 3, nothing written', async () => {
    rootPrecondition();
    const file = join(tempDir(), 'not-a-dir');
    writeFileSync(file, '');
    const r = await cli(['daemon', 'install', '--system', '--root', file, '--json'], {
      home: '/home/alice',
      cordonHome: tempDir(),
    });
    expect(r.code).toBe(3);
    expect(r.json()).toMatchObject({ ok: false, code: 'DAEMON_INSTALL_FAILED', file });
    expect(readFileSync(file, 'utf8')).toBe('');
  });

  it('quotes paths with spaces and escapes specifiers and variables in ExecStart', () => {
    const unit = parseUnit(
      systemUnit({ node: '/opt/my node/bin/node', bin: '/opt/c$HOME/100%/dist/cli/bin.js' }),
    );
    expect(directive(unit, 'Service', 'ExecStart')).toBe(
      '"/opt/my node/bin/node" "/opt/c$$HOME/100%%/dist/cli/bin.js" daemon --system',
    );
  });
});

/** Run the built CLI as another user. */
function cliAs(
  uid: number,
  args: string[],
  env: Record<string, string>,
): ReturnType<typeof spawnSync> {
  return spawnSync(
    'setpriv',
    [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '--', process.execPath, MAIN, ...args],
    { env: { PATH: '/usr/bin:/bin', ...env }, encoding: 'utf8' },
  );
}

describe('as an ordinary user', () => {
  it('--system is refused with DAEMON_INSTALL_NOT_ROOT (exit 1) and writes nothing; --user installs and uninstalls in HOME', () => {
    rootPrecondition();
    expect(existsSync(MAIN), 'the CLI is built (npm run build)').toBe(true);
    const dir = tempDir();
    chmodSync(dir, 0o755);
    const root = join(dir, 'root');
    mkdirSync(root);
    const home = join(dir, 'home');
    mkdirSync(home);
    chownSync(home, NOBODY, NOBODY);

    const refused = cliAs(NOBODY, ['daemon', 'install', '--system', '--root', root, '--json'], {
      HOME: home,
    });
    expect(refused.status, String(refused.stderr)).toBe(1);
    expect(JSON.parse(String(refused.stdout))).toMatchObject({
      ok: false,
      code: 'DAEMON_INSTALL_NOT_ROOT',
    });
    expect(String(refused.stderr)).toMatch(/needs root[\s\S]*--user/);
    const unrefused = cliAs(NOBODY, ['daemon', 'uninstall', '--system', '--root', root], {
      HOME: home,
    });
    expect(unrefused.status).toBe(1);
    expect(String(unrefused.stderr)).toMatch(/DAEMON_INSTALL_NOT_ROOT/);
    expect(existsSync(join(root, 'etc'))).toBe(false);
    // A dry run changes nothing, so anyone may review it.
    const dry = cliAs(NOBODY, ['daemon', 'install', '--system', '--root', root, '--dry-run'], {
      HOME: home,
    });
    // This checkout is the program a real install would run: one under /tmp or a home is refused
    // by the dry run as by the install (the service could not see it).
    if (/^\/(tmp|var\/tmp|home|root|run\/user)\//.test(realpathSync(REPO))) {
      expect(dry.status, String(dry.stdout)).toBe(1);
      expect(String(dry.stderr)).toMatch(/DAEMON_INSTALL_UNSAFE/);
    } else {
      expect(dry.status, String(dry.stderr)).toBe(0);
      expect(String(dry.stdout)).toMatch(/would create system user cordon/);
    }
    expect(existsSync(join(root, 'etc'))).toBe(false);

    const ok = cliAs(NOBODY, ['daemon', 'install', '--user'], { HOME: home });
    expect(ok.status, String(ok.stderr)).toBe(0);
    expect(String(ok.stdout)).toContain(
      'systemctl --user daemon-reload && systemctl --user enable --now cordond',
    );
    const unitFile = join(home, '.config/systemd/user/cordond.service');
    const st = lstatSync(unitFile);
    expect([st.uid, mode(unitFile)]).toEqual([NOBODY, 0o644]);
    const unit = parseUnit(readFileSync(unitFile, 'utf8'));
    const program = serviceProgram();
    expect(directive(unit, 'Service', 'ExecStart')).toBe(`${program.node} ${program.bin} daemon`);
    expect(directive(unit, 'Service', 'Restart')).toBe('always');
    expect(directive(unit, 'Install', 'WantedBy')).toBe('default.target');

    const gone = cliAs(NOBODY, ['daemon', 'uninstall', '--user'], { HOME: home });
    expect(gone.status, String(gone.stderr)).toBe(0);
    expect(existsSync(unitFile)).toBe(false);
  });
});

describe('cordon daemon install --user', () => {
  it('writes the hardening a user manager can apply, and the directories the install ran with', () => {
    const home = tempDir();
    // Environment= expands specifiers (%) but not variables ($): only % is escaped there.
    const env = {
      CORDON_HOME: join(home, 'cordon $home 100%'),
      XDG_CONFIG_HOME: join(home, 'xdg'),
    };
    const r = installUser({ home, env, stateDir: join(home, 'state') });
    expect(r.unitFile).toBe(join(home, 'xdg/systemd/user/cordond.service'));
    const unit = parseUnit(readFileSync(r.unitFile, 'utf8'));
    const program = serviceProgram();
    expect(directive(unit, 'Service', 'ExecStart')).toBe(
      `${program.node} ${program.bin} daemon --state-dir ${join(home, 'state')}`,
    );
    const envs = (unit.get('Service') ?? []).filter(([k]) => k === 'Environment').map(([, v]) => v);
    expect(envs).toEqual([
      `"CORDON_HOME=${join(home, 'cordon $home 100%%')}"`,
      `XDG_CONFIG_HOME=${join(home, 'xdg')}`,
    ]);
    for (const [k, v] of Object.entries({
      NoNewPrivileges: 'yes',
      RestrictNamespaces: 'yes',
      LockPersonality: 'yes',
      MemoryDenyWriteExecute: 'no',
      RestrictRealtime: 'yes',
      RestrictSUIDSGID: 'yes',
      RestrictAddressFamilies: 'AF_UNIX AF_INET AF_INET6',
      SystemCallArchitectures: 'native',
      SystemCallFilter: '@system-service',
      SystemCallErrorNumber: 'EPERM',
      UMask: '0077',
      Restart: 'always',
      RestartSec: '1s',
    }))
      expect(directive(unit, 'Service', k), k).toBe(v);
    // Mount-namespace options would need unprivileged user namespaces in a user manager.
    for (const k of ['ProtectSystem', 'ProtectHome', 'PrivateTmp', 'User'])
      expect(
        unit.get('Service')?.some(([key]) => key === k),
        k,
      ).toBe(false);

    expect(changes(installUser({ home, env, stateDir: join(home, 'state') }))).toEqual([]);
    // Enabled, then uninstalled: the unit and systemctl's link go.
    const wants = join(home, 'xdg/systemd/user/default.target.wants');
    mkdirSync(wants);
    symlinkSync(r.unitFile, join(wants, 'cordond.service'));
    uninstallUser({ home, env });
    expect(existsSync(r.unitFile)).toBe(false);
    expect(existsSync(join(wants, 'cordond.service'))).toBe(false);
    expect(changes(uninstallUser({ home, env }))).toEqual([]);
  });
});

describe('the choices the unit rests on', () => {
  it('RestrictAddressFamilies leaves out AF_NETLINK: a connection by name still works when netlink sockets are refused', async () => {
    expect(
      existsSync('/usr/bin/cc'),
      'a C compiler builds the filter (as for the native addon)',
    ).toBe(true);
    const dir = tempDir();
    writeFileSync(join(dir, 'nonl.c'), NO_NETLINK_C);
    const cc = spawnSync('cc', ['-O2', '-Wall', '-o', join(dir, 'nonl'), join(dir, 'nonl.c')], {
      encoding: 'utf8',
    });
    expect(cc.status, cc.stderr).toBe(0);
    // net.connect asks getaddrinfo with AI_ADDRCONFIG, for which glibc opens a netlink socket
    // (strace shows socket(AF_NETLINK, ..., NETLINK_ROUTE) = -1 EAFNOSUPPORT under the filter).
    const script = `
      const net = require('node:net');
      const s = net.createServer((c) => c.end('hi')).listen(0, '127.0.0.1', () => {
        const c = net.connect(s.address().port, 'localhost');
        c.on('data', (d) => { console.log(String(d)); s.close(); c.end(); });
        c.on('error', (e) => { console.log('error ' + e.code); process.exit(1); });
      });`;
    const child = spawn(join(dir, 'nonl'), [process.execPath, '-e', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const code = await new Promise<number | null>((r) => child.on('close', r));
    // 125 would mean the filter did not hold (the wrapper checks it before running node).
    expect([code, out.trim(), err]).toEqual([0, 'hi', '']);
  });

  it("node runs Cordon under the unit's system-call filter (@system-service, other calls EPERM) and address families, as an unprivileged user", () => {
    rootPrecondition();
    expect(existsSync(MAIN), 'the CLI is built (npm run build)').toBe(true);
    expect(existsSync('/usr/bin/systemd-analyze'), 'systemd-analyze lists @system-service').toBe(
      true,
    );
    // The allow list as this machine's systemd defines it, groups expanded.
    const names = new Set<string>();
    const seen = new Set<string>();
    const expand = (group: string): void => {
      if (seen.has(group)) return;
      seen.add(group);
      const out = spawnSync('systemd-analyze', ['syscall-filter', group], { encoding: 'utf8' });
      expect(out.status, out.stderr).toBe(0);
      for (const w of out.stdout
        .split('\n')
        .filter((l) => !/^\s*#/.test(l))
        .join(' ')
        .split(/\s+/)) {
        if (w === '' || w === group) continue;
        if (w.startsWith('@')) expand(w);
        else names.add(w);
      }
    };
    expand('@system-service');
    expect(names.size).toBeGreaterThan(200);
    expect(names.has('read') && names.has('getsockopt') && !names.has('reboot')).toBe(true);

    const dir = tempDir();
    chmodSync(dir, 0o755);
    const allow = [...names]
      .filter((n) => /^[a-z0-9_]+$/.test(n) && n !== 'socket')
      .map((n) => `#ifdef __NR_${n}\n  ALLOW(${n})\n#endif`)
      .join('\n');
    writeFileSync(join(dir, 'filter.c'), SYSTEM_SERVICE_FILTER_C.replace('@ALLOW@', allow));
    const cc = spawnSync('cc', ['-O2', '-Wall', '-o', join(dir, 'filter'), join(dir, 'filter.c')], {
      encoding: 'utf8',
    });
    expect(cc.status, cc.stderr).toBe(0);

    const uid = 60200;
    const home = join(dir, 'home');
    mkdirSync(home);
    const env = { PATH: '/usr/bin:/bin', HOME: home, CORDON_HOME: join(home, 'cordon') };
    const asService = (args: string[]): ReturnType<typeof spawnSync> =>
      spawnSync(
        'setpriv',
        [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '--', join(dir, 'filter'), ...args],
        { env, encoding: 'utf8', timeout: 120_000 },
      );
    chownSync(home, uid, uid);
    // What the daemon does: files, the audit log with its native lock, signing, verifying.
    for (const args of [['init'], ['audit', 'emit-test', '--count', '300']]) {
      const r = asService([process.execPath, MAIN, ...args]);
      expect(r.status, `${args.join(' ')}: ${String(r.stderr)}`).toBe(0);
    }
    const verified = asService([process.execPath, MAIN, 'audit', 'verify']);
    // 4: intact, completeness unproven (this policy directory names no witness).
    expect([verified.status, String(verified.stderr)]).toEqual([4, '']);
    expect(String(verified.stdout)).toMatch(/INTACT/);
    // A Unix socket server reading its callers' credentials, fs.watch, a TCP connection by name;
    // and the filter really is in force.
    const script = `
      const fs = require('node:fs'), net = require('node:net'), path = require('node:path');
      const status = fs.readFileSync('/proc/self/status', 'utf8');
      if (!/^Seccomp:\\s+2$/m.test(status) || !/^NoNewPrivs:\\s+1$/m.test(status)) throw new Error(status);
      const { peerCredentials } = require(${JSON.stringify(join(REPO, 'build/Release/cordon_native.node'))});
      const dir = process.argv[1];
      const w = fs.watch(dir, () => {});
      const srv = net.createServer((c) => c.end(JSON.stringify(peerCredentials(c._handle.fd))));
      srv.listen(path.join(dir, 'd.sock'), () => {
        let b = '';
        net.connect(path.join(dir, 'd.sock')).on('data', (d) => (b += d)).on('end', () => {
          if (JSON.parse(b).uid !== process.getuid()) throw new Error(b);
          const t = net.createServer((x) => x.end('tcp')).listen(0, '127.0.0.1', () => {
            net.connect(t.address().port, 'localhost').on('data', (d) => {
              console.log('ok ' + d);
              w.close(); srv.close(); t.close();
            });
          });
        });
      });`;
    const r = asService([process.execPath, '-e', script, home]);
    expect([r.status, String(r.stdout).trim(), String(r.stderr)]).toEqual([0, 'ok tcp', '']);
  });

  it('processesOf finds the processes of a uid (uninstall refuses while the service runs)', async () => {
    rootPrecondition();
    const child = spawn(
      'setpriv',
      ['--reuid=60124', '--regid=60124', '--clear-groups', 'sleep', '30'],
      {
        stdio: 'ignore',
      },
    );
    try {
      for (let i = 0; i < 50 && !processesOf(60124).includes(child.pid!); i++)
        await new Promise((r) => setTimeout(r, 50));
      expect(processesOf(60124)).toContain(child.pid);
      expect(processesOf(60125)).toEqual([]);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

afterEach(() => {
  // Nothing may leak onto the host: the prefixes are temporary, the host's accounts unchanged.
  expect(readFileSync('/etc/passwd', 'utf8')).toBe(hostPasswd);
  expect(readFileSync('/etc/group', 'utf8')).toBe(hostGroup);
});
