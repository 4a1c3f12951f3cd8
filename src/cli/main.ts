#!/usr/bin/env -S node --no-turbo-inline-js-wasm-calls
import { realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import { config as zodConfig } from 'zod/mini';
import { CordonError } from '../errors.js';
import { VERSION } from '../version.js';
import { TEMPLATE_HOST_PARAMS } from '../manifest/template-hosts.js';
import {
  EXIT,
  RUN_EXIT,
  errorResult,
  exitCodeFor,
  printJson,
  printResult,
  processIo,
  renderError,
  type CliIo,
} from './context.js';
import type * as AuditCli from './audit.js';
import type {
  AuditEmitOptions,
  AuditExportOptions,
  AuditShipOptions,
  AuditStatusOptions,
  AuditTailOptions,
  AuditVerifyOptions,
} from './audit.js';
import type * as CheckCli from './check.js';
import type * as CompletionCli from './completion.js';
import type { CompletionSpec } from './completion.js';
import type { CheckOptions } from './check.js';
import type * as InitCli from './init.js';
import type * as PolicyCli from './policy.js';
import type * as KeysCli from './keys.js';
import type { KeysTrustOptions } from './keys.js';
import type * as ManifestExplainCli from './manifest-explain.js';
import type * as ManifestLintCli from './manifest-lint.js';
import type * as ManifestNewCli from './manifest-new.js';
import type * as ManifestSignCli from './manifest-sign.js';
import type * as ManifestVerifyCli from './manifest-verify.js';
import type * as ProxyCli from './proxy.js';
import type { ProxyOptions } from './proxy.js';
import type * as RevokeCli from './revoke.js';
import type * as DaemonInstallCli from './daemon-install.js';
import type { DaemonInstallOptions } from './daemon-install.js';
import type * as DoctorCli from './doctor.js';
import type * as DaemonCli from './daemon.js';
import type { DaemonRunOptions } from './daemon.js';
import type * as PsCli from './ps.js';
import type * as QuarantineCli from './quarantine.js';
import type { QuarantineOptions } from './quarantine.js';
import type * as RunCli from './run.js';
import type { RunOptions } from './run.js';
import type * as TemplatesCli from './templates.js';

// The CLI parses each schema a few times per process: zod's generated fast paths cost more to
// compile than they save here. (zod/mini shares zod's configuration, and loads less.)
zodConfig({ jitless: true });

// Each verb's module is loaded when the verb runs, so `cordon run` does not pay for the rest.
const runAuditEmitTest = async (
  ...a: Parameters<typeof AuditCli.runAuditEmitTest>
): Promise<Awaited<ReturnType<typeof AuditCli.runAuditEmitTest>>> =>
  (await import('./audit.js')).runAuditEmitTest(...a);
const runAuditExport = async (
  ...a: Parameters<typeof AuditCli.runAuditExport>
): Promise<Awaited<ReturnType<typeof AuditCli.runAuditExport>>> =>
  (await import('./audit.js')).runAuditExport(...a);
const runAuditShip = async (
  ...a: Parameters<typeof AuditCli.runAuditShip>
): Promise<Awaited<ReturnType<typeof AuditCli.runAuditShip>>> =>
  (await import('./audit.js')).runAuditShip(...a);
const runAuditStatus = async (
  ...a: Parameters<typeof AuditCli.runAuditStatus>
): Promise<Awaited<ReturnType<typeof AuditCli.runAuditStatus>>> =>
  (await import('./audit.js')).runAuditStatus(...a);
const runAuditTail = async (
  ...a: Parameters<typeof AuditCli.runAuditTail>
): Promise<Awaited<ReturnType<typeof AuditCli.runAuditTail>>> =>
  (await import('./audit.js')).runAuditTail(...a);
const runAuditVerify = async (
  ...a: Parameters<typeof AuditCli.runAuditVerify>
): Promise<Awaited<ReturnType<typeof AuditCli.runAuditVerify>>> =>
  (await import('./audit.js')).runAuditVerify(...a);
const runCheck = async (
  ...a: Parameters<typeof CheckCli.runCheck>
): Promise<Awaited<ReturnType<typeof CheckCli.runCheck>>> =>
  (await import('./check.js')).runCheck(...a);
const runCompletion = async (
  ...a: Parameters<typeof CompletionCli.runCompletion>
): Promise<Awaited<ReturnType<typeof CompletionCli.runCompletion>>> =>
  (await import('./completion.js')).runCompletion(...a);
const runInit = async (
  ...a: Parameters<typeof InitCli.runInit>
): Promise<Awaited<ReturnType<typeof InitCli.runInit>>> =>
  (await import('./init.js')).runInit(...a);
const runManifestToCedar = async (
  ...a: Parameters<typeof PolicyCli.runManifestToCedar>
): Promise<Awaited<ReturnType<typeof PolicyCli.runManifestToCedar>>> =>
  (await import('./policy.js')).runManifestToCedar(...a);
const runPolicySchema = async (
  ...a: Parameters<typeof PolicyCli.runPolicySchema>
): Promise<Awaited<ReturnType<typeof PolicyCli.runPolicySchema>>> =>
  (await import('./policy.js')).runPolicySchema(...a);
const runPolicyTest = async (
  ...a: Parameters<typeof PolicyCli.runPolicyTest>
): Promise<Awaited<ReturnType<typeof PolicyCli.runPolicyTest>>> =>
  (await import('./policy.js')).runPolicyTest(...a);
const runPolicyValidate = async (
  ...a: Parameters<typeof PolicyCli.runPolicyValidate>
): Promise<Awaited<ReturnType<typeof PolicyCli.runPolicyValidate>>> =>
  (await import('./policy.js')).runPolicyValidate(...a);
const runKeysGenerate = async (
  ...a: Parameters<typeof KeysCli.runKeysGenerate>
): Promise<Awaited<ReturnType<typeof KeysCli.runKeysGenerate>>> =>
  (await import('./keys.js')).runKeysGenerate(...a);
const runKeysList = async (
  ...a: Parameters<typeof KeysCli.runKeysList>
): Promise<Awaited<ReturnType<typeof KeysCli.runKeysList>>> =>
  (await import('./keys.js')).runKeysList(...a);
const runKeysTrust = async (
  ...a: Parameters<typeof KeysCli.runKeysTrust>
): Promise<Awaited<ReturnType<typeof KeysCli.runKeysTrust>>> =>
  (await import('./keys.js')).runKeysTrust(...a);
const runManifestExplain = async (
  ...a: Parameters<typeof ManifestExplainCli.runManifestExplain>
): Promise<Awaited<ReturnType<typeof ManifestExplainCli.runManifestExplain>>> =>
  (await import('./manifest-explain.js')).runManifestExplain(...a);
const runManifestLint = async (
  ...a: Parameters<typeof ManifestLintCli.runManifestLint>
): Promise<Awaited<ReturnType<typeof ManifestLintCli.runManifestLint>>> =>
  (await import('./manifest-lint.js')).runManifestLint(...a);
const runManifestNew = async (
  ...a: Parameters<typeof ManifestNewCli.runManifestNew>
): Promise<Awaited<ReturnType<typeof ManifestNewCli.runManifestNew>>> =>
  (await import('./manifest-new.js')).runManifestNew(...a);
const runManifestSign = async (
  ...a: Parameters<typeof ManifestSignCli.runManifestSign>
): Promise<Awaited<ReturnType<typeof ManifestSignCli.runManifestSign>>> =>
  (await import('./manifest-sign.js')).runManifestSign(...a);
const runManifestVerify = async (
  ...a: Parameters<typeof ManifestVerifyCli.runManifestVerify>
): Promise<Awaited<ReturnType<typeof ManifestVerifyCli.runManifestVerify>>> =>
  (await import('./manifest-verify.js')).runManifestVerify(...a);
const runProxy = async (
  ...a: Parameters<typeof ProxyCli.runProxy>
): Promise<Awaited<ReturnType<typeof ProxyCli.runProxy>>> =>
  (await import('./proxy.js')).runProxy(...a);
const runRevoke = async (
  ...a: Parameters<typeof RevokeCli.runRevoke>
): Promise<Awaited<ReturnType<typeof RevokeCli.runRevoke>>> =>
  (await import('./revoke.js')).runRevoke(...a);
const runDaemonInstall = async (
  ...a: Parameters<typeof DaemonInstallCli.runDaemonInstall>
): Promise<Awaited<ReturnType<typeof DaemonInstallCli.runDaemonInstall>>> =>
  (await import('./daemon-install.js')).runDaemonInstall(...a);
const runDaemonUninstall = async (
  ...a: Parameters<typeof DaemonInstallCli.runDaemonUninstall>
): Promise<Awaited<ReturnType<typeof DaemonInstallCli.runDaemonUninstall>>> =>
  (await import('./daemon-install.js')).runDaemonUninstall(...a);
const runDoctor = async (
  ...a: Parameters<typeof DoctorCli.runDoctor>
): Promise<Awaited<ReturnType<typeof DoctorCli.runDoctor>>> =>
  (await import('./doctor.js')).runDoctor(...a);
const runDaemon = async (...a: Parameters<typeof DaemonCli.runDaemon>): Promise<number> =>
  (await import('./daemon.js')).runDaemon(...a);
const runDaemonStatus = async (
  ...a: Parameters<typeof DaemonCli.runDaemonStatus>
): Promise<number> => (await import('./daemon.js')).runDaemonStatus(...a);
const runDaemonStop = async (...a: Parameters<typeof DaemonCli.runDaemonStop>): Promise<number> =>
  (await import('./daemon.js')).runDaemonStop(...a);
const runPs = async (
  ...a: Parameters<typeof PsCli.runPs>
): Promise<Awaited<ReturnType<typeof PsCli.runPs>>> => (await import('./ps.js')).runPs(...a);
const runQuarantine = async (
  ...a: Parameters<typeof QuarantineCli.runQuarantine>
): Promise<Awaited<ReturnType<typeof QuarantineCli.runQuarantine>>> =>
  (await import('./quarantine.js')).runQuarantine(...a);
const runRunWithSignals = async (
  ...a: Parameters<typeof RunCli.runRunWithSignals>
): Promise<Awaited<ReturnType<typeof RunCli.runRunWithSignals>>> =>
  (await import('./run.js')).runRunWithSignals(...a);
const runTemplatesList = async (
  ...a: Parameters<typeof TemplatesCli.runTemplatesList>
): Promise<Awaited<ReturnType<typeof TemplatesCli.runTemplatesList>>> =>
  (await import('./templates.js')).runTemplatesList(...a);
const runTemplatesResolve = async (
  ...a: Parameters<typeof TemplatesCli.runTemplatesResolve>
): Promise<Awaited<ReturnType<typeof TemplatesCli.runTemplatesResolve>>> =>
  (await import('./templates.js')).runTemplatesResolve(...a);

export { VERSION };

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

/** The commander program of the CLI (also the source of shell completions and of the JSON test). */
export function buildProgram(
  io: CliIo,
  setExit: (code: number) => void = () => undefined,
): Command {
  const program = new Command('cordon');
  program
    .description('Governance runtime for desktop AI agents: signed capability manifests, enforced.')
    .version(VERSION)
    .option(
      '--policy-dir <dir>',
      'policy directory (default $CORDON_HOME/policy or ~/.config/cordon)',
    )
    .option(
      '--state-dir <dir>',
      'state directory (default $CORDON_HOME/state or ~/.local/state/cordon)',
    )
    .showHelpAfterError()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .exitOverride();
  const g = () => program.opts<{ policyDir?: string; stateDir?: string }>();
  const act = async (fn: () => number | Promise<number>): Promise<void> => {
    setExit(await fn());
  };

  program
    .command('init [dir]')
    .description(
      'create a policy directory (admin: org key, trust store, revocation list, examples; --endpoint: trust only + device key)',
    )
    .option(
      '--endpoint',
      'endpoint layout: no signing keys, only trust store, revocation list and a device key',
    )
    .option('--trust <file>', 'trust store to install (with --endpoint)')
    .option('--revocations <file>', 'signed revocation list to install (with --endpoint)')
    .option('--passphrase-file <file>', 'encrypt the new organisation key with this passphrase')
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      '\nExamples:\n  cordon init ./policy\n  cordon init --endpoint --trust trust.json --revocations revocations.json',
    )
    .action((dir: string | undefined, o: Record<string, unknown>) =>
      act(() => runInit(io, dir, { ...g(), ...o })),
    );

  const manifest = program
    .command('manifest')
    .description('create, check, sign and verify capability manifests');
  manifest
    .command('new')
    .description('make a manifest from a role template')
    .requiredOption('--template <name>', 'role template (see `cordon templates list`)')
    .requiredOption('--agent <name>', 'agentName for the manifest')
    .option('--owner <owner>', 'accountable person or team')
    .option(
      '--param <key=value>',
      `template parameter (repeatable): workDir, validityDays, owner, version, and the template's host: ${TEMPLATE_HOST_PARAMS.map((t) => `${t.hostParam} (${t.name})`).join(', ')}`,
      collect,
    )
    .option('--out <file>', 'write to a new file instead of stdout')
    .addHelpText(
      'after',
      "\nExample:\n  cordon manifest new --template finance-analyst --agent cowork-lite --param 'workDir=~/Work/Finance' --out m.json",
    )
    .action(
      (o: { template: string; agent: string; owner?: string; param?: string[]; out?: string }) =>
        act(() => runManifestNew(io, o)),
    );
  manifest
    .command('lint <file>')
    .description('report errors and risky grants, each with a code, JSON pointer and fix')
    .addOption(
      new Option('--format <format>', 'output format (default text)').choices([
        'text',
        'json',
        'sarif',
      ]),
    )
    .option('--json', 'same as --format json')
    .option('--max-warnings <n>', 'exit 1 when there are more warnings than this')
    .addHelpText('after', '\nExample:\n  cordon manifest lint m.json --format sarif > lint.sarif')
    .action((file: string, o: { format?: string; json?: boolean; maxWarnings?: string }) =>
      act(() => runManifestLint(io, [file], { ...g(), ...o })),
    );
  manifest
    .command('explain <file>')
    .description('plain-language summary and risk class (low | medium | high) with reasons')
    .option('--json', 'machine-readable output')
    .action((file: string, o: { json?: boolean }) =>
      act(() => runManifestExplain(io, file, { ...g(), ...o })),
    );
  manifest
    .command('sign <file>')
    .description('sign a manifest (DSSE, Ed25519); signing a signed file adds a co-signature')
    .requiredOption('--key <file>', 'private key (PKCS#8 PEM)')
    .option('--passphrase-file <file>', 'passphrase of an encrypted key')
    .option('--out <file>', 'output file (default FILE.signed.json; co-signing rewrites FILE)')
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      '\nExample:\n  cordon manifest sign m.json --key ~/.config/cordon/keys/org.key',
    )
    .action(
      (file: string, o: { key: string; passphraseFile?: string; out?: string; json?: boolean }) =>
        act(() => runManifestSign(io, file, { ...g(), ...o })),
    );
  manifest
    .command('verify <file>')
    .description('verify a signed manifest step by step (no private key needed)')
    .option('--json', 'machine-readable output')
    .option(
      '--no-record',
      'do not record this version as accepted (rollback protection still checked)',
    )
    .option('--threshold <n>', 'require at least N distinct trusted signatures')
    .addHelpText('after', '\nExample:\n  cordon manifest verify m.signed.json --json')
    .action((file: string, o: { json?: boolean; record?: boolean; threshold?: string }) =>
      act(() => runManifestVerify(io, file, { ...g(), ...o })),
    );
  manifest
    .command('schema')
    .description('print the manifest JSON Schema (2020-12), generated from the zod schema')
    .action(() =>
      act(async () => {
        printJson(io, (await import('../manifest/schema.js')).manifestJsonSchema());
        return 0;
      }),
    );

  manifest
    .command('to-cedar <file>')
    .description(
      "print the manifest's grants as Cedar policies (refuses globs Cedar cannot express exactly)",
    )
    .option('--home <dir>', 'home directory to expand ~ with (default: yours)')
    .action((file: string, o: { home?: string }) =>
      act(() => runManifestToCedar(io, file, { ...g(), ...o })),
    );

  program
    .command('check [kind] [args...]')
    .description(
      'decide one request (read, write, exec, connect, http, api, secret) against a manifest',
    )
    .requiredOption(
      '--manifest <file>',
      'manifest (signed: verified first unless --no-verify; plain: an UNVERIFIED draft)',
    )
    .option('--json', 'machine-readable output')
    .option('--stdin', 'read requests as JSON lines from stdin; print one decision per line')
    .option('--home <dir>', 'home directory of the agent user (default: yours)')
    .option('--guardrails <dir>', 'guardrails directory (default <policy-dir>/guardrails)')
    .option('--no-guardrails', 'decide without organisation guardrails')
    .option('--lexical', 'do not resolve symlinks on this machine')
    .option(
      '--verify',
      'verify the manifest first (trust store, revocation, expiry, rollback) and refuse to decide if it fails (the default for a signed manifest)',
    )
    .option(
      '--no-verify',
      'decide under a signed manifest without verifying it (drafts); the output says UNVERIFIED',
    )
    .option('--scheme <scheme>', 'connect: the scheme of the tunnel')
    .option('--address <ip>', 'connect/http: the resolved address')
    .option('--op <op>', 'write: create | modify | delete | rename')
    .option('--to <path>', 'write --op rename: the destination')
    .option(
      '--audit',
      'write each decision to the audit log (a decision that cannot be recorded is a deny)',
    )
    .addHelpText(
      'after',
      '\nExit codes: 0 allow, 1 deny, 10 ask (2 usage, 3 environment).\nExamples:\n  cordon check --manifest m.json read ~/Work/Reports/q3.xlsx\n  cordon check --manifest m.json http POST https://api.example.com/upload\n  cordon check --manifest m.json exec /usr/bin/git push\n  echo \'{"kind":"api.call","scope":"mcp:fs:write_file"}\' | cordon check --manifest m.json --stdin',
    )
    .action(async (kind: string | undefined, args: string[], o: CheckOptions) => {
      setExit(await runCheck(io, kind, args, { ...g(), ...o }));
    });

  const policy = program
    .command('policy')
    .description('organisation guardrails (Cedar) and policy tests');
  policy
    .command('validate [dir]')
    .description(
      'validate guardrails against the Cordon Cedar schema (default <policy-dir>/guardrails)',
    )
    .option('--json', 'machine-readable output')
    .action((dir: string | undefined, o: { json?: boolean }) =>
      act(() => runPolicyValidate(io, dir, { ...g(), ...o })),
    );
  policy
    .command('schema')
    .description('print the Cedar schema guardrails are written against')
    .action(() => act(() => runPolicySchema(io)));
  policy
    .command('test <files...>')
    .description(
      'run table-driven policy tests (request -> expected effect and rule); exit 1 on any mismatch',
    )
    .option('--json', 'machine-readable output')
    .action((files: string[], o: { json?: boolean }) =>
      act(() => runPolicyTest(io, files, { ...g(), ...o })),
    );

  const keys = program.command('keys').description('signing keys and the trust store');
  keys
    .command('generate')
    .description('generate an Ed25519 key pair (PKCS#8 PEM, mode 0600; never overwrites)')
    .option('--name <name>', 'key name', 'signing')
    .option('--dir <dir>', 'directory (default <policy-dir>/keys)')
    .option('--passphrase-file <file>', 'encrypt the private key with this passphrase')
    .option('--json', 'machine-readable output')
    .action((o: { name?: string; dir?: string; passphraseFile?: string; json?: boolean }) =>
      act(() => runKeysGenerate(io, { ...g(), ...o })),
    );
  keys
    .command('list')
    .description('list trusted keys and local key files with ids, purposes, validity, revocation')
    .option('--json', 'machine-readable output')
    .action((o: { json?: boolean }) => act(() => runKeysList(io, { ...g(), ...o })));
  keys
    .command('trust')
    .description('add a public key to the trust store')
    .requiredOption('--name <name>', 'name for the key')
    .requiredOption('--pub <file>', 'public key (SPKI PEM)')
    .requiredOption(
      '--purpose <purpose>',
      'manifest | revocation | audit-checkpoint | approval (repeatable)',
      collect,
    )
    .option('--not-before <time>', 'trusted from (RFC 3339)')
    .option('--not-after <time>', 'trusted until (RFC 3339)')
    .option('--json', 'machine-readable output')
    .action((o: KeysTrustOptions) => act(() => runKeysTrust(io, { ...g(), ...o })));

  const revoke = program
    .command('revoke')
    .description('revoke a manifest or a key (updates and re-signs the revocation list)');
  for (const kind of ['manifest', 'key'] as const) {
    revoke
      .command(`${kind} <${kind === 'manifest' ? 'digest-or-file' : 'keyid-or-name'}>`)
      .description(
        kind === 'manifest'
          ? 'revoke a manifest by sha256 digest or signed file'
          : 'revoke a key by id or trust-store name',
      )
      .requiredOption('--reason <text>', 'why (recorded in the list)')
      .requiredOption('--key <file>', 'private key trusted for "revocation"')
      .option('--passphrase-file <file>', 'passphrase of an encrypted key')
      .option('--json', 'machine-readable output')
      .action(
        (
          target: string,
          o: { reason: string; key: string; passphraseFile?: string; json?: boolean },
        ) => act(() => runRevoke(io, kind, target, { ...g(), ...o })),
      );
  }

  const audit = program
    .command('audit')
    .description('the tamper-evident audit log: verify, read, export, ship to SIEMs');
  audit
    .command('verify')
    .description(
      'recompute hashes, chain, Merkle roots and checkpoint signatures; exit 1 on any damage, 4 when intact but not proven complete (no witness) or a copy not proven authentic',
    )
    .option('--checkpoint <file>', 'a signed checkpoint kept off the machine (repeatable)', collect)
    .option(
      '--witness <file>',
      'a checkpoint witness file (repeatable; default: "witness" in <policy-dir>/audit.json)',
      collect,
    )
    .option(
      '--exported <file>',
      'verify an exported NDJSON copy (from a SIEM) instead of the local log',
    )
    .option(
      '--proof <file>',
      'with --exported: a proof written by `audit export --proofs`, kept apart from the copy (repeatable)',
      collect,
    )
    .option('--key <vkey|file>', "the device's verifier key (default: <policy-dir>/device.pub)")
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      '\nExamples:\n  cordon audit verify\n  cordon audit verify --checkpoint shipped.note\n  cordon audit verify --exported siem-export.ndjson --key "cordon.audit/host/ab12+0d2e3f4a+AX..."',
    )
    .action(async (o: AuditVerifyOptions) => {
      setExit(await runAuditVerify(io, { ...g(), ...o }));
    });
  audit
    .command('tail')
    .description('print the last records (-f: keep following)')
    .option('-f, --follow', 'keep printing new records')
    .option('-n, --lines <n>', 'how many records to print first', '10')
    .option(
      '--where <field=value>',
      'only records whose exported event has this value (repeatable)',
      collect,
    )
    .option('--json', 'one object with the exported OCSF events in "events"')
    .option('--ndjson', 'exported OCSF events, one per line (with -f, as they are written)')
    .addHelpText(
      'after',
      '\nExamples:\n  cordon audit tail -n 50 --where disposition=Blocked\n  cordon audit tail -f --where class_uid=4002 --ndjson',
    )
    .action(async (o: AuditTailOptions) => {
      const stop = new AbortController();
      process.once('SIGINT', () => stop.abort());
      setExit(await runAuditTail(io, { ...g(), ...o }, stop.signal));
    });
  audit
    .command('export')
    .description(
      'write records as OCSF NDJSON, keeping seq, prev and hash so the copy stays verifiable',
    )
    .requiredOption('--format <format>', 'ocsf-ndjson')
    .option('--since <seq|time|duration>', 'first record: a seq, an ISO time, or 15m / 24h / 7d')
    .option('--until <seq|time|duration>', 'last record')
    .option('--out <file>', 'write to a file instead of stdout')
    .option(
      '--proofs',
      'end with a signed checkpoint and RFC 9162 proofs, so that a partial copy verifies on its own (exit 4 if records after the last checkpoint cannot be proven yet)',
    )
    .addHelpText(
      'after',
      '\nExamples:\n  cordon audit export --format ocsf-ndjson --since 24h > today.ndjson\n  cordon audit export --format ocsf-ndjson --since 1500 --until 1800 --proofs --out window.ndjson',
    )
    .action((o: AuditExportOptions) => act(() => runAuditExport(io, { ...g(), ...o })));
  audit
    .command('status')
    .description(
      'log size, last checkpoint, verifier key, and per-sink delivered / pending / failed',
    )
    .option('--json', 'machine-readable output')
    .action((o: AuditStatusOptions) => act(() => runAuditStatus(io, { ...g(), ...o })));
  audit
    .command('emit-test')
    .description('append N realistic synthetic events of every kind through the real append path')
    .requiredOption('--count <n>', 'number of events')
    .option('--json', 'machine-readable output')
    .action(async (o: AuditEmitOptions) => {
      setExit(await runAuditEmitTest(io, { ...g(), ...o }));
    });
  audit
    .command('ship')
    .description('deliver the log to the sinks in <policy-dir>/audit.json (runs until stopped)')
    .option('--once', 'deliver what is there, then exit (3 if a sink could not catch up)')
    .option(
      '--max-attempts <n>',
      'with --once: give up on a sink after this many failures in a row',
      '5',
    )
    .action(async (o: AuditShipOptions) => {
      const stop = new AbortController();
      process.once('SIGINT', () => stop.abort());
      process.once('SIGTERM', () => stop.abort());
      setExit(await runAuditShip(io, { ...g(), ...o }, stop.signal));
    });

  program
    .command('proxy')
    .description(
      'governed egress proxy: every connection and request decided under a verified manifest and audited',
    )
    .requiredOption('--manifest <file>', 'signed manifest (verified at start and on SIGHUP)')
    .option('--listen <host:port>', 'loopback address to listen on (default 127.0.0.1:3128)')
    .option('--unix <path>', 'listen on a Unix socket instead (created mode 0600)')
    .option('--socks <host:port>', 'also accept SOCKS5 CONNECT on this loopback address')
    .option(
      '--resolve <name=addr>',
      'answer NAME with ADDR instead of DNS, like curl --resolve (repeatable)',
      collect,
    )
    .option('--config <file>', 'ProxyConfig limits (default <policy-dir>/proxy.json if present)')
    .option(
      '--guardrails <dir>',
      'guardrail directory (default <policy-dir>/guardrails; another needs allowWithoutGuardrails)',
    )
    .option(
      '--no-guardrails',
      'do not apply org guardrails (refused unless <policy-dir>/enforcement.json allows it)',
    )
    .addHelpText(
      'after',
      '\nSignals: SIGHUP reloads the manifest (one that fails verification denies everything until a good one\nis loaded); SIGUSR1 denies everything and closes every tunnel (quarantine); SIGTERM/SIGINT drain and stop.\nExamples:\n  cordon proxy --manifest agent.signed.json --listen 127.0.0.1:3128\n  HTTPS_PROXY=http://127.0.0.1:3128 HTTP_PROXY=http://127.0.0.1:3128 claude',
    )
    .action(async (o: ProxyOptions) => {
      const stop = new AbortController();
      let handler: ((what: 'reload' | 'deny-all') => void) | undefined;
      const onStop = (): void => stop.abort();
      const onHup = (): void => handler?.('reload');
      const onUsr1 = (): void => handler?.('deny-all');
      process.on('SIGINT', onStop);
      process.on('SIGTERM', onStop);
      process.on('SIGHUP', onHup);
      process.on('SIGUSR1', onUsr1);
      try {
        setExit(
          await runProxy(
            io,
            { ...g(), ...o },
            {
              stop: stop.signal,
              subscribe: (h) => {
                handler = h;
              },
            },
          ),
        );
      } finally {
        process.off('SIGINT', onStop);
        process.off('SIGTERM', onStop);
        process.off('SIGHUP', onHup);
        process.off('SIGUSR1', onUsr1);
      }
    });

  program
    .command('run')
    .description(
      'run an agent inside the sandbox its signed manifest describes, with egress only through the governed proxy',
    )
    .requiredOption('--manifest <file>', 'signed manifest (verified before anything runs)')
    .option(
      '--agent-runtime <path>',
      "only these of the manifest's agentRuntimes for this session (must lie within one; repeatable)",
      collect,
    )
    .option(
      '--max-processes <n>',
      'RLIMIT_NPROC for the agent (refused as root, whom the kernel does not limit)',
    )
    .option('--max-memory <size>', 'RLIMIT_AS for each process, e.g. 4G')
    .option('--max-cpu-seconds <n>', 'RLIMIT_CPU for each process')
    .option('--max-file-size <size>', 'RLIMIT_FSIZE, e.g. 1G')
    .option(
      '--max-tmp-size <size>',
      'size of each private /tmp, /var/tmp and /dev/shm (default 1G; writes beyond fail with ENOSPC)',
    )
    .option(
      '--resolve <name=addr>',
      'egress proxy answers NAME with ADDR instead of DNS (repeatable)',
      collect,
    )
    .option('--config <file>', 'ProxyConfig limits (default <policy-dir>/proxy.json if present)')
    .option(
      '--guardrails <dir>',
      'guardrail directory (default <policy-dir>/guardrails; another needs allowWithoutGuardrails)',
    )
    .option(
      '--no-guardrails',
      'do not apply org guardrails (refused unless <policy-dir>/enforcement.json allows it)',
    )
    .option(
      '--unsafe-no-sandbox',
      'DEBUGGING ONLY: run without the sandbox (refused unless <policy-dir>/enforcement.json allows it; audited)',
    )
    .argument('<command...>', 'the agent command, after --')
    .addHelpText(
      'after',
      `\nExit status: the agent's own, or ${RUN_EXIT.SETUP} (Cordon could not start the session), ${RUN_EXIT.NOT_RUNNABLE} (command not allowed), ${RUN_EXIT.NOT_FOUND} (command not found).\nSignals: SIGTERM, SIGINT, SIGHUP, SIGQUIT and SIGUSR2 are passed to the agent; SIGUSR1 quarantines the session.\nExamples:\n  cordon run --manifest coder.signed.json -- bash\n  cordon run --manifest coder.signed.json -- /opt/claude/bin/claude   (agentRuntimes: ["/opt/claude"])`,
    )
    .action(async (command: string[], o: RunOptions) => {
      setExit(await runRunWithSignals(io, { ...g(), ...o }, command));
    });

  program
    .command('ps')
    .description(
      'list the agent sessions `cordon run` is running: manifest, pid, uptime, bytes out',
    )
    .option('--json', 'machine-readable output')
    .action((o: { json?: boolean }) => act(() => runPs(io, { ...g(), ...o })));

  program
    .command('quarantine [session]')
    .description(
      'kill a session’s processes, deny all its egress, and write an evidence bundle (tar.gz + SHA-256)',
    )
    .option('--all', 'every running session')
    .option('--out <dir>', 'where evidence bundles go (default <state-dir>/evidence)')
    .option('--json', 'machine-readable output')
    .action(async (id: string | undefined, o: QuarantineOptions) =>
      setExit(await runQuarantine(io, id, { ...g(), ...o })),
    );

  const daemon = program
    .command('daemon')
    .description(
      "the endpoint service: the only audit writer, the sessions' proxies and decisions (foreground)",
    )
    .option(
      '--system',
      'system mode: /etc/cordon, /var/lib/cordon, /run/cordon (as the cordon user)',
    )
    .option('--socket <path>', 'API socket (default: by mode and directories)')
    .option('--runtime-dir <dir>', 'where session egress sockets live (default: beside the socket)')
    .option('--on-demand', 'started by a client: exit when idle ($CORDON_DAEMON_IDLE_SECONDS, 600)')
    .option('--idle-exit <seconds>', 'exit after this many idle seconds')
    .addHelpText(
      'after',
      '\nExamples:\n  cordon daemon                 (user mode, foreground)\n  cordon daemon --system        (as the cordon user, under systemd)\n  curl --unix-socket "$XDG_RUNTIME_DIR/cordon/daemon.sock" http://cordon/v1/status',
    )
    .action((o: DaemonRunOptions) => act(() => runDaemon(io, { ...g(), ...o })));
  const daemonOpts = (o: Record<string, unknown>): DaemonRunOptions & { json?: boolean } => ({
    ...g(),
    ...daemon.opts<DaemonRunOptions>(),
    ...o,
  });
  daemon
    .command('status')
    .description('log head, sinks and their lag, sessions and manifests in force')
    .option('--json', 'machine-readable output')
    .action((o: Record<string, unknown>) => act(() => runDaemonStatus(io, daemonOpts(o))));
  daemon
    .command('stop')
    .description('stop the service (root, the service admin group, or the user-mode owner)')
    .option('--json', 'machine-readable output')
    .action((o: Record<string, unknown>) => act(() => runDaemonStop(io, daemonOpts(o))));

  program
    .command('doctor')
    .description(
      'check every sandbox layer (bubblewrap, user namespaces, Landlock, seccomp, helper)',
    )
    .option('--json', 'machine-readable output')
    .action((o: { json?: boolean }) => act(() => runDoctor(io, o)));

  const templates = program
    .command('templates')
    .description('built-in role templates and IdP group mapping');
  templates
    .command('list')
    .description('list role templates and their parameters')
    .option('--json', 'machine-readable output')
    .action((o: { json?: boolean }) => act(() => runTemplatesList(io, o)));
  templates
    .command('resolve')
    .description('print the manifest an IdP group maps to')
    .requiredOption('--group <name>', 'IdP group name')
    .option('--mapping <file>', 'group mapping file (default <policy-dir>/groups.json)')
    .option('--agent <name>', 'agentName (default derived from template and group)')
    .action((o: { group: string; mapping?: string; agent?: string }) =>
      act(() => runTemplatesResolve(io, { ...g(), ...o })),
    );

  daemon
    .command('install')
    .description(
      'install the service: --system (as root: service user, /etc/cordon, /var/lib/cordon, hardened unit) or --user (a systemd user unit)',
    )
    .option('--system', "the machine's service, run as the dedicated user cordon (needs root)")
    .option('--user', 'a service of your own, run as you')
    .option('--root <prefix>', '--system: install under this directory (tests, staging trees)')
    .option('--dry-run', 'print what it would do and change nothing')
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      '\nExamples:\n  sudo cordon daemon install --system && sudo systemctl daemon-reload && sudo systemctl enable --now cordond\n  cordon daemon install --user && systemctl --user daemon-reload && systemctl --user enable --now cordond',
    )
    .action((o: DaemonInstallOptions) =>
      act(() => runDaemonInstall(io, { ...g(), ...daemon.opts<DaemonInstallOptions>(), ...o })),
    );
  daemon
    .command('uninstall')
    .description(
      'remove the service; --system keeps /var/lib/cordon (the audit log) unless --purge, and keeps a non-empty /etc/cordon',
    )
    .option('--system', "the machine's service (needs root)")
    .option('--user', 'your own service')
    .option('--root <prefix>', '--system: uninstall from under this directory')
    .option('--purge', '--system: also remove /var/lib/cordon (the audit log) and cordon-admin')
    .option('--dry-run', 'print what it would do and change nothing')
    .option('--json', 'machine-readable output')
    .action((o: DaemonInstallOptions) =>
      act(() => runDaemonUninstall(io, { ...g(), ...daemon.opts<DaemonInstallOptions>(), ...o })),
    );

  program
    .command('completion <shell>')
    .description('print a shell completion script (bash, zsh or fish) for every verb and option')
    .addHelpText(
      'after',
      '\nExamples:\n  source <(cordon completion bash)      # in ~/.bashrc\n  source <(cordon completion zsh)       # in ~/.zshrc\n  cordon completion fish > ~/.config/fish/completions/cordon.fish',
    )
    .action((shell: string) => act(() => runCompletion(io, shell, completionSpec(program))));

  return program;
}

