import { z } from 'zod';
import { CordonError } from '../errors.js';
import { parsePathPattern } from './paths.js';
import { MANIFEST_API_VERSION, type ManifestInput } from './schema.js';

const DAY = 86_400_000;

const BaseParams = z.strictObject({
  workDir: z.string().optional().describe('Directory the agent works in (absolute or ~/...).'),
  validityDays: z
    .number()
    .int()
    .min(1)
    .max(366)
    .default(90)
    .describe('Days until the manifest expires.'),
  owner: z.string().min(1).optional().describe('Accountable person or team.'),
  version: z.string().default('1.0.0').describe('Manifest version.'),
});

export interface TemplateContext {
  readonly agentName: string;
  readonly owner: string;
  readonly workDir: string;
  readonly version: string;
  readonly notAfter: string;
  readonly host: string;
}

export interface RoleTemplate {
  readonly name: string;
  readonly summary: string;
  readonly defaultWorkDir: string;
  /** Host parameter (the organisation's service for this role) and its default. */
  readonly hostParam: {
    readonly name: string;
    readonly default: string;
    readonly describe: string;
  };
  build(ctx: TemplateContext): ManifestInput;
}

const base = (
  ctx: TemplateContext,
  role: string,
  dataClassification: ManifestInput['dataClassification'],
  description: string,
): Omit<ManifestInput, 'readPaths'> => ({
  apiVersion: MANIFEST_API_VERSION,
  agentName: ctx.agentName,
  version: ctx.version,
  role,
  dataClassification,
  owner: ctx.owner,
  description,
  notAfter: ctx.notAfter,
});

/** Built-in role templates: conservative starting points, each covered by a policy test file. */
export const TEMPLATES: readonly RoleTemplate[] = [
  {
    name: 'finance-analyst',
    summary:
      'Reads finance reports, drafts outgoing files, reads and (with approval) writes restricted sheets.',
    defaultWorkDir: '~/Work/Finance',
    hostParam: {
      name: 'sheetsHost',
      default: 'sheets.corp.example.com',
      describe: 'Spreadsheet service host.',
    },
    build: (ctx) => ({
      ...base(
        ctx,
        'finance-analyst',
        'confidential',
        'Finance analysis assistant: reads reports, prepares outgoing files for review.',
      ),
      readPaths: [`${ctx.workDir}/**`],
      writePaths: [`${ctx.workDir}/outgoing/**`],
      networkScopes: [`https://${ctx.host}`],
      apiScopes: ['sheets:read', 'sheets:write:restricted'],
      commandsAllowed: ['/usr/bin/pdftotext'],
      requiresApproval: [`write:${ctx.workDir}/outgoing/**`, 'sheets:write:restricted'],
    }),
  },
  {
    name: 'legal-drafting',
    summary:
      'Reads matter files and precedents, writes drafts only with approval, talks only to the document system.',
    defaultWorkDir: '~/Work/Legal',
    hostParam: {
      name: 'dmsHost',
      default: 'dms.corp.example.com',
      describe: 'Document management system host.',
    },
    build: (ctx) => ({
      ...base(
        ctx,
        'legal-drafting',
        'restricted',
        'Legal drafting assistant: reads matters and precedents, proposes drafts.',
      ),
      readPaths: [`${ctx.workDir}/**`],
      writePaths: [`${ctx.workDir}/drafts/**`],
      networkScopes: [`https://${ctx.host}/api`],
      apiScopes: ['dms:read', 'dms:write:draft'],
      commandsAllowed: ['/usr/bin/pandoc'],
      requiresApproval: [
        `write:${ctx.workDir}/drafts/**`,
        'dms:write:draft',
        `https://${ctx.host}/api`,
      ],
    }),
  },
  {
    name: 'sre-oncall',
    summary:
      'Reads runbooks, queries dashboards and the cluster read-only; restarts need approval.',
    defaultWorkDir: '~/Work/Runbooks',
    hostParam: {
      name: 'grafanaHost',
      default: 'grafana.corp.example.com',
      describe: 'Dashboards host.',
    },
    build: (ctx) => ({
      ...base(
        ctx,
        'sre-oncall',
        'internal',
        'On-call assistant: reads runbooks, queries metrics and cluster state, proposes fixes.',
      ),
      readPaths: [`${ctx.workDir}/**`],
      writePaths: [`${ctx.workDir}/scratch/**`],
      networkScopes: [`https://${ctx.host}`],
      apiScopes: [
        'mcp:grafana:query',
        'mcp:k8s:get',
        'mcp:k8s:describe',
        'mcp:k8s:logs',
        'mcp:k8s:rollout_restart',
      ],
      commandsAllowed: ['/usr/bin/jq', '/usr/bin/dig'],
      requiresApproval: ['mcp:k8s:rollout_restart'],
    }),
  },
  {
    name: 'developer',
    summary:
      'Works in one repository: reads and writes it, runs git and make, reaches the package registries; pushes need approval.',
    defaultWorkDir: '~/src/project',
    hostParam: {
      name: 'gitHost',
      default: 'git.corp.example.com',
      describe: 'Source hosting host.',
    },
    build: (ctx) => ({
      ...base(ctx, 'developer', 'internal', 'Coding assistant confined to one repository.'),
      readPaths: [`${ctx.workDir}/**`],
      writePaths: [`${ctx.workDir}/**`],
      networkScopes: [
        `https://${ctx.host}`,
        'https://registry.npmjs.org',
        'https://pypi.org',
        'https://files.pythonhosted.org',
      ],
      apiScopes: [
        'mcp:git:status',
        'mcp:git:diff',
        'mcp:git:log',
        'mcp:git:commit',
        'mcp:git:push',
      ],
      commandsAllowed: ['/usr/bin/git', '/usr/bin/make'],
      requiresApproval: ['mcp:git:push', `https://${ctx.host}`],
    }),
  },
];

