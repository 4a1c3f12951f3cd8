import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/manifest/schema.js';
import { createPdp, requestDigest } from '../../src/policy/pdp.js';
import type { Decision, PolicyRequest } from '../../src/policy/types.js';
import { createFsPathResolver } from '../../src/store/path-resolver.js';
import { tempDir, validManifest } from '../helpers.js';

const H = '/home/alice';

const m = validManifest;

const base = m({
  readPaths: [
    '~/Work/**',
    '/srv/data/*.csv',
    '/srv/logs/app-?.log',
    '/opt/share',
    '~/Docs/**/notes/**',
    '/data/café',
  ],
  writePaths: ['~/Work/out/**', '~/Work/scratch', '/tmp/agent'],
  networkScopes: [
    'https://api.example.com',
    'https://*.corp.example.com',
    'https://files.example.com/v1',
    'https://files.example.com/v1/admin',
    'http://[10.20.0.0/16]:8080',
    'https://[2001:db8::/32]',
    'https://bücher.example',
    'wss://stream.example.com',
    'https://127.0.0.1:9443',
  ],
  apiScopes: ['sheets:read', 'sheets:write:restricted', 'mcp:fs:*', 'mcp:git:status'],
  commandsAllowed: ['/usr/bin/git', '/usr/bin/make'],
  requiresApproval: [
    'write:~/Work/out/**',
    'read:~/Work/secret/**',
    'exec:/usr/bin/make',
    'https://files.example.com/v1/admin',
    'sheets:write:*',
    'mcp:fs:write_file',
  ],
  secrets: ['SHEETS_TOKEN'],
});

type Row = [PolicyRequest, Decision['effect'], string?, string?];

let rowsRun = 0;

function run(rows: Row[], pdp = createPdp({ manifest: base, home: H })): void {
  for (const [req, effect, code, rule] of rows) {
    rowsRun++;
    const dec = pdp.decide(req);
    const label = JSON.stringify(req);
    expect(dec.effect, label).toBe(effect);
    if (code !== undefined) expect(dec.code, label).toBe(code);
    if (rule !== undefined) expect(dec.rule, label).toBe(rule);
    expect(dec.reason.length, label).toBeGreaterThan(10);
  }
}

const read = (path: string): PolicyRequest => ({ kind: 'file.read', path });
const write = (path: string, op?: 'create' | 'modify' | 'delete'): PolicyRequest =>
  op === undefined ? { kind: 'file.write', path } : { kind: 'file.write', path, op };
const get = (url: string): PolicyRequest => ({ kind: 'http.request', method: 'GET', url });
const conn = (
  host: string,
  port: number,
  extra: { scheme?: string; address?: string } = {},
): PolicyRequest => ({ kind: 'net.connect', host, port, ...extra });
const api = (scope: string): PolicyRequest => ({ kind: 'api.call', scope });

