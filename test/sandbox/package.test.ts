import {
  cpSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validManifest } from '../helpers.js';
import { ROOT, runCli, sandboxEnv, type SandboxEnv, removeEnv } from './harness.js';

// Cordon installed inside a folder an agent may write (a project checkout, ~/tools): the agent
// could patch the code the next `cordon run` executes on the host.
let s: SandboxEnv;
let pkg: string;
let copyBin: string;
const TOOLS = ['/usr/bin/bash', '/usr/bin/cat', '/usr/bin/cp'];

beforeAll(() => {
  s = sandboxEnv('package');
  pkg = join(s.home, 'tools/cordon');
  mkdirSync(join(pkg, 'build'), { recursive: true });
  cpSync(join(ROOT, 'dist'), join(pkg, 'dist'), { recursive: true });
  cpSync(join(ROOT, 'build/Release'), join(pkg, 'build/Release'), { recursive: true });
  for (const f of ['package.json', 'binding.gyp']) cpSync(join(ROOT, f), join(pkg, f));
  symlinkSync(join(ROOT, 'node_modules'), join(pkg, 'node_modules'));
  copyBin = join(pkg, 'dist/cli/main.js');
  mkdirSync(join(s.home, 'work'));
});
afterAll(() => removeEnv(s));

const copy = (args: string[]): ReturnType<typeof runCli> =>
  runCli([copyBin, ...args], { env: s.env }, true);

