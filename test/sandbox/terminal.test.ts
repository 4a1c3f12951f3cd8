import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, listSessions, ROOT, runningSession, sandboxEnv, type SandboxEnv } from './harness.js';

// The agent never holds a descriptor of the user's terminal: the session runs on a
// pseudo-terminal of its own that Cordon relays. These tests drive real pseudo-terminals
// (script(1) and an interactive bash on one) the way a person at a terminal does.
let s: SandboxEnv;
let manifest: string;
let thief: string;
let out: string;

beforeAll(() => {
  s = sandboxEnv('term');
  out = join(s.home, 'Work/out');
  mkdirSync(out, { recursive: true });
  thief = join(s.dir, 'bin/tty-thief');
  const cc = spawnSync('gcc', ['-O1', '-o', thief, join(ROOT, 'test/sandbox/tty-thief.c')], {
    encoding: 'utf8',
  });
  expect(cc.status, cc.stderr).toBe(0);
  for (const tool of ['script', 'readlink'])
    expect(spawnSync('which', [tool]).status, `${tool} is needed`).toBe(0);
  manifest = s.sign({
    readPaths: ['~/Work/**'],
    writePaths: ['~/Work/out/**'],
    commandsAllowed: [
      '/usr/bin/bash',
      '/usr/bin/cat',
      '/usr/bin/ls',
      '/usr/bin/readlink',
      '/usr/bin/sleep',
      '/usr/bin/stty',
      thief,
    ],
  });
});
afterAll(() => rmSync(s.dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 }));