describe('paths: grants, globs and the most specific rule', () => {
  it('literal, *, ?, ** grants', () => {
    run([
      [read(`${H}/Work/a.txt`), 'allow', 'ALLOWED', '/readPaths/0'],
      [read(`${H}/Work`), 'allow', 'ALLOWED', '/readPaths/0'],
      [read(`${H}/Work/deep/er/x`), 'allow', 'ALLOWED', '/readPaths/0'],
      [read(`${H}/Workshop/x`), 'deny', 'NOT_GRANTED', 'default-deny'],
      [read(`${H}/work/a.txt`), 'deny', 'NOT_GRANTED'],
      [read('/srv/data/a.csv'), 'allow', 'ALLOWED', '/readPaths/1'],
      [read('/srv/data/.hidden.csv'), 'allow', 'ALLOWED', '/readPaths/1'],
      [read('/srv/data/sub/a.csv'), 'deny', 'NOT_GRANTED'],
      [read('/srv/data/a.csv.bak'), 'deny', 'NOT_GRANTED'],
      [read('/srv/data'), 'deny', 'NOT_GRANTED'],
      [read('/srv/logs/app-1.log'), 'allow', 'ALLOWED', '/readPaths/2'],
      [read('/srv/logs/app-12.log'), 'deny', 'NOT_GRANTED'],
      [read('/srv/logs/app-.log'), 'deny', 'NOT_GRANTED'],
      [read('/opt/share'), 'allow', 'ALLOWED', '/readPaths/3'],
      [read('/opt/share/x/y'), 'allow', 'ALLOWED', '/readPaths/3'],
      [read('/opt/shared'), 'deny', 'NOT_GRANTED'],
      [read(`${H}/Docs/notes/a`), 'allow', 'ALLOWED', '/readPaths/4'],
      [read(`${H}/Docs/x/y/notes/a`), 'allow', 'ALLOWED', '/readPaths/4'],
      [read(`${H}/Docs/x/y/notebook/a`), 'deny', 'NOT_GRANTED'],
      [read('/etc/passwd'), 'deny', 'NOT_GRANTED'],
      [read('/'), 'deny', 'NOT_GRANTED'],
      // A write grant implies read, and the deeper grant names the decision.
      [read(`${H}/Work/out/r.txt`), 'allow', 'ALLOWED', '/writePaths/0'],
      [read(`${H}/Work/scratch/x`), 'allow', 'ALLOWED', '/writePaths/1'],
      [write(`${H}/Work/scratch/x`), 'allow', 'ALLOWED', '/writePaths/1'],
      [write(`${H}/Work/scratch`, 'delete'), 'allow', 'ALLOWED', '/writePaths/1'],
      [write(`${H}/Work/a.txt`), 'deny', 'NOT_GRANTED'],
      [write('/tmp/agent/f'), 'allow', 'ALLOWED', '/writePaths/2'],
      [write('/tmp/agents/f'), 'deny', 'NOT_GRANTED'],
      [write('/srv/data/a.csv'), 'deny', 'NOT_GRANTED'],
    ]);
  });

  it('lexical normalisation before matching; relative, control, NFD and /proc aliases are denied', () => {
    run([
      [read(`${H}/Work/./a`), 'allow', 'ALLOWED'],
      [read(`${H}/Work//a`), 'allow', 'ALLOWED'],
      [read(`${H}/Work/a/`), 'allow', 'ALLOWED'],
      [read(`${H}/Work/x/../a`), 'allow', 'ALLOWED'],
      [read(`${H}/Work/../.ssh/id_rsa`), 'deny', 'MANDATORY_DENY', 'deny:ssh'],
      [read(`${H}/Work/../../alice/.aws/credentials`), 'deny', 'MANDATORY_DENY', 'deny:aws'],
      [read(`/../../..${H}/.ssh/config`), 'deny', 'MANDATORY_DENY', 'deny:ssh'],
      [read(`${H}/Work/../Workshop`), 'deny', 'NOT_GRANTED'],
      [read('Work/a'), 'deny', 'PATH_INVALID'],
      [read(''), 'deny', 'PATH_INVALID'],
      [read(`${H}/Work/a\nb`), 'deny', 'PATH_INVALID'],
      [read(`${H}/Work/a\u0000b`), 'deny', 'PATH_INVALID'],
      [read(`${H}/Work/\u202eexe.txt`), 'deny', 'PATH_INVALID'],
      [read('/data/café'), 'allow', 'ALLOWED', '/readPaths/5'],
      // The NFD spelling is a different directory on Linux: never judged as the NFC grant.
      [read('/data/cafe\u0301'), 'deny', 'PATH_INVALID'],
      [read(`/proc/self/root${H}/.ssh/id_rsa`), 'deny', 'PATH_PROC_ALIAS'],
      [read(`/proc/self/root${H}/Work/a`), 'deny', 'PATH_PROC_ALIAS'],
      [read('/proc/1234/cwd/secret'), 'deny', 'PATH_PROC_ALIAS'],
      [read('/proc/thread-self/root/etc/shadow'), 'deny', 'PATH_PROC_ALIAS'],
      [read('/proc/self/fd/3'), 'deny', 'PATH_PROC_ALIAS'],
      [read('/proc/1/task/1/root/x'), 'deny', 'PATH_PROC_ALIAS'],
      [read('/dev/fd/3'), 'deny', 'PATH_PROC_ALIAS'],
      [read('/dev/stdin'), 'deny', 'PATH_PROC_ALIAS'],
      [read('/proc/self/../self/root/x'), 'deny', 'PATH_PROC_ALIAS'],
      [read('/a'.repeat(2100)), 'deny', 'PATH_INVALID'],
    ]);
  });
});