/** What completion needs of a command: its verbs, its options, and which options take a value. */
function completionSpec(cmd: Command): CompletionSpec {
  const flags = (o: Option): string[] =>
    [o.long, o.short].filter((f): f is string => f !== undefined);
  return {
    name: cmd.name(),
    options: [...cmd.options.flatMap(flags), '--help'],
    valued: cmd.options.filter((o) => o.required || o.optional).flatMap(flags),
    commands: cmd.commands.map(completionSpec),
  };
}

/** The verb words of a command line (`['audit', 'tail']`), past the global options. */
function verbOf(argv: readonly string[]): string[] {
  const words: string[] = [];
  for (let i = 0; i < argv.length && words.length < 2; i++) {
    const a = argv[i] ?? '';
    if (a === '--') break;
    if (a === '--policy-dir' || a === '--state-dir') {
      if (words.length === 0) i++;
      continue;
    }
    if (a.startsWith('-')) {
      if (words.length > 0) break;
      continue;
    }
    words.push(a);
    // Only the groups take a second word.
    if (
      !['manifest', 'policy', 'keys', 'revoke', 'audit', 'templates', 'daemon'].includes(
        words[0] ?? '',
      )
    )
      break;
  }
  return words;
}

/** `cordon audit tail --help` for the verb words that name a command, as far as they do. */
function helpCommand(program: Command, words: readonly string[]): string {
  const known: string[] = [];
  let cmd = program;
  for (const w of words) {
    const next = cmd.commands.find((c) => c.name() === w);
    if (next === undefined) break;
    known.push(w);
    cmd = next;
  }
  return ['cordon', ...known, '--help'].join(' ');
}

