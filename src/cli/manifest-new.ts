import { validateManifest, ManifestInvalidError } from '../manifest/parse.js';
import { instantiateTemplate } from '../manifest/templates.js';
import { writeFileNew } from '../store/files.js';
import { usage, type CliIo } from './context.js';

export interface ManifestNewOptions {
  template: string;
  agent: string;
  owner?: string;
  param?: string[];
  out?: string;
}

/** Parse repeated --param key=value; numbers stay numbers so validityDays=30 works. */
export function parseParams(pairs: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0)
      throw usage(`--param "${pair}" is not key=value`, 'write --param workDir=~/Work/Finance');
    const key = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    if (Object.prototype.hasOwnProperty.call(out, key))
      throw usage(`--param ${key} given twice`, 'give each parameter once');
    Object.defineProperty(out, key, {
      value: /^\d+$/.test(value) ? Number(value) : value,
      enumerable: true,
    });
  }
  return out;
}

export function runManifestNew(io: CliIo, opts: ManifestNewOptions): number {
  const input = instantiateTemplate({
    template: opts.template,
    agentName: opts.agent,
    now: io.now(),
    params: parseParams(opts.param ?? []),
    ...(opts.owner === undefined ? {} : { owner: opts.owner }),
  });
  const params = parseParams(opts.param ?? []);
  const wd = params['workDir'];
  if (typeof wd === 'string' && (wd === io.home || wd.startsWith(io.home + '/'))) {
    // The shell expands an unquoted ~ after "=": the manifest would name this user's home for everyone.
    io.stderr(
      `warning: workDir ${wd} is inside your own home; write '~${wd.slice(io.home.length)}' (quoted) so it expands for each user\n`,
    );
  }
  const r = validateManifest(input);
  if (!r.ok) throw new ManifestInvalidError(r.issues);
  const text = JSON.stringify(input, null, 2) + '\n';
  if (opts.out === undefined) {
    io.stdout(text);
  } else {
    writeFileNew(opts.out, text);
    io.stderr(
      `wrote ${opts.out} (template ${opts.template}, agent ${opts.agent}); review it, then run: cordon manifest sign ${opts.out} --key KEY\n`,
    );
  }
  return 0;
}