describe('mandatory denies', () => {
  const deniedReads: [string, string][] = [
    ['.ssh/id_ed25519', 'ssh'],
    ['.ssh', 'ssh'],
    ['.gnupg/private-keys-v1.d/x.key', 'gnupg'],
    ['.aws/credentials', 'aws'],
    ['.azure/msal_token_cache.json', 'azure'],
    ['.config/gcloud/application_default_credentials.json', 'gcloud'],
    ['.kube/config', 'kube'],
    ['.docker/config.json', 'docker'],
    ['.netrc', 'package-credentials'],
    ['.npmrc', 'package-credentials'],
    ['.pypirc', 'package-credentials'],
    ['.git-credentials', 'package-credentials'],
    ['.config/gh/hosts.yml', 'package-credentials'],
    ['.local/share/keyrings/login.keyring', 'keyrings'],
    ['.password-store/bank.gpg', 'keyrings'],
    ['.config/google-chrome/Default/Cookies', 'browser-profiles'],
    ['.config/chromium/Default/Login Data', 'browser-profiles'],
    ['.mozilla/firefox/abc.default/logins.json', 'browser-profiles'],
    ['.config/BraveSoftware/Brave-Browser/Default/Cookies', 'browser-profiles'],
    ['.config/microsoft-edge/Default/Cookies', 'browser-profiles'],
    ['.config/cordon/trust.json', 'cordon'],
    ['.local/state/cordon/accepted.json', 'cordon'],
  ];
  const all = m({ readPaths: ['~/**', '/etc/**'], writePaths: ['~/**', '/etc/**', '/srv/**'] });
  const pdp = createPdp({ manifest: all, home: H, cordonDirs: ['/srv/cordon-policy'] });

  it('hold inside a home-wide grant, for reads and writes', () => {
    run(
      deniedReads.flatMap(([p, id]): Row[] => [
        [read(`${H}/${p}`), 'deny', 'MANDATORY_DENY', `deny:${id}`],
        [write(`${H}/${p}`), 'deny', 'MANDATORY_DENY', `deny:${id}`],
      ]),
      pdp,
    );
  });

  it('write-only denies: shell startup files and git hooks/config can be read but not changed', () => {
    run(
      [
        [read(`${H}/.bashrc`), 'allow', 'ALLOWED'],
        [write(`${H}/.bashrc`), 'deny', 'MANDATORY_DENY', 'deny:shell-startup'],
        [write(`${H}/.profile`), 'deny', 'MANDATORY_DENY', 'deny:shell-startup'],
        [write(`${H}/.zshrc`), 'deny', 'MANDATORY_DENY', 'deny:shell-startup'],
        [write(`${H}/.config/fish/config.fish`), 'deny', 'MANDATORY_DENY', 'deny:shell-startup'],
        [read(`${H}/src/app/.git/config`), 'allow', 'ALLOWED'],
        [write(`${H}/src/app/.git/config`), 'deny', 'MANDATORY_DENY', 'deny:git-hooks'],
        [write(`${H}/src/app/.git/hooks/pre-commit`), 'deny', 'MANDATORY_DENY', 'deny:git-hooks'],
        [write(`${H}/src/app/.git/hooks`, 'delete'), 'deny', 'MANDATORY_DENY', 'deny:git-hooks'],
        [write(`${H}/src/app/.git/HEAD`), 'allow', 'ALLOWED'],
        [write(`${H}/src/app/.github/hooks/x`), 'allow', 'ALLOWED'],
        [read('/etc/shadow'), 'deny', 'MANDATORY_DENY', 'deny:system-secrets'],
        [read('/etc/sudoers.d/90-users'), 'deny', 'MANDATORY_DENY', 'deny:system-secrets'],
        [read('/etc/hosts'), 'allow', 'ALLOWED'],
        [read('/srv/cordon-policy/trust.json'), 'deny', 'MANDATORY_DENY', 'deny:cordon'],
        [write('/srv/cordon-policy/revocations.json'), 'deny', 'MANDATORY_DENY', 'deny:cordon'],
        [write('/srv/cordon-policyx/f'), 'allow', 'ALLOWED'],
      ],
      pdp,
    );
  });

  it('overrides lift one deny, for read or write, optionally only some paths, and are reported', () => {
    const o = m({
      readPaths: ['~/.aws/config', '~/.kube/**', '~/.config/cordon/**'],
      writePaths: ['~/.bashrc'],
      overrides: [
        { deny: 'aws', reason: 'reads the default region', paths: ['~/.aws/config'] },
        { deny: 'kube', reason: 'reads cluster names for reports' },
        { deny: 'shell-startup', access: 'write', reason: 'maintains the PATH line of .bashrc' },
      ],
    });
    const pdp2 = createPdp({ manifest: o, home: H });
    run(
      [
        [read(`${H}/.aws/config`), 'allow', 'ALLOWED', '/readPaths/0'],
        [read(`${H}/.aws/credentials`), 'deny', 'MANDATORY_DENY', 'deny:aws'],
        [read(`${H}/.kube/config`), 'allow', 'ALLOWED'],
        [write(`${H}/.kube/config`), 'deny', 'MANDATORY_DENY', 'deny:kube'],
        [write(`${H}/.bashrc`), 'allow', 'ALLOWED', '/writePaths/0'],
        [read(`${H}/.config/cordon/trust.json`), 'deny', 'MANDATORY_DENY', 'deny:cordon'],
      ],
      pdp2,
    );
    expect(pdp2.decide(read(`${H}/.aws/config`)).overrides).toEqual(['/overrides/0']);
    expect(pdp2.decide(write(`${H}/.bashrc`)).overrides).toEqual(['/overrides/2']);
    expect(pdp2.decide(read(`${H}/.kube/config`)).overrides).toEqual(['/overrides/1']);
  });
});

