import type { VerifyReport } from '../manifest/verify.js';
import { readManifestFile } from '../endpoint/policy.js';
import { lintOptionsFor, verifyManifestBytes } from '../endpoint/verify.js';
import { printResult, resolveDirs, usage, type CliIo, type GlobalOptions } from './context.js';

export interface VerifyCliOptions extends GlobalOptions {
  json?: boolean;
  record?: boolean;
  threshold?: string;
}

/** Verify a signed manifest against this machine's trust store, revocation list and rollback state. Needs no private key. */
export function verifyFile(io: CliIo, file: string, opts: VerifyCliOptions): VerifyReport {
  const dirs = resolveDirs(io, opts);
  const threshold = opts.threshold === undefined ? undefined : Number(opts.threshold);
  if (threshold !== undefined && (!Number.isInteger(threshold) || threshold < 1))
    throw usage('--threshold needs a whole number >= 1', 'e.g. --threshold 2');
  const bytes = readManifestFile(file);
  return verifyManifestBytes(bytes, {
    dirs,
    now: io.now,
    lint: lintOptionsFor({ dirs, home: io.home, now: io.now }),
    record: opts.record !== false,
    ...(threshold === undefined ? {} : { threshold }),
  });
}

export function runManifestVerify(io: CliIo, file: string, opts: VerifyCliOptions): number {
  const report = verifyFile(io, file, opts);
  if (opts.json === true) {
    printResult(io, {
      ...(report.ok
        ? { ok: true, message: report.message }
        : {
            ok: false,
            code: report.code ?? 'VERIFY_ERROR',
            message: report.message,
            ...(report.hint === undefined ? {} : { hint: report.hint }),
          }),
      file,
      digest: report.digest,
      signers: report.signers,
      steps: report.steps,
      agentName: report.manifest?.agentName,
      version: report.manifest?.version,
      warnings: report.lint.filter((f) => f.severity === 'warning'),
    });
  } else {
    for (const s of report.steps) {
      const mark = s.status === 'pass' ? 'pass' : s.status === 'fail' ? 'FAIL' : 'skip';
      io.stdout(
        `  ${mark}  ${s.name.padEnd(14)} ${s.code === undefined ? '' : `[${s.code}] `}${s.message}\n`,
      );
    }
    if (report.digest !== undefined) io.stdout(`digest ${report.digest}\n`);
    io.stdout(
      report.ok
        ? `OK: ${report.message}\n`
        : `REJECTED [${report.code ?? ''}]: ${report.message}\n${report.hint === undefined ? '' : `  fix: ${report.hint}\n`}`,
    );
  }
  return report.ok ? 0 : 1;
}
