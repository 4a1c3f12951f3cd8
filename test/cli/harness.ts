import { main } from '../../src/cli/main.js';
import type { CliIo } from '../../src/cli/context.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  json: () => unknown;
}

/** Run the CLI in-process with its own CORDON_HOME and clock. */
export async function cli(
  args: string[],
  opts: { home: string; cordonHome: string; now?: Date },
): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: (t) => {
      stdout += t;
    },
    stderr: (t) => {
      stderr += t;
    },
    // Each CORDON_HOME has a daemon of its own, started on demand; it goes away when idle.
    env: { CORDON_HOME: opts.cordonHome, CORDON_DAEMON_IDLE_SECONDS: '5' },
    now: () => opts.now ?? new Date(),
    home: opts.home,
  };
  const code = await main(args, io);
  return { code, stdout, stderr, json: () => JSON.parse(stdout) as unknown };
}