describe('symlinks, resolved on the real filesystem', () => {
  const setup = () => {
    const root = tempDir();
    const home = join(root, 'home');
    mkdirSync(join(home, '.ssh'), { recursive: true });
    mkdirSync(join(home, 'Work', 'sub'), { recursive: true });
    mkdirSync(join(root, 'outside'), { recursive: true });
    writeFileSync(join(home, '.ssh', 'id_ed25519'), 'secret');
    writeFileSync(join(home, 'Work', 'ok.txt'), 'ok');
    symlinkSync(join(home, '.ssh', 'id_ed25519'), join(home, 'Work', 'key-link'));
    symlinkSync(join(home, '.ssh'), join(home, 'Work', 'ssh-dir'));
    symlinkSync('../.ssh/authorized_keys', join(home, 'Work', 'dangling'));
    symlinkSync(join(root, 'outside'), join(home, 'Work', 'out-link'));
    symlinkSync(join(home, 'Work', 'loop-a'), join(home, 'Work', 'loop-b'));
    symlinkSync(join(home, 'Work', 'loop-b'), join(home, 'Work', 'loop-a'));
    symlinkSync(join(home, 'Work', 'sub'), join(home, 'Work', 'sub-link'));
    const man = m({ readPaths: ['~/Work/**'], writePaths: ['~/Work/**'] });
    return {
      root,
      home,
      pdp: createPdp({ manifest: man, home, resolvePath: createFsPathResolver() }),
    };
  };

  it('a symlink into ~/.ssh is judged as ~/.ssh; outside grants reach nothing; loops deny', () => {
    const { root, home, pdp } = setup();
    run(
      [
        [read(join(home, 'Work', 'ok.txt')), 'allow', 'ALLOWED'],
        [read(join(home, 'Work', 'key-link')), 'deny', 'MANDATORY_DENY', 'deny:ssh'],
        [read(join(home, 'Work', 'ssh-dir', 'id_ed25519')), 'deny', 'MANDATORY_DENY', 'deny:ssh'],
        [read(join(home, 'Work', 'ssh-dir', 'new-file')), 'deny', 'MANDATORY_DENY', 'deny:ssh'],
        [write(join(home, 'Work', 'dangling')), 'deny', 'MANDATORY_DENY', 'deny:ssh'],
        [write(join(home, 'Work', 'out-link', 'f')), 'deny', 'NOT_GRANTED'],
        [read(join(root, 'outside')), 'deny', 'NOT_GRANTED'],
        [read(join(home, 'Work', 'loop-a')), 'deny', 'PATH_UNRESOLVABLE'],
        [write(join(home, 'Work', 'sub-link', 'new.txt')), 'allow', 'ALLOWED'],
        [write(join(home, 'Work', 'brand-new', 'deeper', 'file')), 'allow', 'ALLOWED'],
        [read(join(home, 'Work', 'ok.txt', 'not-a-dir')), 'allow', 'ALLOWED'],
      ],
      pdp,
    );
  });

  it('a rename needs both ends writable, and is judged on the resolved destination', () => {
    const { home, pdp } = setup();
    run(
      [
        [
          {
            kind: 'file.write',
            op: 'rename',
            path: join(home, 'Work', 'ok.txt'),
            to: join(home, 'Work', 'ok2.txt'),
          },
          'allow',
          'ALLOWED',
        ],
        [
          {
            kind: 'file.write',
            op: 'rename',
            path: join(home, 'Work', 'ok.txt'),
            to: join(home, 'Work', 'ssh-dir', 'authorized_keys'),
          },
          'deny',
          'MANDATORY_DENY',
        ],
        [
          {
            kind: 'file.write',
            op: 'rename',
            path: join(home, 'Work', 'ok.txt'),
            to: '/tmp/elsewhere',
          },
          'deny',
          'NOT_GRANTED',
        ],
        [
          { kind: 'file.write', op: 'rename', path: join(home, 'Work', 'ok.txt') },
          'deny',
          'REQUEST_INVALID',
        ],
      ],
      pdp,
    );
  });

  it('exec: the real binary decides; both the symlink and its target are allowed; a copy elsewhere is not', () => {
    const root = tempDir();
    mkdirSync(join(root, 'bin'));
    writeFileSync(join(root, 'bin', 'python3.11'), '');
    symlinkSync(join(root, 'bin', 'python3.11'), join(root, 'bin', 'python3'));
    writeFileSync(join(root, 'bin', 'copy-of-python'), '');
    symlinkSync(join(root, 'bin', 'python3.11'), join(root, 'bin', 'other-name'));
    const resolver = createFsPathResolver();
    const man = m({
      commandsAllowed: [join(root, 'bin', 'python3')],
      requiresApproval: [`exec:${join(root, 'bin', 'python3')}`],
    });
    const pdp = createPdp({
      manifest: man,
      home: H,
      resolvePath: resolver,
      resolveCommand: resolver,
    });
    run(
      [
        [
          { kind: 'exec', path: join(root, 'bin', 'python3'), argv: ['python3', '-c', '1'] },
          'ask',
          'APPROVAL_REQUIRED',
          '/requiresApproval/0',
        ],
        [{ kind: 'exec', path: join(root, 'bin', 'python3.11') }, 'ask', 'APPROVAL_REQUIRED'],
        [{ kind: 'exec', path: join(root, 'bin', 'other-name') }, 'ask', 'APPROVAL_REQUIRED'],
        [{ kind: 'exec', path: join(root, 'bin', 'copy-of-python') }, 'deny', 'NOT_GRANTED'],
        [{ kind: 'exec', path: '/usr/bin/perl' }, 'deny', 'NOT_GRANTED'],
      ],
      pdp,
    );
  });
});

