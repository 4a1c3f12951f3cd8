import semverValid from 'semver/functions/valid.js';
import { z } from 'zod';
import { CordonError } from '../errors.js';
import { parseApiScope } from './api-scopes.js';
import { OVERRIDABLE_DENY_IDS } from './mandatory-denies.js';
import { parseNetworkScope } from './network.js';
import { parsePathPattern } from './paths.js';

export const MANIFEST_API_VERSION = 'cordon.dev/v1' as const;
export const MANIFEST_PAYLOAD_TYPE = 'application/vnd.cordon.manifest+json';
/** Largest manifest accepted, in bytes. */
export const MANIFEST_MAX_BYTES = 256 * 1024;
const MAX_ENTRIES = 1024;

/** Turns a parse function that throws CordonError into a zod transform to its normalised text. */
function normalisedBy(parse: (s: string) => { text: string }) {
  return (s: string, ctx: z.RefinementCtx): string => {
    try {
      return parse(s).text;
    } catch (e) {
      if (e instanceof CordonError) {
        ctx.addIssue({
          code: 'custom',
          message: e.message,
          params: { code: e.code, hint: e.hint },
        });
        return z.NEVER;
      }
      throw e;
    }
  };
}

function parseCommand(raw: string): { text: string } {
  const p = parsePathPattern(raw);
  if (p.home) {
    throw new CordonError('COMMAND_NOT_ABSOLUTE', `"${raw}" is not an absolute path`, {
      hint: 'write the executable as an absolute path such as /usr/bin/git',
    });
  }
  if (p.hasGlob || p.segments.length === 0) {
    throw new CordonError('COMMAND_NOT_ABSOLUTE', `"${raw}" is not one executable`, {
      hint: 'list each executable by its absolute path; globs are not allowed here',
    });
  }
  return p;
}

/** An agentRuntimes entry: one executable or directory, absolute or ~/..., no globs. */
function parseRuntime(raw: string): { text: string } {
  const p = parsePathPattern(raw);
  if (p.hasGlob || p.segments.length === 0) {
    throw new CordonError('RUNTIME_NOT_ONE_PATH', `"${raw}" is not one executable or directory`, {
      hint: 'name the runtime by its path, e.g. /opt/claude or ~/.local/share/claude; globs are not allowed here',
    });
  }
  return p;
}

const APPROVAL_KINDS = ['read', 'write', 'exec'] as const;

/** A requiresApproval entry: a path (optionally `read:`/`write:`/`exec:`), a network scope, or an API scope. */
function parseApprovalEntry(raw: string): { text: string } {
  for (const kind of APPROVAL_KINDS) {
    const rest = raw.startsWith(`${kind}:`) ? raw.slice(kind.length + 1) : undefined;
    if (rest !== undefined && (rest.startsWith('/') || rest.startsWith('~'))) {
      return {
        text: `${kind}:${(kind === 'exec' ? parseCommand(rest) : parsePathPattern(rest)).text}`,
      };
    }
  }
  if (raw.startsWith('/') || raw.startsWith('~')) return parsePathPattern(raw);
  if (raw.includes('://')) return parseNetworkScope(raw);
  return parseApiScope(raw);
}

const list = <T extends z.ZodType<string, string>>(item: T, description: string) =>
  z.array(item).max(MAX_ENTRIES).default([]).describe(description);

// Patterns in .meta() document the shape in the JSON Schema; the transform does the real check
// so each failure carries its own code (PATH_RELATIVE, PATH_DOTDOT, ...).
const pathEntry = z
  .string()
  .meta({ pattern: '^(~|~/.*|/.*)$' })
  .transform(normalisedBy(parsePathPattern));

const timestamp = z.iso.datetime({
  offset: true,
  message: 'must be an RFC 3339 timestamp such as 2027-06-30T00:00:00Z',
});

export const OverrideSchema = z
  .strictObject({
    deny: z
      .enum(OVERRIDABLE_DENY_IDS as [string, ...string[]])
      .describe('Id of the mandatory deny to lift (see `cordon manifest explain` for the list).'),
    access: z
      .enum(['read', 'write'])
      .default('read')
      .describe('What the override lifts: read only (default), or read and write.'),
    paths: z
      .array(pathEntry)
      .min(1)
      .max(64)
      .optional()
      .describe(
        'Narrow the override to these paths inside the denied location (default: the whole location).',
      ),
    reason: z
      .string()
      .trim()
      .min(
        10,
        'state why the agent needs this (at least 10 characters); it is shown in every audit event',
      )
      .max(1000)
      .describe('Why the exception is needed; recorded with every use.'),
  })
  .describe('An explicit, justified exception to a mandatory deny.');

