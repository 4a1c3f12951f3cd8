import type { z } from 'zod';
import { CordonError, toPointer, type CordonCode } from '../errors.js';
import { parseStrictJson } from '../manifest/json.js';

/**
 * Parse a JSON settings file against its schema. A problem is an error naming the file and the
 * field (JSON pointer) with `code` and `hint`, never a fallback to defaults.
 */
export function parseConfigFile<S extends z.ZodType>(
  schema: S,
  raw: string | Uint8Array,
  file: string,
  opts: { code: CordonCode; hint: string; maxBytes: number },
): z.infer<S> {
  let value: unknown;
  try {
    value = parseStrictJson(raw, { maxBytes: opts.maxBytes });
  } catch (e) {
    throw e instanceof CordonError ? e.withFile(file) : e;
  }
  const r = schema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0] ?? { path: [], message: 'invalid' };
    const pointer = toPointer(issue.path.map((p) => (typeof p === 'number' ? p : String(p))));
    throw new CordonError(opts.code, `${pointer || '/'}: ${issue.message}`, {
      file,
      pointer,
      hint: opts.hint,
    });
  }
  return r.data;
}