describe('exec and approvals on commands', () => {
  it('lexical commands', () => {
    run([
      [{ kind: 'exec', path: '/usr/bin/git' }, 'allow', 'ALLOWED', '/commandsAllowed/0'],
      [{ kind: 'exec', path: '/usr/bin/../bin/git' }, 'allow', 'ALLOWED'],
      [{ kind: 'exec', path: '/usr/bin/make' }, 'ask', 'APPROVAL_REQUIRED', '/requiresApproval/2'],
      [{ kind: 'exec', path: '/usr/bin/gitk' }, 'deny', 'NOT_GRANTED'],
      [{ kind: 'exec', path: '/bin/sh' }, 'deny', 'NOT_GRANTED'],
      [{ kind: 'exec', path: 'git' }, 'deny', 'PATH_INVALID'],
      [{ kind: 'exec', path: `${H}/.ssh/git` }, 'deny', 'MANDATORY_DENY'],
    ]);
  });
});

describe('network', () => {
  it('hosts: exact, wildcard (never the apex), IDNA, case, trailing dot, ports, schemes', () => {
    run([
      [get('https://api.example.com/x'), 'allow', 'ALLOWED', '/networkScopes/0'],
      [get('https://API.Example.COM/x'), 'allow', 'ALLOWED', '/networkScopes/0'],
      [get('https://api.example.com./x'), 'allow', 'ALLOWED', '/networkScopes/0'],
      [get('https://api.example.com:443/x'), 'allow', 'ALLOWED'],
      [get('https://api.example.com:8443/x'), 'deny', 'NOT_GRANTED'],
      [get('http://api.example.com/x'), 'deny', 'NOT_GRANTED'],
      [get('https://api.example.com.evil.net/x'), 'deny', 'NOT_GRANTED'],
      [get('https://evilapi.example.com/x'), 'deny', 'NOT_GRANTED'],
      [get('https://x.corp.example.com/'), 'allow', 'ALLOWED', '/networkScopes/1'],
      [get('https://a.b.c.corp.example.com/'), 'allow', 'ALLOWED', '/networkScopes/1'],
      [get('https://corp.example.com/'), 'deny', 'NOT_GRANTED'],
      [get('https://xcorp.example.com/'), 'deny', 'NOT_GRANTED'],
      [get('https://bücher.example/'), 'allow', 'ALLOWED', '/networkScopes/6'],
      [get('https://xn--bcher-kva.example/'), 'allow', 'ALLOWED', '/networkScopes/6'],
      [get('https://BÜCHER.example/'), 'allow', 'ALLOWED'],
      [get('wss://stream.example.com/live'), 'allow', 'ALLOWED', '/networkScopes/7'],
      [get('ws://stream.example.com/live'), 'deny', 'NOT_GRANTED'],
      [get('ftp://api.example.com/'), 'deny', 'REQUEST_INVALID'],
      [get('not a url'), 'deny', 'NET_HOST_INVALID'],
      [get('https://api.example.com\t/x'), 'allow', 'ALLOWED'],
      [conn('api.example.com', 443), 'allow', 'ALLOWED'],
      [conn('api.example.com', 443, { scheme: 'https' }), 'allow', 'ALLOWED'],
      [conn('api.example.com', 443, { scheme: 'http' }), 'deny', 'NOT_GRANTED'],
      [conn('api.example.com', 80), 'deny', 'NOT_GRANTED'],
      [conn('API.EXAMPLE.COM.', 443), 'allow', 'ALLOWED'],
      [conn('api.example.com', 0), 'deny', 'REQUEST_INVALID'],
      [conn('api.example.com', 70000), 'deny', 'REQUEST_INVALID'],
      [conn('exa mple.com', 443), 'deny', 'NET_HOST_INVALID'],
    ]);
  });

  it('path prefixes: whole segments, dot segments resolved, most specific scope; tunnels need unrestricted scopes', () => {
    run([
      [get('https://files.example.com/v1'), 'allow', 'ALLOWED', '/networkScopes/2'],
      [get('https://files.example.com/v1/list'), 'allow', 'ALLOWED', '/networkScopes/2'],
      [get('https://files.example.com/v10'), 'deny', 'NOT_GRANTED'],
      [get('https://files.example.com/v1/../v2/x'), 'deny', 'NOT_GRANTED'],
      [get('https://files.example.com/v1/%2e%2e/v2'), 'deny', 'NOT_GRANTED'],
      [
        get('https://files.example.com/v1/admin/users'),
        'ask',
        'APPROVAL_REQUIRED',
        '/requiresApproval/3',
      ],
      [get('https://files.example.com/'), 'deny', 'NOT_GRANTED'],
      [conn('files.example.com', 443), 'deny', 'NOT_GRANTED'],
      [conn('x.corp.example.com', 443), 'allow', 'ALLOWED'],
    ]);
  });

  it('internal addresses in every notation are denied unless granted as an IP literal', () => {
    const forms = [
      '127.0.0.1',
      '2130706433',
      '0x7f.1',
      '0177.0.0.1',
      '127.1',
      '0x7f000001',
      '[::ffff:127.0.0.1]',
      '[::ffff:7f00:1]',
      '[::1]',
      'localhost',
      'api.localhost',
      '0.0.0.0',
      '[::]',
    ];
    const meta = [
      '169.254.169.254',
      '0xa9fea9fe',
      '2852039166',
      '[::ffff:169.254.169.254]',
      '[fd00:ec2::254]',
      '100.100.100.200',
      '169.254.170.2',
    ];
    const priv = [
      '10.0.0.1',
      '172.16.5.4',
      '192.168.1.1',
      '100.64.1.1',
      '169.254.1.1',
      '224.0.0.251',
      '[fe80::1]',
      '[fc00::1]',
      '[ff02::1]',
      '255.255.255.255',
      '[64:ff9b::10.0.0.1]',
      '[2002:a00:1::]',
      // Local-use NAT64, IPv4-translated, Teredo, 6to4 and NAT64 embedding private v4, and the
      // rest of the special-purpose registries.
      '[64:ff9b:1::a00:1]',
      '[64:ff9b:1:ffff::1]',
      '[::ffff:0:10.0.0.1]',
      '[::ffff:0:127.0.0.1]',
      '[::ffff:0:a9fe:a9fe]',
      '[2001:0:4136:e378:8000:63bf:3fff:fdd2]',
      '[2002:c0a8:101::1]',
      '[64:ff9b::192.168.1.1]',
      '[2001:db8::1]',
      '[2001:2::1]',
      '[3fff::1]',
      '[100::1]',
      '[5f00::1]',
      '[fec0::1]',
      '198.18.0.1',
      '192.0.0.8',
      '240.0.0.1',
      '192.0.2.1',
      '198.51.100.7',
      '203.0.113.9',
      '192.88.99.1',
    ];
    run(
      [...forms, ...meta, ...priv].map((h): Row => [
        get(`http://${h}/`),
        'deny',
        'NET_INTERNAL_ADDRESS',
        'internal-address',
      ]),
    );
    run([
      [conn('fe80::1%eth0', 443), 'deny', 'NET_INTERNAL_ADDRESS'],
      [conn('[fe80::1%25eth0]', 443), 'deny', 'NET_INTERNAL_ADDRESS'],
      [conn('127.0.0.1', 9443), 'allow', 'ALLOWED', '/networkScopes/8'],
      [get('https://127.0.0.1:9443/'), 'allow', 'ALLOWED', '/networkScopes/8'],
      [get('https://2130706433:9443/'), 'allow', 'ALLOWED', '/networkScopes/8'],
      [get('https://127.0.0.1:9444/'), 'deny', 'NET_INTERNAL_ADDRESS'],
      [get('http://10.20.3.4:8080/'), 'allow', 'ALLOWED', '/networkScopes/4'],
      [get('http://0x0a.20.3.4:8080/'), 'allow', 'ALLOWED', '/networkScopes/4'],
      [get('http://10.21.3.4:8080/'), 'deny', 'NET_INTERNAL_ADDRESS'],
      [get('https://[2001:db8::5]/'), 'allow', 'ALLOWED', '/networkScopes/5'],
      [get('https://[2001:db9::5]/'), 'deny', 'NOT_GRANTED'],
      // Global NAT64 and 6to4 of a public address are public.
      [get('https://[64:ff9b::808:808]/'), 'deny', 'NOT_GRANTED'],
      [get('https://[2002:808:808::1]/'), 'deny', 'NOT_GRANTED'],
      [get('https://93.184.216.34/'), 'deny', 'NOT_GRANTED'],
    ]);
  });

  it('the resolved address decides too (DNS rebinding): a granted name resolving inside is denied', () => {
    run([
      [conn('api.example.com', 443, { address: '93.184.216.34' }), 'allow', 'ALLOWED'],
      [conn('api.example.com', 443, { address: '127.0.0.1' }), 'deny', 'NET_INTERNAL_ADDRESS'],
      [
        conn('api.example.com', 443, { address: '169.254.169.254' }),
        'deny',
        'NET_INTERNAL_ADDRESS',
      ],
      [
        conn('api.example.com', 443, { address: '::ffff:10.0.0.1' }),
        'deny',
        'NET_INTERNAL_ADDRESS',
      ],
      [conn('api.example.com', 443, { address: 'fd00:ec2::254' }), 'deny', 'NET_INTERNAL_ADDRESS'],
      [conn('api.example.com', 443, { address: 'not-an-ip' }), 'deny', 'REQUEST_INVALID'],
      [
        {
          kind: 'http.request',
          method: 'GET',
          url: 'https://api.example.com/',
          address: '192.168.0.10',
        },
        'deny',
        'NET_INTERNAL_ADDRESS',
      ],
      [
        {
          kind: 'http.request',
          method: 'GET',
          url: 'https://x.corp.example.com/',
          address: '10.0.0.8',
        },
        'deny',
        'NET_INTERNAL_ADDRESS',
      ],
    ]);
  });
});

