// @ts-check
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

// Folder boundaries (see the folder tree in the README). Each rule names folders, not files, so
// a new file is held to its folder's boundary without anyone listing it. ESLint takes one set of
// options per rule for a file (the last matching block wins), so every block below passes the
// whole list that applies to its folders, built from these parts.

/** Built-in modules that do process, file or network I/O, each also under its un-prefixed name. */
const IO_BUILTINS = [
  ['child_process', 'process I/O'],
  ['cluster', 'process I/O'],
  ['worker_threads', 'process I/O'],
  ['inspector', 'process I/O'],
  ['v8', 'process I/O'],
  ['os', 'host I/O'],
  ['fs', 'file I/O'],
  ['fs/promises', 'file I/O'],
  ['readline', 'file I/O'],
  ['net', 'network I/O'],
  ['tls', 'network I/O'],
  ['dgram', 'network I/O'],
  ['dns', 'network I/O'],
  ['dns/promises', 'network I/O'],
  ['http', 'network I/O'],
  ['https', 'network I/O'],
  ['http2', 'network I/O'],
].flatMap(([name, what]) =>
  [`node:${name}`, name].map((n) => ({
    name: n,
    message: `Core modules do no ${what}: take data as arguments and put the I/O in an adapter (src/store, src/endpoint, src/daemon, ...).`,
  })),
);

/** Nothing but the CLI itself imports the CLI: the CLI is the top of the graph. */
const NOT_CLI = {
  group: ['**/cli', '**/cli/**'],
  message:
    'Only the CLI imports the CLI: move what is shared into a module (src/endpoint, src/store, ...).',
};

/** Adapters core modules must not depend on. */
const NOT_ADAPTERS = {
  group: [
    '**/store/**',
    '**/endpoint/**',
    '**/daemon/**',
    '**/sandbox/**',
    '**/egress/**',
    '**/audit/sinks/**',
    '**/native.js',
    '**/env.js',
  ],
  message: 'Core modules must not depend on adapters (store, endpoint, daemon, sandbox, egress).',
};

/**
 * The audit folder's I/O side (the writer, readers, sinks); everything else in src/audit is the
 * record format, chain, Merkle tree, notes and event builders, and is core.
 */
const AUDIT_IO = [
  'log',
  'store',
  'open',
  'open-spans',
  'process-context',
  'reader',
  'proofs',
  'verify',
  'verify-worker',
  'witness',
  'config',
  'index',
];

/** Core folders, plus the parts of adapter folders that are pure parsers. */
const CORE = [
  'src/manifest/**/*.ts',
  'src/policy/**/*.ts',
  'src/protocol/**/*.ts',
  'src/errors.ts',
  // The ClientHello parser and the denial format.
  'src/egress/client-hello.ts',
  'src/egress/decision.ts',
];

const coreNoIo = { paths: IO_BUILTINS, patterns: [NOT_CLI, NOT_ADAPTERS] };

/** The audit format files also keep off the audit log's own I/O side. */
const auditCoreNoIo = {
  paths: IO_BUILTINS,
  patterns: [
    NOT_CLI,
    NOT_ADAPTERS,
    {
      group: AUDIT_IO.map((f) => `./${f}.js`),
      message:
        "The audit record format does not depend on the audit log's I/O (the writer, readers, verifier).",
    },
  ],
};

/** Rules every file gets from no-restricted-syntax (repeated where a block adds its own). */
const RESTRICTED_SYNTAX = [
  {
    selector: 'ExportAllDeclaration',
    message: 'The public API is an explicit list: name each export.',
  },
  {
    selector: "CallExpression[callee.object.name='JSON'][callee.property.name='parse']",
    message:
      'JSON.parse silently keeps the last of duplicate keys; use parseStrictJson from src/manifest/json.ts.',
  },
];

export default tseslint.config(
  { ignores: ['dist/**', 'dist-bench/**', 'node_modules/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': [
        'error',
        { considerDefaultExhaustiveForUnions: true },
      ],
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
      '@typescript-eslint/no-unnecessary-condition': 'off',
      '@typescript-eslint/no-confusing-void-expression': ['error', { ignoreArrowShorthand: true }],
      // Control characters in regular expressions are how we reject them in paths and hosts.
      'no-control-regex': 'off',
      'no-restricted-syntax': ['error', ...RESTRICTED_SYNTAX],
    },
  },
  // Outside the CLI: nothing imports src/cli.
  {
    files: ['src/**/*.ts'],
    ignores: ['src/cli/**'],
    rules: { 'no-restricted-imports': ['error', { patterns: [NOT_CLI] }] },
  },
  // Core: no I/O built-ins, no adapters, no CLI.
  { files: CORE, rules: { 'no-restricted-imports': ['error', coreNoIo] } },
  {
    files: ['src/audit/*.ts'],
    ignores: AUDIT_IO.map((f) => `src/audit/${f}.ts`),
    rules: { 'no-restricted-imports': ['error', auditCoreNoIo] },
  },
  // The CLI: one file per verb, thin over the modules; a verb imports no other verb, only the
  // shared ./context.js. main.ts loads the verbs (lazily) and bin.ts starts main; run-entry.ts
  // is the entry of `cordon run` alone.
  {
    files: ['src/cli/**/*.ts'],
    ignores: ['src/cli/main.ts', 'src/cli/bin.ts', 'src/cli/run-entry.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['./*', '!./context.js'],
              message:
                'A verb imports no other verb: move what is shared into a module, or into ./context.js if it is about the CLI itself.',
            },
          ],
        },
      ],
      'no-restricted-syntax': [
        'error',
        ...RESTRICTED_SYNTAX,
        {
          selector: 'ImportExpression[source.value=/^\\.\\//]',
          message: 'A verb loads no other verb; main.ts does.',
        },
      ],
    },
  },
  {
    files: ['test/**/*.ts', 'test/**/*.mjs', 'bench/**/*.ts', 'scripts/**/*.ts'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      'no-restricted-syntax': 'off',
    },
  },
  { files: ['eslint.config.js', '**/*.mjs'], ...tseslint.configs.disableTypeChecked },
  { files: ['**/*.mjs'], languageOptions: { globals: globals.node } },
);
