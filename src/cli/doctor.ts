import { checkSandboxSupport } from '../sandbox/linux/doctor.js';
import { EXIT, printResult, type CliIo } from './context.js';

/** `cordon doctor`: check every sandbox layer by using it; say how to fix what is missing. */
export function runDoctor(io: CliIo, opts: { json?: boolean }): number {
  const s = checkSandboxSupport();
  if (opts.json === true) {
    const failed = s.checks.filter((c) => !c.ok).map((c) => c.id);
    printResult(
      io,
      s.ok
        ? { ...s, ok: true }
        : {
            ...s,
            ok: false,
            code: 'SANDBOX_UNAVAILABLE',
            message: `sandbox layers not working: ${failed.join(', ')}`,
          },
    );
  } else {
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
