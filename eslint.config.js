// @ts-check
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

const coreNoIo = {
  paths: [
    {
      name: 'node:child_process',
      message: 'Core modules do no process I/O; put it in an adapter.',
    },
    { name: 'node:net', message: 'Core modules do no network I/O; put it in an adapter.' },
    { name: 'node:http', message: 'Core modules do no network I/O; put it in an adapter.' },
    { name: 'node:https', message: 'Core modules do no network I/O; put it in an adapter.' },
    { name: 'node:fs', message: 'Core modules take data, not files; read files in src/store.' },
    {
      name: 'node:fs/promises',
      message: 'Core modules take data, not files; read files in src/store.',
    },
  ],
  patterns: [
    {
      group: ['../cli/*', '../store/*'],
      message: 'Core modules must not depend on adapters or the CLI.',
    },
  ],
};

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
      'no-restricted-syntax': [
        'error',
        {
          selector: 'ExportAllDeclaration',
          message: 'The public API is an explicit list: name each export.',
        },
        {
          selector: "CallExpression[callee.object.name='JSON'][callee.property.name='parse']",
          message:
            'JSON.parse silently keeps the last of duplicate keys; use parseStrictJson from src/manifest/json.ts.',
        },
      ],
    },
  },
  {
    files: [
      'src/manifest/**/*.ts',
      'src/policy/**/*.ts',
      'src/errors.ts',
      // The audit record format, Merkle tree, signed notes, chain verdicts and event builders.
      'src/audit/record.ts',
      'src/audit/merkle.ts',
      'src/audit/note.ts',
      'src/audit/chain.ts',
      'src/audit/events.ts',
      'src/audit/hash.ts',
      'src/audit/synthetic.ts',
      'src/audit/prepare.ts',
      // The ClientHello parser and the denial format.
      'src/egress/client-hello.ts',
      'src/egress/decision.ts',
    ],
    rules: { 'no-restricted-imports': ['error', coreNoIo] },
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
