// `cordon run` start-up and `cordon quarantine` time to containment, each beside its baselines
// measured in the same run: plain `true`, `bwrap --ro-bind / / true`, and Node's own start-up.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
// The `cordon` bin users run (package.json): the loader of the bundles.
const BIN = join(ROOT, 'dist/cli/bin.cjs');
const median = (xs: number[]): number =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv): number {
  const t = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}: ${r.stderr.toString()}`);
  return ms;
}

export async function benchSandbox(
  rounds = 15,
): Promise<{ lines: string[]; checks: [string, boolean][] }> {
  const dir = mkdtempSync(join(tmpdir(), 'cordon-bench-run-'));
  const env = { PATH: '/usr/bin:/bin', HOME: dir, CORDON_HOME: join(dir, 'cordon') };
  const cli = (args: string[]): string => {
    const r = spawnSync(process.execPath, [BIN, ...args], { env, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`cordon ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  try {
    cli(['init']);
    // Start-up without Cedar guardrails (their cost is the cold-start figure "with guardrails"):
    // the policy directory must say so explicitly, as enforcement refuses otherwise.
    writeFileSync(
      join(dir, 'cordon/policy/enforcement.json'),
      JSON.stringify({ allowWithoutGuardrails: true }),
    );
    cli(['keys', 'generate', '--name', 'bench']);
    cli([
      'keys',
      'trust',
      '--name',
      'bench',
      '--pub',
      join(dir, 'cordon/policy/keys/bench.pub'),
      '--purpose',
      'manifest',
    ]);
    const m = join(dir, 'm.json');
    writeFileSync(
      m,
      JSON.stringify({
        apiVersion: 'cordon.dev/v1',
        agentName: 'bench',
        version: '1.0.0',
        role: 'developer',
        dataClassification: 'internal',
        owner: 'bench@example.com',
        notAfter: new Date(Date.now() + 300 * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z'),
        commandsAllowed: ['/usr/bin/true', '/usr/bin/sleep', '/usr/bin/bash'],
      }),
    );
    cli(['manifest', 'sign', m, '--key', join(dir, 'cordon/policy/keys/bench.key')]);
    const signed = join(dir, 'm.signed.json');
    const run = ['run', '--manifest', signed, '--', '/usr/bin/true'];
    // The first run starts the daemon (on demand, as a user's first client does) and warms the
    // page cache: the runs measured find it running.
    timed(process.execPath, [BIN, ...run], env);
    const t: Record<'true' | 'bwrap' | 'node' | 'cordon', number[]> = {
      true: [],
      bwrap: [],
      node: [],
      cordon: [],
    };
    for (let i = 0; i < rounds; i++) {
      t.true.push(timed('/usr/bin/true', [], env));
      t.bwrap.push(timed('/usr/bin/bwrap', ['--ro-bind', '/', '/', '/usr/bin/true'], env));
      t.node.push(timed(process.execPath, ['-e', '0'], env));
      t.cordon.push(timed(process.execPath, [BIN, ...run], env));
    }
    const med = {
      true: median(t.true),
      bwrap: median(t.bwrap),
      node: median(t.node),
      cordon: median(t.cordon),
    };
    const own = med.cordon - med.node - med.bwrap;

    // Quarantine: a session with a process tree, then `cordon quarantine` measures itself.
    const contain: number[] = [];
    for (let i = 0; i < Math.max(3, Math.floor(rounds / 2)); i++) {
      const child = spawn(
        process.execPath,
        [
          BIN,
          'run',
          '--manifest',
          signed,
          '--',
          '/usr/bin/bash',
          '-c',
          'sleep 60 & sleep 60 & echo ready; wait',
        ],
        { env, stdio: ['ignore', 'pipe', 'ignore'] },
      );
      await new Promise<void>((resolve) => child.stdout.on('data', () => resolve()));
      const done = new Promise<void>((resolve) => child.on('close', () => resolve()));
      const ps = JSON.parse(cli(['ps', '--json'])) as { sessions: { id: string }[] };
      const id = ps.sessions[0]?.id ?? '';
      const q = JSON.parse(cli(['quarantine', id, '--json', '--out', join(dir, 'evidence')])) as {
        sessions: { containmentMs: number }[];
      };
      contain.push(q.sessions[0]?.containmentMs ?? Number.NaN);
      await done;
    }
    const q = median(contain);
    const f = (n: number): string => `${n.toFixed(1)} ms`;
    const lines = [
      `cordon run -- true (median of ${rounds}): ${f(med.cordon)}; baselines in the same run: true ${f(med.true)}, bwrap --ro-bind / / true ${f(med.bwrap)}, node -e 0 ${f(med.node)}`,
      `  Cordon's own work beyond Node start-up and bubblewrap: ${f(own)} (cordon run / node -e 0 = ${(med.cordon / med.node).toFixed(2)}x)`,
      `cordon quarantine, command to containment (median of ${contain.length}): ${f(q)} (all: ${contain.map((c) => c.toFixed(0)).join(', ')} ms)`,
    ];
    const checks: [string, boolean][] = [
      [`cordon run -- true median ${f(med.cordon)} <= 150 ms`, med.cordon <= 150],
      [`Cordon's own work ${f(own)} beyond Node start-up and bwrap <= 30 ms`, own <= 30],
      [`cordon quarantine time to containment median ${f(q)} <= 100 ms`, q <= 100],
    ];
    return { lines, checks };
  } finally {
    // The first `cordon run` started the user daemon on demand: stop it with its directory.
    spawnSync(process.execPath, [BIN, 'daemon', 'stop'], { env, stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  }
}
