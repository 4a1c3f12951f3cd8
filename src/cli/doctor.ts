import { checkSandboxSupport } from '../sandbox/linux/doctor.js';
import { EXIT, printJson, type CliIo } from './context.js';

/** `cordon doctor`: check every sandbox layer by using it; say how to fix what is missing. */
export function runDoctor(io: CliIo, opts: { json?: boolean }): number {
  const s = checkSandboxSupport();
  if (opts.json === true) printJson(io, s);
  else {
    for (const c of s.checks) {
      io.stdout(`${c.ok ? 'ok  ' : 'FAIL'} ${c.id.padEnd(10)} ${c.detail}\n`);
      if (!c.ok && c.fix !== undefined) io.stdout(`     fix: ${c.fix}\n`);
    }
    io.stdout(
      s.ok
        ? 'cordon run can sandbox agents on this machine\n'
        : 'cordon run will refuse to start until the layers above marked FAIL are fixed\n',
    );
  }
  return s.ok ? EXIT.OK : EXIT.ENVIRONMENT;
}