describe('API scopes and secrets', () => {
  it('exact and wildcard scopes, approvals, invalid scopes', () => {
    run([
      [api('sheets:read'), 'allow', 'ALLOWED', '/apiScopes/0'],
      [api('sheets:write:restricted'), 'ask', 'APPROVAL_REQUIRED', '/requiresApproval/4'],
      [api('sheets:write'), 'deny', 'NOT_GRANTED'],
      [api('sheets:delete'), 'deny', 'NOT_GRANTED'],
      [api('mcp:fs:read_file'), 'allow', 'ALLOWED', '/apiScopes/2'],
      [api('mcp:fs:write_file'), 'ask', 'APPROVAL_REQUIRED', '/requiresApproval/5'],
      [api('mcp:git:status'), 'allow', 'ALLOWED', '/apiScopes/3'],
      [api('mcp:git:push'), 'deny', 'NOT_GRANTED'],
      [api('mcp:fsx:read_file'), 'deny', 'NOT_GRANTED'],
      [api('mcp:fs'), 'deny', 'NOT_GRANTED'],
      [api('*'), 'deny', 'REQUEST_INVALID'],
      [api('mcp:fs:*'), 'deny', 'REQUEST_INVALID'],
      [api('sheets:read:x:y'), 'deny', 'REQUEST_INVALID'],
      [{ kind: 'secret.get', name: 'SHEETS_TOKEN' }, 'allow', 'ALLOWED', '/secrets/0'],
      [{ kind: 'secret.get', name: 'AWS_SECRET' }, 'deny', 'NOT_GRANTED'],
    ]);
  });
});

