/**
 * A failed zod parse as one line naming the field. Only zod's types are imported: a client that
 * checks answers by hand loads no zod for this.
 */
import type * as z from 'zod/mini';

/** What a failed parse carries. */
export interface Issues {
  readonly issues: readonly z.core.$ZodIssue[];
}

/** Turn a failed parse into one line naming the field: `events/0/seq: expected int`. */
export function describeIssues(error: Issues): string {
  return error.issues
    .slice(0, 5)
    .map((i) => {
      const at = i.path.length === 0 ? '(body)' : i.path.map(String).join('/');
      const what =
        i.code === 'invalid_type'
          ? `expected ${i.expected}`
          : i.code === 'too_big'
            ? `too big (at most ${String(i.maximum)})`
            : i.code === 'too_small'
              ? `too small (at least ${String(i.minimum)})`
              : i.code === 'unrecognized_keys'
                ? `unknown field(s) ${i.keys.join(', ')}`
                : i.code === 'invalid_value'
                  ? `must be one of ${i.values.map(String).join(', ')}`
                  : i.code;
      return `${at}: ${what}`;
    })
    .join('; ');
}