export const ManifestSchema = z
  .strictObject({
    apiVersion: z.literal(MANIFEST_API_VERSION).describe(`Always "${MANIFEST_API_VERSION}".`),
    agentName: z
      .string()
      .regex(
        /^[a-z0-9][a-z0-9._-]{0,62}$/,
        'use 1-63 lower-case letters, digits, . _ - (starting with a letter or digit)',
      )
      .describe('Stable name of the agent; rollback protection is kept per agentName.'),
    version: z
      .string()
      .refine((v) => semverValid(v) === v, {
        message: 'must be a semantic version such as 1.2.0',
        params: { code: 'MANIFEST_VERSION', hint: 'write MAJOR.MINOR.PATCH, e.g. 1.2.0' },
      })
      .describe('Semantic version; a device refuses a version lower than the last it accepted.'),
    role: z
      .string()
      .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'use lower-case letters, digits and -')
      .describe('Role the manifest was made for, e.g. finance-analyst.'),
    dataClassification: z
      .enum(['public', 'internal', 'confidential', 'restricted'])
      .describe('Highest classification of data the agent handles.'),
    owner: z
      .string()
      .trim()
      .min(1)
      .max(200)
      .describe('Accountable person or team (e-mail or team name).'),
    description: z.string().max(2000).optional().describe('What the agent is for.'),
    notBefore: timestamp
      .optional()
      .describe('Start of validity (RFC 3339). Default: valid from signing.'),
    notAfter: timestamp.describe('End of validity (RFC 3339). Required: every manifest expires.'),
    readPaths: list(pathEntry, 'Paths the agent may read. Absolute or ~/..., globs * ? **.'),
    writePaths: list(
      pathEntry,
      'Paths the agent may create, modify, delete or rename; implies read.',
    ),
    networkScopes: list(
      z
        .string()
        .meta({ pattern: '^[A-Za-z][A-Za-z0-9+.-]*://' })
        .transform(normalisedBy(parseNetworkScope)),
      'Destinations the agent may reach: scheme://host[:port][/path-prefix]; host exact, *.domain, or an IP literal.',
    ),
    apiScopes: list(
      z.string().transform(normalisedBy(parseApiScope)),
      'API scopes the agent may call: service:action[:qualifier]; MCP tools as mcp:<server>:<tool>.',
    ),
    commandsAllowed: list(
      z.string().transform(normalisedBy(parseCommand)),
      'Executables the agent may run, as absolute paths (symlinks are resolved at load).',
    ),
    agentRuntimes: list(
      z.string().meta({ pattern: '^(~/.+|/.+)$' }).transform(normalisedBy(parseRuntime)),
      "Executables or directories of the agent's own runtime (e.g. /opt/claude): read and executable inside the sandbox, everything under a directory included. Never a system binary directory or a writable path (lint error). `cordon run --agent-runtime` may only narrow this list.",
    ),
    requiresApproval: list(
      z.string().transform(normalisedBy(parseApprovalEntry)),
      'Grants that need a human approval each time: a path (optionally read:/write:/exec:), network scope or API scope.',
    ),
    secrets: list(
      z.string().regex(/^[A-Za-z][A-Za-z0-9_.-]{0,127}$/, 'use letters, digits, _ . -'),
      'Names of credentials the egress proxy may inject for the agent; the agent never holds them.',
    ),
    env: list(
      z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'must be an environment variable name'),
      'Extra environment variable names passed into the sandbox.',
    ),
    overrides: z
      .array(OverrideSchema)
      .max(64)
      .default([])
      .describe('Exceptions to mandatory denies, each with a reason.'),
  })
  .superRefine((m, ctx) => {
    if (m.notBefore !== undefined && Date.parse(m.notBefore) >= Date.parse(m.notAfter)) {
      ctx.addIssue({
        code: 'custom',
        path: ['notAfter'],
        message: 'notAfter must be later than notBefore',
        params: { code: 'MANIFEST_VALIDITY_INVERTED', hint: 'fix the dates' },
      });
    }
  })
  .describe(
    'Cordon capability manifest v1: what one agent role may read, write, run, reach and call.',
  );

/** The manifest fields that are lists of strings. */
export const LIST_FIELDS = [
  'readPaths',
  'writePaths',
  'networkScopes',
  'apiScopes',
  'commandsAllowed',
  'agentRuntimes',
  'requiresApproval',
  'secrets',
  'env',
] as const;

/** A parsed manifest: every entry checked and normalised. */
export type Manifest = z.output<typeof ManifestSchema>;
/** A manifest as written (before defaults and normalisation). */
export type ManifestInput = z.input<typeof ManifestSchema>;
export type ManifestOverride = z.output<typeof OverrideSchema>;

/** JSON Schema (2020-12) generated from the zod schema, for editors and CI. */
export function manifestJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(ManifestSchema, { target: 'draft-2020-12', io: 'input' });
  return {
    $id: 'https://cordon.dev/schemas/manifest-v1.json',
    title: 'Cordon manifest v1',
    ...schema,
  };
}