describe('approvals, digests and failure', () => {
  it('ask becomes allow only with a token the verifier accepts for this exact request', () => {
    const seen: string[] = [];
    const pdp = createPdp({
      manifest: base,
      home: H,
      verifyApproval: (token, _req, digest) => {
        seen.push(digest);
        return token === `ok:${digest}`;
      },
    });
    const req = api('sheets:write:restricted');
    const digest = requestDigest(req);
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    run(
      [
        [req, 'ask', 'APPROVAL_REQUIRED'],
        [{ ...req, approvalToken: `ok:${digest}` }, 'allow', 'APPROVED', '/requiresApproval/4'],
        [{ ...req, approvalToken: 'forged' }, 'ask', 'APPROVAL_INVALID'],
        // A token for one request does not approve another.
        [{ ...api('mcp:fs:write_file'), approvalToken: `ok:${digest}` }, 'ask', 'APPROVAL_INVALID'],
        // A token never turns a deny into an allow.
        [
          { ...api('sheets:delete'), approvalToken: `ok:${requestDigest(api('sheets:delete'))}` },
          'deny',
          'NOT_GRANTED',
        ],
      ],
      pdp,
    );
    expect(requestDigest({ ...req, approvalToken: 'x' })).toBe(digest);
    expect(requestDigest({ kind: 'exec', path: '/usr/bin/make', argv: ['make', 'a'] })).not.toBe(
      requestDigest({ kind: 'exec', path: '/usr/bin/make', argv: ['make', 'b'] }),
    );
  });

  it('a request naming another manifest digest is denied', () => {
    const pdp = createPdp({ manifest: base, home: H, manifestDigest: `sha256:${'a'.repeat(64)}` });
    run(
      [
        [
          { ...read(`${H}/Work/a`), manifestDigest: `sha256:${'b'.repeat(64)}` },
          'deny',
          'MANIFEST_DIGEST_MISMATCH',
        ],
        [
          { ...read(`${H}/Work/a`), manifestDigest: `sha256:${'a'.repeat(64)}` },
          'allow',
          'ALLOWED',
        ],
      ],
      pdp,
    );
  });

  it('any exception inside decide() is a deny with PDP_ERROR; malformed requests are REQUEST_INVALID', () => {
    const pdp = createPdp({
      manifest: base,
      home: H,
      resolvePath: () => {
        throw new Error('EIO');
      },
    });
    run([[read(`${H}/Work/a`), 'deny', 'PDP_ERROR', 'pdp-error']], pdp);
    const plain = createPdp({ manifest: base, home: H });
    expect(plain.decide(null as unknown as PolicyRequest).code).toBe('REQUEST_INVALID');
    expect(plain.decide({ kind: 'teleport' } as unknown as PolicyRequest).code).toBe(
      'REQUEST_INVALID',
    );
    expect(plain.decide({ kind: 'file.read' } as unknown as PolicyRequest).effect).toBe('deny');
    expect(plain.decide({ kind: 'api.call', scope: 42 } as unknown as PolicyRequest).code).toBe(
      'REQUEST_INVALID',
    );
  });

  it('bad manifest entries fail at compile time with their pointer', () => {
    const bad = { ...base, networkScopes: ['https://*'] } as Manifest;
    expect(() => createPdp({ manifest: bad, home: H })).toThrow(
      expect.objectContaining({ code: 'POLICY_COMPILE', pointer: '/networkScopes/0' }),
    );
    const badPath = { ...base, readPaths: ['relative/x'] } as Manifest;
    expect(() => createPdp({ manifest: badPath, home: H })).toThrow(
      expect.objectContaining({ code: 'POLICY_COMPILE', pointer: '/readPaths/0' }),
    );
  });
});

