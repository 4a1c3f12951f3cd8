import { CordonError } from '../errors.js';
import { VERSION } from '../version.js';
import { LINT_RULES, lintManifest, type LintFinding, type LintSeverity } from '../manifest/lint.js';
import { validateManifest } from '../manifest/parse.js';
import { readManifestSource } from '../endpoint/read-manifest.js';
import { lintOptionsFor } from '../endpoint/verify.js';
import {
  endpointContext,
  printJson,
  printResult,
  usage,
  type CliIo,
  type GlobalOptions,
} from './context.js';

export interface LintCliOptions extends GlobalOptions {
  format?: string;
  json?: boolean;
  maxWarnings?: string;
}

interface Finding extends Omit<LintFinding, 'code'> {
  readonly code: string;
  readonly line?: number;
  readonly column?: number;
}

/** Lint one manifest file (plain or signed). Schema problems are reported as error findings too. */
export function lintFile(io: CliIo, file: string, opts: GlobalOptions): Finding[] {
  const source = readManifestSource(file);
  const at = (pointer: string): { line?: number; column?: number } => {
    // Walk up to the nearest located ancestor (an unknown field has no location of its own).
    for (let p = pointer; ; p = p.slice(0, p.lastIndexOf('/'))) {
      const loc = source.locations.get(p);
      if (loc !== undefined) return loc;
      if (p === '') return {};
    }
  };
  const r = validateManifest(source.value);
  if (!r.ok) {
    return r.issues.map((i) => ({
      code: i.code,
      severity: 'error',
      pointer: i.pointer,
      message: i.message,
      hint: i.hint ?? 'see `cordon manifest schema`',
      ...at(i.pointer),
    }));
  }
  return lintManifest(r.manifest, lintOptionsFor(endpointContext(io, opts))).map((f) => ({
    ...f,
    ...at(f.pointer),
  }));
}

function sarif(file: string, findings: readonly Finding[]): unknown {
  const level = (s: LintSeverity): string => (s === 'info' ? 'note' : s);
  const ruleIds = [...new Set([...Object.keys(LINT_RULES), ...findings.map((f) => f.code)])];
  return {
    $schema: 'https://json.schemastore.org/sarif-2.1.0.json',
    version: '2.1.0',
    runs: [
      {
        tool: {
          driver: {
            name: 'cordon',
            informationUri: 'https://cordon.dev',
            version: VERSION,
            rules: ruleIds.map((id) => {
              const rule = (LINT_RULES as Record<string, readonly [LintSeverity, string]>)[id];
              return {
                id,
                shortDescription: { text: rule?.[1] ?? 'manifest schema error' },
                defaultConfiguration: { level: level(rule?.[0] ?? 'error') },
              };
            }),
          },
        },
        results: findings.map((f) => ({
          ruleId: f.code,
          ruleIndex: ruleIds.indexOf(f.code),
          level: level(f.severity),
          message: { text: `${f.message}. Fix: ${f.hint}` },
          locations: [
            {
              physicalLocation: {
                artifactLocation: { uri: file },
                ...(f.line === undefined
                  ? {}
                  : { region: { startLine: f.line, startColumn: f.column } }),
              },
              logicalLocations: [
                { fullyQualifiedName: f.pointer === '' ? '/' : f.pointer, kind: 'member' },
              ],
            },
          ],
        })),
      },
    ],
  };
}

export function runManifestLint(io: CliIo, files: readonly string[], opts: LintCliOptions): number {
  if (opts.json === true && opts.format !== undefined && opts.format !== 'json') {
    throw usage(`--json conflicts with --format ${opts.format}`, 'give one of them');
  }
  const format = opts.json === true ? 'json' : (opts.format ?? 'text');
  if (!['text', 'json', 'sarif'].includes(format))
    throw usage(`--format ${format} is not supported`, 'use text, json or sarif');
  const maxWarnings = opts.maxWarnings === undefined ? Infinity : Number(opts.maxWarnings);
  if (!Number.isInteger(maxWarnings) && maxWarnings !== Infinity)
    throw usage('--max-warnings needs a whole number', 'e.g. --max-warnings 0');
  if (files.length !== 1)
    throw usage('lint one manifest file at a time', 'cordon manifest lint FILE');
  const file = files[0] ?? '';
  let findings: Finding[];
  try {
    findings = lintFile(io, file, opts);
  } catch (e) {
    // Unreadable JSON is itself a finding in the machine formats, so CI annotations show it.
    if (!(e instanceof CordonError) || format === 'text' || /^FILE_/.test(e.code)) throw e;
    findings = [
      {
        code: e.code,
        severity: 'error',
        pointer: e.pointer ?? '',
        message: e.message,
        hint: e.hint ?? '',
      },
    ];
  }
  const errors = findings.filter((f) => f.severity === 'error').length;
  const warnings = findings.filter((f) => f.severity === 'warning').length;
  const ok = errors === 0 && warnings <= maxWarnings;
  if (format === 'json')
    printResult(io, {
      ...(ok
        ? { ok }
        : {
            ok,
            code: 'MANIFEST_LINT',
            message:
              errors > 0
                ? `${errors} lint error(s)`
                : `${warnings} warning(s), more than --max-warnings ${maxWarnings}`,
          }),
      file,
      errors,
      warnings,
      findings,
    });
  else if (format === 'sarif') printJson(io, sarif(file, findings));
  else {
    for (const f of findings) {
      const loc = f.line === undefined ? '' : `:${f.line}:${f.column ?? 0}`;
      io.stdout(
        `${file}${loc} ${f.severity} ${f.code} ${f.pointer || '/'}: ${f.message}\n    fix: ${f.hint}\n`,
      );
    }
    io.stdout(
      `${errors} error(s), ${warnings} warning(s), ${findings.length - errors - warnings} note(s)\n`,
    );
  }
  return ok ? 0 : 1;
}
