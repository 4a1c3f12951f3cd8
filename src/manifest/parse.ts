import type { z } from 'zod';
import { CordonError, toPointer, type CordonCode } from '../errors.js';
import { parseStrictJson } from './json.js';
import { MANIFEST_MAX_BYTES, ManifestSchema, type Manifest } from './schema.js';

/** One problem found in a manifest, with where it is and how to fix it. */
export interface ManifestIssue {
  readonly code: CordonCode;
  /** JSON pointer (RFC 6901) into the manifest; '' for the whole document. */
  readonly pointer: string;
  readonly message: string;
  readonly hint?: string;
}

export type ManifestParseResult =
  | { readonly ok: true; readonly manifest: Manifest }
  | { readonly ok: false; readonly issues: readonly ManifestIssue[] };

/** Error thrown by {@link parseManifestOrThrow}; `issues` lists every problem, `code` is the first one's. */
export class ManifestInvalidError extends CordonError {
  readonly issues: readonly ManifestIssue[];
  constructor(issues: readonly ManifestIssue[], file?: string) {
    const first = issues[0] ?? {
      code: 'MANIFEST_INVALID',
      pointer: '',
      message: 'invalid manifest',
    };
    const where = first.pointer === '' ? '' : `${first.pointer}: `;
    const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : '';
    super(first.code, `${where}${first.message}${more}`, {
      pointer: first.pointer,
      ...(first.hint === undefined ? {} : { hint: first.hint }),
      ...(file === undefined ? {} : { file }),
    });
    this.issues = issues;
  }
}

/** Whether `path` names a value present in `root` (zod does not say whether a field was missing or wrong). */
function present(root: unknown, path: readonly PropertyKey[]): boolean {
  let cur: unknown = root;
  for (const k of path) {
    if (typeof cur !== 'object' || cur === null || !Object.prototype.hasOwnProperty.call(cur, k))
      return false;
    cur = (cur as Record<PropertyKey, unknown>)[k];
  }
  return cur !== undefined;
}

function issueFromZod(issue: z.core.$ZodIssue, root: unknown): ManifestIssue[] {
  const pointer = toPointer(issue.path as (string | number)[]);
  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys.map((k) => ({
        code: 'MANIFEST_UNKNOWN_FIELD',
        pointer: toPointer([...(issue.path as (string | number)[]), k]),
        message: `unknown field "${k}"`,
        hint: 'remove it or fix its spelling; unknown fields are errors so a typo can never change policy',
      }));
    case 'invalid_type': {
      const missing = !present(root, issue.path);
      return [
        {
          code: missing ? 'MANIFEST_MISSING_FIELD' : 'MANIFEST_TYPE',
          pointer,
          message: missing ? 'required field is missing' : `expected ${issue.expected}`,
          hint: missing
            ? 'add the field (see `cordon manifest schema`)'
            : `write a ${issue.expected}`,
        },
      ];
    }
    case 'custom': {
      // The schema's refinements put a CordonError's code (or one of their own) in params.
      const params = (issue.params ?? {}) as { code?: CordonCode; hint?: string };
      return [
        {
          code: params.code ?? 'MANIFEST_INVALID',
          pointer,
          message: issue.message,
          ...(params.hint === undefined ? {} : { hint: params.hint }),
        },
      ];
    }
    default:
      return [
        {
          code: 'MANIFEST_INVALID',
          pointer,
          message: issue.message,
          hint: 'see `cordon manifest schema`',
        },
      ];
  }
}

/**
 * Validate and normalise a manifest object (already parsed from JSON).
 *
 * @example
 * const r = validateManifest(obj);
 * if (!r.ok) for (const i of r.issues) console.error(i.pointer, i.code, i.message);
 */
export function validateManifest(value: unknown): ManifestParseResult {
  const r = ManifestSchema.safeParse(value);
  if (r.success) return { ok: true, manifest: r.data };
  return { ok: false, issues: r.error.issues.flatMap((i) => issueFromZod(i, value)) };
}

/** Parse manifest JSON bytes strictly (size cap, UTF-8, duplicate keys) and validate it. */
export function parseManifest(input: string | Uint8Array): ManifestParseResult {
  let value: unknown;
  try {
    value = parseStrictJson(input, { maxBytes: MANIFEST_MAX_BYTES });
  } catch (e) {
    if (e instanceof CordonError) {
      return {
        ok: false,
        issues: [
          {
            code: e.code,
            pointer: e.pointer ?? '',
            message: e.message,
            ...(e.hint === undefined ? {} : { hint: e.hint }),
          },
        ],
      };
    }
    throw e;
  }
  return validateManifest(value);
}

/** Like {@link parseManifest} but throws {@link ManifestInvalidError}. */
export function parseManifestOrThrow(input: string | Uint8Array, file?: string): Manifest {
  const r = parseManifest(input);
  if (!r.ok) throw new ManifestInvalidError(r.issues, file);
  return r.manifest;
}