describe("Cordon's own installation", () => {
  it('refuses to launch (125) when a write grant covers the installation running it', async () => {
    const m = s.sign({
      dataClassification: 'internal',
      readPaths: ['~/tools/**'],
      writePaths: ['~/tools/**'],
      commandsAllowed: TOOLS,
    });
    const before = readFileSync(copyBin, 'utf8');
    const r = await copy([
      'run',
      '--manifest',
      m,
      '--',
      'bash',
      '-c',
      `echo 'require("child_process").execSync("touch /tmp/pwned")' >> ${copyBin}`,
    ]);
    // The endpoint's verification lints with its own installation: the manifest does not pass.
    expect(r.code, r.stderr).toBe(125);
    expect(r.stderr).toContain('PATH_CORDON_PACKAGE');
    expect(readFileSync(copyBin, 'utf8')).toBe(before);
  });

  it('refuses to launch (125, audited) when a grant resolves into the installation through a link', async () => {
    symlinkSync('tools/cordon', join(s.home, 'cordon-link'));
    const m = s.sign({
      dataClassification: 'internal',
      readPaths: ['~/work/**'],
      writePaths: ['~/cordon-link/dist/**'],
      commandsAllowed: TOOLS,
    });
    const before = readFileSync(copyBin, 'utf8');
    const r = await copy(['run', '--manifest', m, '--', 'bash', '-c', `echo x >> ${copyBin}`]);
    expect(r.code, r.stderr).toBe(125);
    expect(r.stderr).toContain("Cordon's own installation");
    expect(readFileSync(copyBin, 'utf8')).toBe(before);
    const denied = s.events().filter((e) => JSON.stringify(e).includes('SANDBOX_PACKAGE_EXPOSED'));
    expect(denied.length).toBe(1);
    rmSync(join(s.home, 'cordon-link'));
  });

  it('lint reports a write grant over the installation as an error', async () => {
    const draft = join(s.dir, 'draft.json');
    writeFileSync(
      draft,
      JSON.stringify(
        validManifest({
          agentName: 'draft',
          readPaths: ['~/tools/**'],
          writePaths: ['~/tools/**'],
          commandsAllowed: TOOLS,
        }),
      ),
    );
    const r = await copy(['manifest', 'lint', draft, '--json']);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toContain('PATH_CORDON_PACKAGE');
  });

  it('under a home-wide read grant the agent sees the installation but cannot change it', async () => {
    const m = s.sign({
      dataClassification: 'public',
      readPaths: ['~/**'],
      writePaths: ['~/work/**'],
      commandsAllowed: TOOLS,
    });
    const before = readFileSync(copyBin, 'utf8');
    const r = await copy([
      'run',
      '--manifest',
      m,
      '--',
      'bash',
      '-c',
      [
        `head=$(cat ${copyBin} | wc -c); echo "read=$?"`,
        `echo '// patched' >> ${copyBin}; echo "patch=$?"`,
        `cp /usr/bin/cat ${pkg}/build/Release/cordon-sandbox; echo "helper=$?"`,
        `echo x > ${s.home}/work/ok; echo "work=$?"`,
      ].join('\n'),
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^patch=[1-9]/m);
    expect(r.stdout).toMatch(/^helper=[1-9]/m);
    expect(r.stdout).toContain('work=0');
    expect(readFileSync(copyBin, 'utf8')).toBe(before);
  });

  // A user-prefix install (`npm config set prefix ~/apps; npm i -g cordon`): the package lies in
  // ~/apps/lib/node_modules/cordon and the command is a link ~/apps/bin/cordon outside it.
  describe('the links that start it and the node binary running it', () => {
    const link = (): string => join(s.home, 'apps/bin/cordon');
    const plant = (target: string): string =>
      `rm -f ${target} && printf '#!/bin/sh\ntouch ${s.dir}/PWNED\n' > ${target} && chmod 755 ${target}`;
    beforeAll(() => {
      mkdirSync(join(s.home, 'apps/lib/node_modules'), { recursive: true });
      mkdirSync(join(s.home, 'apps/bin'), { recursive: true });
      symlinkSync(pkg, join(s.home, 'apps/lib/node_modules/cordon'));
      symlinkSync('../lib/node_modules/cordon/dist/cli/main.js', link());
    });
    const viaLink = (args: string[], env = s.env): ReturnType<typeof runCli> =>
      runCli([link(), ...args], { env }, true);

    it('refuses to launch (125) when a write grant covers the cordon command link the user runs', async () => {
      const m = s.sign({
        dataClassification: 'internal',
        writePaths: ['~/apps/bin/**'],
        commandsAllowed: [...TOOLS, '/usr/bin/rm', '/usr/bin/chmod'],
      });
      const r = await viaLink(['run', '--manifest', m, '--', 'bash', '-c', plant(link())]);
      expect(r.code, r.stderr).toBe(125);
      expect(r.stderr).toContain('PATH_CORDON_PACKAGE');
      expect(r.stderr).toContain(link());
      expect(readlinkSync(link())).toBe('../lib/node_modules/cordon/dist/cli/main.js');
    });

    it('refuses to launch (125) when a write grant covers a link the command passes through', async () => {
      const m = s.sign({
        dataClassification: 'internal',
        writePaths: ['~/apps/lib/node_modules/**'],
        commandsAllowed: [...TOOLS, '/usr/bin/rm', '/usr/bin/ln'],
      });
      const nm = join(s.home, 'apps/lib/node_modules/cordon');
      const r = await viaLink(['run', '--manifest', m, '--', 'bash', '-c', `rm ${nm}`]);
      expect(r.code, r.stderr).toBe(125);
      expect(r.stderr).toContain('PATH_CORDON_PACKAGE');
      expect(r.stderr).toContain(nm);
      expect(realpathSync(nm)).toBe(realpathSync(pkg));
    });

    it('refuses to launch (125, audited) when the grant reaches the command link through a link of its own', async () => {
      symlinkSync('apps/bin', join(s.home, 'appbin'));
      const m = s.sign({
        dataClassification: 'internal',
        writePaths: ['~/appbin/**'],
        commandsAllowed: [...TOOLS, '/usr/bin/rm', '/usr/bin/chmod'],
      });
      const r = await viaLink(['run', '--manifest', m, '--', 'bash', '-c', plant(link())]);
      expect(r.code, r.stderr).toBe(125);
      expect(r.stderr).toContain('SANDBOX_PACKAGE_EXPOSED');
      expect(r.stderr).toContain(link());
      expect(readlinkSync(link())).toBe('../lib/node_modules/cordon/dist/cli/main.js');
      const denied = s
        .events()
        .filter((e) => JSON.stringify(e).includes('SANDBOX_PACKAGE_EXPOSED'));
      expect(denied.length).toBeGreaterThanOrEqual(1);
      rmSync(join(s.home, 'appbin'));
    });

    it('refuses to launch (125) when a write grant covers a cordon on PATH that leads into the installation', async () => {
      const m = s.sign({
        dataClassification: 'internal',
        writePaths: ['~/apps/bin/**'],
        commandsAllowed: [...TOOLS, '/usr/bin/rm', '/usr/bin/chmod'],
      });
      // Started by its real path; the user's shell finds `cordon` on PATH.
      const env = { ...s.env, PATH: `${join(s.home, 'apps/bin')}:${s.env['PATH'] ?? ''}` };
      const r = await runCli(
        [copyBin, 'run', '--manifest', m, '--', 'bash', '-c', plant(link())],
        { env },
        true,
      );
      expect(r.code, r.stderr).toBe(125);
      expect(r.stderr).toContain(link());
      expect(readlinkSync(link())).toBe('../lib/node_modules/cordon/dist/cli/main.js');
    });

    it('lint reports a write grant over the node binary running Cordon, and a launch reaching it through a link is refused (125)', async () => {
      const node = realpathSync(process.execPath);
      const draft = join(s.dir, 'node-draft.json');
      writeFileSync(
        draft,
        JSON.stringify(
          validManifest({
            agentName: 'draft',
            writePaths: [`${dirname(node)}/**`],
            commandsAllowed: TOOLS,
          }),
        ),
      );
      const l = await copy(['manifest', 'lint', draft, '--json']);
      expect(l.code).not.toBe(0);
      expect(l.stdout).toContain('PATH_CORDON_PACKAGE');
      expect(l.stdout).toContain(node);
      symlinkSync(dirname(node), join(s.home, 'nodebin'));
      const m = s.sign({
        dataClassification: 'internal',
        writePaths: ['~/nodebin/**'],
        commandsAllowed: TOOLS,
      });
      const before = readFileSync(node);
      const r = await copy(['run', '--manifest', m, '--', 'bash', '-c', `cp /usr/bin/cat ${node}`]);
      expect(r.code, r.stderr).toBe(125);
      expect(r.stderr).toContain('SANDBOX_PACKAGE_EXPOSED');
      expect(r.stderr).toContain(node);
      expect(readFileSync(node).equals(before)).toBe(true);
      rmSync(join(s.home, 'nodebin'));
    });
  });
});