export function findTemplate(name: string): RoleTemplate {
  const t = TEMPLATES.find((x) => x.name === name);
  if (t === undefined) {
    throw new CordonError('TEMPLATE_UNKNOWN', `no template "${name}"`, {
      hint: `choose one of: ${TEMPLATES.map((x) => x.name).join(', ')}`,
    });
  }
  return t;
}

export interface TemplateRequest {
  readonly template: string;
  readonly agentName: string;
  readonly owner?: string;
  readonly now: Date;
  /** Template parameters: workDir, validityDays, version, and the template's host parameter. */
  readonly params?: Record<string, unknown>;
}

/**
 * Build a manifest (unsigned, not yet validated) from a role template.
 *
 * @example
 * const m = instantiateTemplate({ template: 'developer', agentName: 'claude-dev', now: new Date() });
 */
export function instantiateTemplate(req: TemplateRequest): ManifestInput {
  const t = findTemplate(req.template);
  const schema = BaseParams.extend({
    [t.hostParam.name]: z.string().optional().describe(t.hostParam.describe),
  });
  const r = schema.safeParse(req.params ?? {});
  if (!r.success) {
    const i = r.error.issues[0];
    const key = i?.code === 'unrecognized_keys' ? i.keys.join(', ') : (i?.path ?? []).join('.');
    throw new CordonError(
      'TEMPLATE_PARAMS',
      `template ${t.name}: parameter ${key}: ${i?.message ?? 'invalid'}`,
      {
        hint: `parameters of ${t.name}: workDir, validityDays, owner, version, ${t.hostParam.name}`,
      },
    );
  }
  const p = r.data as z.output<typeof BaseParams> & Record<string, unknown>;
  const workDir = parsePathPattern(p.workDir ?? t.defaultWorkDir);
  if (workDir.hasGlob)
    throw new CordonError('TEMPLATE_PARAMS', `template ${t.name}: workDir must not contain globs`, {
      hint: 'give a directory',
    });
  const hostValue = p[t.hostParam.name];
  return t.build({
    agentName: req.agentName,
    owner: req.owner ?? p.owner ?? 'security@example.com',
    workDir: workDir.text,
    version: p.version,
    notAfter: new Date(Math.floor(req.now.getTime() / 1000) * 1000 + p.validityDays * DAY)
      .toISOString()
      .replace('.000Z', 'Z'),
    host: typeof hostValue === 'string' ? hostValue : t.hostParam.default,
  });
}

export const GroupMappingSchema = z
  .strictObject({
    apiVersion: z.literal(MANIFEST_API_VERSION),
    kind: z.literal('GroupMapping'),
    groups: z.record(
      z.string().min(1).max(256),
      z.strictObject({
        template: z.string(),
        agentName: z.string().optional(),
        owner: z.string().optional(),
        params: z.record(z.string(), z.unknown()).default({}),
      }),
    ),
  })
  .describe('Maps identity-provider groups to role templates with per-group parameters.');

export type GroupMapping = z.output<typeof GroupMappingSchema>;