/** Whether the command line asks for JSON output (`--json`, `--format json|sarif`). */
function wantsJson(argv: readonly string[]): boolean {
  // Words after `--` belong to the command `cordon run` starts, not to Cordon.
  const dashes = argv.indexOf('--');
  const own = dashes < 0 ? argv : argv.slice(0, dashes);
  return (
    own.includes('--json') ||
    own.includes('--format=json') ||
    (own.includes('--format') && ['json', 'sarif'].includes(own[own.indexOf('--format') + 1] ?? ''))
  );
}

/**
 * Run the CLI. Returns the exit code instead of exiting, so tests drive it in-process.
 *
 * @example
 * const code = await main(['manifest', 'lint', 'm.json'], processIo());
 */
export async function main(argv: readonly string[], io: CliIo = processIo()): Promise<number> {
  let code: number = EXIT.OK;
  const program = buildProgram(io, (c) => {
    code = c;
  });
  const json = wantsJson(argv);
  // `cordon run` exits with the agent's status; its own failures use 125, which agents do not.
  const isRun = verbOf(argv)[0] === 'run';
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (
        e.code === 'commander.helpDisplayed' ||
        e.code === 'commander.version' ||
        e.code === 'commander.help'
      )
        return EXIT.OK;
      if (isRun && !argv.includes('--'))
        io.stderr(
          'hint: put the agent command after --, e.g. cordon run --manifest agent.signed.json -- claude --resume\n',
        );
      if (json)
        printResult(io, {
          ok: false,
          code: 'USAGE',
          message: e.message.replace(/^error: /, ''),
          hint: `see ${helpCommand(program, verbOf(argv))}`,
        });
      return isRun ? RUN_EXIT.SETUP : EXIT.USAGE;
    }
    if (e instanceof CordonError) {
      if (json) printResult(io, errorResult(e));
      io.stderr(renderError(e));
      return isRun ? RUN_EXIT.SETUP : exitCodeFor(e.code);
    }
    // An unexpected failure is a bug; say so plainly and exit non-zero.
    if (json) printResult(io, { ok: false, code: 'INTERNAL', message: String(e) });
    io.stderr(`internal error: ${(e as Error).stack ?? String(e)}\n`);
    return isRun ? RUN_EXIT.SETUP : EXIT.INTERNAL;
  }
}