describe('generated variants', () => {
  it('every spelling of a denied path is denied, every spelling of a granted path is allowed', () => {
    const spell = (p: string): string[] => {
      const segs = p.split('/').slice(1);
      return [
        p,
        p + '/',
        p.replace(/\//g, '//'),
        '/.' + p,
        p.replace(/\/([^/]+)$/, '/./$1'),
        `/x/..${p}`,
        `${p.replace(/\/[^/]+$/, '')}/zz/../${segs[segs.length - 1] ?? ''}`,
      ];
    };
    const rows: Row[] = [];
    for (const p of [
      `${H}/.ssh/id_rsa`,
      `${H}/.aws/credentials`,
      `${H}/.gnupg/pubring.kbx`,
      `${H}/.kube/config`,
      `${H}/.netrc`,
    ]) {
      for (const v of spell(p)) rows.push([read(v), 'deny', 'MANDATORY_DENY']);
    }
    for (const p of [`${H}/Work/report.xlsx`, '/opt/share/doc.txt', '/srv/data/a.csv']) {
      for (const v of spell(p)) rows.push([read(v), 'allow', 'ALLOWED']);
    }
    for (const p of [`${H}/Work/out/r.txt`, `${H}/Work/scratch/n.txt`]) {
      for (const v of spell(p)) rows.push([write(v), p.includes('/out/') ? 'ask' : 'allow']);
    }
    run(rows);
  });

  it('every notation of the metadata address, on every scheme and port', () => {
    const rows: Row[] = [];
    for (const h of [
      '169.254.169.254',
      '2852039166',
      '0xa9.0xfe.0xa9.0xfe',
      '0251.0376.0251.0376',
      '169.16689662',
      '[::ffff:a9fe:a9fe]',
    ]) {
      for (const u of ['http', 'https', 'ws', 'wss'])
        for (const port of ['', ':80', ':8080'])
          rows.push([get(`${u}://${h}${port}/latest/meta-data/`), 'deny', 'NET_INTERNAL_ADDRESS']);
    }
    run(rows);
  });
});

describe('case count', () => {
  it('the table-driven rows above number at least 300', () => {
    expect(rowsRun).toBeGreaterThanOrEqual(300);
    console.log(`pdp table rows: ${rowsRun}`);
  });
});
