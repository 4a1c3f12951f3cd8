import { ESLint } from 'eslint';
import tseslint from 'typescript-eslint';
import { beforeAll, describe, expect, it } from 'vitest';

// The folder boundaries are lint rules (eslint.config.js); these fixtures prove each one fires
// for a file that is not in any list, only in a folder — and stays quiet where it should.

let eslint: ESLint;
beforeAll(() => {
  eslint = new ESLint({
    cwd: new URL('..', import.meta.url).pathname,
    // Fixture files do not exist on disk: lint them without type information.
    overrideConfig: [{ files: ['**/*.ts'], ...tseslint.configs.disableTypeChecked }],
  });
});

/** The boundary messages ESLint reports for `code` as if it were the file at `path`. */
async function boundaries(path: string, code: string): Promise<string[]> {
  const [r] = await eslint.lintText(code, { filePath: path });
  return (r?.messages ?? [])
    .filter((m) => m.ruleId === 'no-restricted-imports' || m.ruleId === 'no-restricted-syntax')
    .map((m) => m.message);
}

const use = (...names: string[]): string =>
  names.map((n, i) => `import * as m${i} from '${n}';\nexport const x${i} = m${i};\n`).join('');

describe('folder boundaries', () => {
  it('core folders import no I/O built-in, prefixed or not', async () => {
    const io = ['node:tls', 'dgram', 'node:worker_threads', 'node:v8', 'os', 'node:dns', 'fs'];
    for (const file of [
      'src/manifest/fixture-new.ts',
      'src/policy/deep/fixture.ts',
      'src/protocol/fixture.ts',
      'src/audit/fixture-format.ts',
      'src/errors.ts',
    ]) {
      const found = await boundaries(file, use(...io));
      expect(found, file).toHaveLength(io.length);
    }
    expect(await boundaries('src/manifest/fixture.ts', use('node:crypto', 'zod'))).toEqual([]);
  });

  it('core folders depend on no adapter and not on the CLI', async () => {
    const adapters = [
      '../store/files.js',
      '../endpoint/policy.js',
      '../daemon/client.js',
      '../sandbox/launcher.js',
      '../egress/proxy.js',
      '../cli/context.js',
    ];
    expect(await boundaries('src/policy/fixture.ts', use(...adapters))).toHaveLength(
      adapters.length,
    );
  });

  it("the audit record format keeps off the log's I/O; the writer itself may do I/O", async () => {
    expect(
      await boundaries('src/audit/fixture-format.ts', use('./log.js', './store.js')),
    ).toHaveLength(2);
    expect(await boundaries('src/audit/log.ts', use('node:fs', './store.js'))).toEqual([]);
  });

  it('nothing outside the CLI imports it', async () => {
    for (const file of ['src/egress/fixture.ts', 'src/daemon/fixture.ts', 'src/index.ts'])
      expect(await boundaries(file, use('../cli/context.js')), file).toHaveLength(1);
  });

  it('a verb imports no other verb, statically or lazily; main.ts loads them', async () => {
    expect(await boundaries('src/cli/fixture-verb.ts', use('./check.js'))).toHaveLength(1);
    expect(
      await boundaries('src/cli/fixture-verb.ts', "export const v = import('./run.js');\n"),
    ).toHaveLength(1);
    expect(
      await boundaries('src/cli/fixture-verb.ts', use('./context.js', '../endpoint/policy.js')),
    ).toEqual([]);
    expect(await boundaries('src/cli/main.ts', use('./check.js'))).toEqual([]);
  });
});