/**
 * A reader that stops early (`cordon audit tail --json | head -1`) closes the pipe: the verb
 * ends quietly with 141, the status of a process ended by SIGPIPE, as other tools do, instead of
 * a stack trace. The services (`run`, `proxy`, `audit ship`) keep enforcing and recording: only
 * their own messages are lost. A closed stderr loses diagnostics and nothing else.
 */
export function handleClosedOutput(argv: readonly string[]): void {
  const [verb, sub] = verbOf(argv);
  const service = verb === 'run' || verb === 'proxy' || (verb === 'audit' && sub === 'ship');
  const closed = (e: NodeJS.ErrnoException): boolean =>
    e.code === 'EPIPE' || e.code === 'ERR_STREAM_DESTROYED';
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (service) return;
    if (closed(e)) process.exit(EXIT.CLOSED_PIPE);
    process.stderr.write(`cordon: cannot write the output: ${e.message}\n`);
    process.exit(EXIT.ENVIRONMENT);
  });
  process.stderr.on('error', () => {
    // Nowhere left to report it.
  });
}

function isEntryPoint(): boolean {
  try {
    const argv1 = process.argv[1] === undefined ? '' : realpathSync(process.argv[1]);
    const self = fileURLToPath(import.meta.url);
    // Run directly (dist/cli/main.js), or as the bundle that the `cordon` bin (bin.js, or its
    // CommonJS build bin.cjs) loads.
    return (
      argv1 === self ||
      (self.endsWith('cordon.cjs') &&
        [join(dirname(self), 'bin.js'), join(dirname(self), 'bin.cjs')].includes(argv1))
    );
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  handleClosedOutput(process.argv.slice(2));
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
