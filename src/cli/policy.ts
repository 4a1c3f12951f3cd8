import { dirname, resolve } from 'node:path';
import { CordonError } from '../errors.js';
import { parseStrictJson } from '../manifest/json.js';
import { ManifestInvalidError, validateManifest } from '../manifest/parse.js';
import { instantiateTemplate } from '../manifest/templates.js';
import { CEDAR_SCHEMA } from '../policy/cedar-schema.js';
import { manifestToCedar } from '../policy/to-cedar.js';
import { createPdp } from '../policy/pdp.js';
import { PolicyTestFileSchema, runPolicyTests } from '../policy/policy-test.js';
import { readFileCapped } from '../store/files.js';
import { loadGuardrailDir, readGuardrailFiles } from '../store/guardrails-dir.js';
import { policyPaths } from '../store/policy-dir.js';
import { printResult, resolveDirs, usage, type CliIo, type GlobalOptions } from './context.js';
import { readManifest } from '../endpoint/read-manifest.js';

export function runPolicyValidate(
  io: CliIo,
  dir: string | undefined,
  opts: GlobalOptions & { json?: boolean },
): number {
  const target = dir ?? policyPaths(resolveDirs(io, opts).policyDir).guardrails;
  const files = readGuardrailFiles(target);
  const g = loadGuardrailDir(target);
  const policies = g?.policies ?? [];
  if (opts.json === true)
    printResult(io, {
      ok: true,
      dir: target,
      files: files.map((f) => f.name),
      policies: policies.map((p) => ({ id: p.id, file: p.file, line: p.line, ask: p.ask })),
    });
  else {
    io.stdout(
      `${target}: ${files.length} file(s), ${policies.length} guardrail(s), valid against the Cordon Cedar schema\n`,
    );
    for (const p of policies)
      io.stdout(
        `  ${p.id}  ${p.file}:${p.line}${p.ask === undefined ? '' : '  (asks for approval)'}\n`,
      );
  }
  return 0;
}

export function runPolicySchema(io: CliIo): number {
  io.stdout(CEDAR_SCHEMA);
  return 0;
}

export function runPolicyTest(
  io: CliIo,
  files: readonly string[],
  opts: GlobalOptions & { json?: boolean },
): number {
  if (files.length === 0)
    throw usage(
      'name at least one policy test file',
      'e.g. cordon policy test policy-tests/*.policy.json',
    );
  let failed = 0;
  let total = 0;
  const report: unknown[] = [];
  const dirs = resolveDirs(io, opts);
  for (const file of files) {
    const raw = readFileCapped(file, 4 * 1024 * 1024);
    let spec;
    try {
      spec = PolicyTestFileSchema.parse(parseStrictJson(raw));
    } catch (e) {
      if (e instanceof CordonError) throw e.withFile(file);
      const issue = (e as { issues?: { path: PropertyKey[]; message: string }[] }).issues?.[0];
      throw new CordonError(
        'POLICY_TEST_INVALID',
        issue === undefined ? 'invalid' : `/${issue.path.map(String).join('/')}: ${issue.message}`,
        {
          file,
          hint: 'see the README section "Policy tests"',
        },
      );
    }
    const base = dirname(resolve(file));
    let manifest;
    if (spec.manifest !== undefined) manifest = readManifest(resolve(base, spec.manifest)).manifest;
    else if (spec.template !== undefined) {
      const r = validateManifest(
        instantiateTemplate({
          template: spec.template,
          agentName: `test-${spec.template}`,
          now: io.now(),
          params: spec.params ?? {},
        }),
      );
      if (!r.ok) throw new ManifestInvalidError(r.issues, file);
      manifest = r.manifest;
    } else
      throw new CordonError(
        'POLICY_TEST_INVALID',
        'the test file names neither a manifest nor a template',
        { file, hint: 'add "manifest": "FILE" or "template": "NAME"' },
      );
    const guardrails =
      spec.guardrails === undefined ? undefined : loadGuardrailDir(resolve(base, spec.guardrails));
    const pdp = createPdp({
      manifest,
      home: spec.home,
      cordonDirs: [dirs.policyDir, dirs.stateDir],
      ...(guardrails === undefined ? {} : { guardrails }),
    });
    const results = runPolicyTests(pdp, spec.cases);
    total += results.length;
    const bad = results.filter((r) => !r.ok);
    failed += bad.length;
    report.push({ file, passed: results.length - bad.length, failed: bad.length, failures: bad });
    if (opts.json !== true) {
      io.stdout(
        `${bad.length === 0 ? 'PASS' : 'FAIL'} ${file} (${results.length - bad.length}/${results.length})\n`,
      );
      for (const r of bad) {
        io.stdout(
          `  case ${r.index} ${r.name}\n    expected ${r.expected.effect}${r.expected.rule === undefined ? '' : ` rule=${r.expected.rule}`}${r.expected.code === undefined ? '' : ` code=${r.expected.code}`}\n    got      ${r.decision.effect} rule=${r.decision.rule} code=${r.decision.code}: ${r.decision.reason}\n`,
        );
      }
    }
  }
  if (opts.json === true)
    printResult(io, {
      ...(failed === 0
        ? { ok: true }
        : {
            ok: false,
            code: 'POLICY_TEST_FAILED',
            message: `${failed} of ${total} case(s) failed`,
          }),
      total,
      failed,
      files: report,
    });
  else io.stdout(`${total - failed} passed, ${failed} failed\n`);
  return failed === 0 ? 0 : 1;
}

export function runManifestToCedar(
  io: CliIo,
  file: string,
  opts: GlobalOptions & { home?: string },
): number {
  const { manifest } = readManifest(file);
  const dirs = resolveDirs(io, opts);
  try {
    io.stdout(
      manifestToCedar(manifest, {
        home: opts.home ?? io.home,
        cordonDirs: [dirs.policyDir, dirs.stateDir],
      }),
    );
  } catch (e) {
    throw e instanceof CordonError ? e.withFile(file) : e;
  }
  return 0;
}
