import { CordonError } from '../errors.js';
import { parseStrictJson } from '../manifest/json.js';
import { validateManifest, ManifestInvalidError } from '../manifest/parse.js';
import { GroupMappingSchema, instantiateTemplate, TEMPLATES } from '../manifest/templates.js';
import { readFileCapped } from '../store/files.js';
import { policyPaths } from '../store/policy-dir.js';
import { printJson, printResult, resolveDirs, type CliIo, type GlobalOptions } from './context.js';

export function runTemplatesList(io: CliIo, opts: { json?: boolean }): number {
  const rows = TEMPLATES.map((t) => ({
    name: t.name,
    summary: t.summary,
    defaultWorkDir: t.defaultWorkDir,
    params: ['workDir', 'validityDays', 'owner', 'version', t.hostParam.name],
  }));
  if (opts.json === true) printResult(io, { ok: true, templates: rows });
  else
    for (const r of rows)
      io.stdout(
        `${r.name.padEnd(16)} ${r.summary}\n${' '.repeat(17)}params: ${r.params.join(', ')}\n`,
      );
  return 0;
}

export function runTemplatesResolve(
  io: CliIo,
  opts: GlobalOptions & { group: string; mapping?: string; agent?: string },
): number {
  const file = opts.mapping ?? policyPaths(resolveDirs(io, opts).policyDir).groups;
  const raw = readFileCapped(file, 4 * 1024 * 1024);
  const parsed = GroupMappingSchema.safeParse(
    (() => {
      try {
        return parseStrictJson(raw);
      } catch (e) {
        throw e instanceof CordonError ? e.withFile(file) : e;
      }
    })(),
  );
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    throw new CordonError('GROUP_MAPPING_INVALID', i?.message ?? 'invalid', {
      file,
      pointer: '/' + (i?.path ?? []).map(String).join('/'),
      hint: 'see the README section "Group mapping"',
    });
  }
  const groups = parsed.data.groups;
  if (!Object.prototype.hasOwnProperty.call(groups, opts.group)) {
    throw new CordonError('GROUP_UNKNOWN', `group "${opts.group}" is not in ${file}`, {
      file,
      hint: `known groups: ${Object.keys(groups).join(', ')}`,
    });
  }
  const g = groups[opts.group];
  if (g === undefined)
    throw new CordonError('GROUP_UNKNOWN', `group "${opts.group}" is not mapped`, {
      file,
      hint: 'add it to the mapping',
    });
  const agentName =
    opts.agent ??
    g.agentName ??
    `${g.template}-${opts.group.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`.slice(0, 63);
  let input;
  try {
    input = instantiateTemplate({
      template: g.template,
      agentName,
      now: io.now(),
      params: g.params,
      ...(g.owner === undefined ? {} : { owner: g.owner }),
    });
  } catch (e) {
    throw e instanceof CordonError
      ? new CordonError(e.code, `group "${opts.group}": ${e.message}`, {
          file,
          pointer: `/groups/${opts.group}`,
          ...(e.hint === undefined ? {} : { hint: e.hint }),
        })
      : e;
  }
  const r = validateManifest(input);
  if (!r.ok) throw new ManifestInvalidError(r.issues, file);
  printJson(io, input);
  return 0;
}