/** Whether `cond` became true within `ms`. */
async function until(cond: () => boolean, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

/** An interactive bash on a new pseudo-terminal, as in a terminal emulator. */
function shell(): {
  child: ChildProcessWithoutNullStreams;
  output: () => string;
  type: (t: string) => void;
  expectSoon: (re: RegExp, ms?: number) => Promise<void>;
} {
  const child = spawn('script', ['-qec', 'bash --norc --noprofile -i', '/dev/null'], {
    // No history file: a shell killed at the end writes none into the home being removed.
    env: { ...s.env, PS1: 'prompt$ ', HISTFILE: '/dev/null' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let text = '';
  child.stdout.on('data', (d: Buffer) => (text += d.toString()));
  return {
    child,
    output: () => text,
    type: (t) => void child.stdin.write(t),
    expectSoon: async (re, ms = 10_000) => {
      if (!(await until(() => re.test(text), ms)))
        throw new Error(`timed out waiting for ${String(re)} in ${JSON.stringify(text)}`);
    },
  };
}

/** Kill every session's `cordon run` left by a test (its relay and sandbox follow it). */
function killSessions(): void {
  for (const r of listSessions(s.env)) {
    try {
      process.kill(r.clientPid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

const readOr = (file: string): string => (existsSync(file) ? readFileSync(file, 'utf8') : '');

describe('cordon run: the session has its own terminal', () => {
  it('after Ctrl-Z, a sandboxed process that takes its terminal does not read what the user types at the shell', async () => {
    const log = join(out, 'thief.log');
    const sh = shell();
    try {
      await sh.expectSoon(/prompt\$ /);
      const agent = `${thief} ${log} & echo ready; read line; echo got=$line`;
      sh.type(`node ${BIN} run --manifest ${manifest} -- bash -c '${agent}'\n`);
      await sh.expectSoon(/ready\r\n/);
      sh.type('\x1a');
      await sh.expectSoon(/Stopped/);
      // The thief, left running in a process group of its own, has taken its terminal.
      expect(await until(() => readOr(log).includes('armed'))).toBe(true);
      expect(readOr(log)).toMatch(/armed tcsetpgrp=0/);
      const mark = sh.output().length;
      sh.type('read -s pw; echo shell-got=$pw\n');
      await new Promise((r) => setTimeout(r, 300));
      sh.type('hunter2\n');
      const shellGotIt = await until(
        () => sh.output().slice(mark).includes('shell-got=hunter2'),
        5000,
      );
      await new Promise((r) => setTimeout(r, 300));
      expect(readOr(log)).not.toContain('hunter2');
      expect(shellGotIt, sh.output()).toBe(true);
    } finally {
      sh.child.kill('SIGKILL');
      killSessions();
    }
  }, 40_000);

  it('the agent sees its own pseudo-terminal on 0-2; the user’s terminal is not reachable inside', () => {
    const script = join(s.home, 'Work/inside.sh');
    writeFileSync(
      script,
      [
        'for f in 0 1 2; do echo in$f=$(readlink /proc/$$/fd/$f); done',
        'echo pts=$(ls /dev/pts)',
        'exec 9<>"$1" && echo user-tty=opened || echo user-tty=refused',
        'readlink /proc/1/fd/0 >/dev/null 2>&1; echo proc1fd=$?',
      ].join('\n'),
    );
    // Outside, the user's terminal by name; inside, the same script is given that name.
    const cmd = `t=$(readlink /proc/self/fd/0); echo out0=$t; exec node '${BIN}' run --manifest '${manifest}' -- bash ${script} $t`;
    const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { env: s.env, encoding: 'utf8' });
    const v = (k: string): string => new RegExp(`${k}=(\\S*)`).exec(r.stdout)?.[1] ?? '';
    expect(v('out0'), r.stdout).toMatch(/^\/dev\/pts\/\d+$/);
    expect(v('in0'), r.stdout).not.toBe('');
    expect(v('in0')).not.toBe(v('out0'));
    expect(v('in1')).toBe(v('in0'));
    expect(v('in2')).toBe(v('in0'));
    // Inside, /dev/pts is a fresh instance: the user's terminal has no name there.
    expect(v('user-tty')).toBe('refused');
    expect(v('proc1fd')).not.toBe('0');
  });

  it('`cordon run … &` leaves the terminal to the shell: the next command runs and reads its input', async () => {
    const sh = shell();
    try {
      await sh.expectSoon(/prompt\$ /);
      const agent = `echo ready; read line; echo agent-got=$line`;
      sh.type(`node ${BIN} run --manifest ${manifest} -- bash -c '${agent}' &\n`);
      await sh.expectSoon(/ready\r*\n/);
      const mark = sh.output().length;
      sh.type('read x; echo shell-got=$x\n');
      await new Promise((r) => setTimeout(r, 300));
      sh.type('hello\n');
      const shellGotIt = await until(
        () => sh.output().slice(mark).includes('shell-got=hello'),
        5000,
      );
      expect(sh.output()).not.toContain('agent-got=hello');
      expect(shellGotIt, sh.output()).toBe(true);
      // The terminal is the shell's: its modes were never changed (`stty` works and reports
      // canonical mode with echo).
      const modes = join(s.dir, 'stty.txt');
      sh.type(`stty -a > ${modes}; kill %1; wait %1; echo bg=$?\n`);
      await sh.expectSoon(/bg=\d+/);
      expect(readFileSync(modes, 'utf8')).toMatch(/(?<!-)icanon .*(?<!-)echo /s);
      expect(sh.output(), sh.output()).toMatch(/bg=143/);
    } finally {
      sh.child.kill('SIGKILL');
      killSessions();
    }
  }, 40_000);

  it('the agent cannot change the user’s terminal: its modes and keys are as before once the session ends', () => {
    // A hostile agent's leftovers: echo off, Ctrl-C unbound, end-of-file moved. What runs on
    // the terminal next (here a plain `sh -c`, which restores nothing) finds them or not.
    const agent = 'stty -echo intr undef eof ^A; echo changed=$?';
    const cmd = `node '${BIN}' run --manifest '${manifest}' -- bash -c '${agent}'; stty -a`;
    const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { env: s.env, encoding: 'utf8' });
    expect(r.stdout).toMatch(/changed=0/);
    expect(r.stdout).toMatch(/intr = \^C;/);
    expect(r.stdout).toMatch(/eof = \^D;/);
    expect(r.stdout).toMatch(/(?<!-)echo /);
  });

  it('with every stream redirected, the agent still cannot open the user’s terminal (/dev/tty)', () => {
    const inside = 'exec 9<>/dev/tty && echo tty=opened || echo tty=refused';
    const result = join(s.dir, 'redirected.txt');
    const cmd = `node '${BIN}' run --manifest '${manifest}' -- bash -c '${inside}' </dev/null >${result} 2>&1; echo done`;
    const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { env: s.env, encoding: 'utf8' });
    expect(r.stdout).toContain('done');
    expect(readFileSync(result, 'utf8')).toMatch(/tty=refused/);
  });

  it('cordon run SIGKILLed on a terminal: the terminal is given back as it was and nothing keeps running', async () => {
    // The relay restores the modes once it learns of Cordon's death: the shell polls for that.
    const restored =
      'for i in $(seq 100); do stty -a | grep -q -- " icanon" && break; sleep 0.05; done';
    const cmd = `node '${BIN}' run --manifest '${manifest}' -- bash -c 'echo ready; sleep 337'; ${restored}; stty -a; echo after`;
    const child = spawn('script', ['-qec', cmd, '/dev/null'], {
      env: s.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let text = '';
    child.stdout.on('data', (d: Buffer) => (text += d.toString()));
    const closed = new Promise((r) => child.on('close', r));
    try {
      expect(await until(() => text.includes('ready'))).toBe(true);
      // The session's client, as the endpoint service knows it.
      const { clientPid } = await runningSession(s.env);
      process.kill(clientPid, 'SIGKILL');
      await closed;
      expect(text).toContain('after');
      // The relay, told of Cordon's death, restored the modes it had made raw.
      expect(text).toMatch(/(?<!-)icanon .*(?<!-)echo /s);
      expect(await until(() => spawnSync('pgrep', ['-f', 'sleep 337']).status === 1, 5000)).toBe(
        true,
      );
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('bg continues the agent without the terminal; fg gives it back', async () => {
    const sh = shell();
    try {
      await sh.expectSoon(/prompt\$ /);
      const agent = 'echo ready; sleep 0.5; echo resumed; read line; echo got=$line';
      sh.type(`node ${BIN} run --manifest ${manifest} -- bash -c '${agent}'\n`);
      await sh.expectSoon(/ready\r\n/);
      sh.type('\x1a');
      await sh.expectSoon(/Stopped/);
      sh.type('bg\n');
      // Continued: it writes on, and its read of the terminal waits while the shell reads.
      await sh.expectSoon(/resumed\r*\n/);
      const mark = sh.output().length;
      sh.type('read x; echo shell-got=$x\n');
      await new Promise((r) => setTimeout(r, 300));
      sh.type('typed-at-the-shell\n');
      await sh.expectSoon(/shell-got=typed-at-the-shell/);
      expect(sh.output().slice(mark)).not.toMatch(/(?<!shell-)got=typed/);
      sh.type('fg\n');
      await new Promise((r) => setTimeout(r, 300));
      sh.type('for-the-agent\n');
      await sh.expectSoon(/got=for-the-agent/);
    } finally {
      sh.child.kill('SIGKILL');
      killSessions();
    }
  }, 40_000);
});
