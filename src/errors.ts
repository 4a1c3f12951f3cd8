/**
 * One error type for the whole project. Every failure carries a stable `code` that tests and
 * callers branch on; messages are for people and may change.
 *
 * @example
 * throw new CordonError('MANIFEST_INVALID', 'readPaths/0: relative path', { pointer: '/readPaths/0' });
 */
export class CordonError extends Error {
  override readonly name = 'CordonError';
  /** Stable code; each module documents its codes as a string union (e.g. `PathErrorCode`). */
  readonly code: string;
  /** JSON pointer (RFC 6901) of the offending field, when there is one. */
  readonly pointer: string | undefined;
  /** File the error is about, when there is one. */
  readonly file: string | undefined;
  /** What the user should do about it. */
  readonly hint: string | undefined;

  constructor(
    code: string,
    message: string,
    options: { pointer?: string; file?: string; hint?: string; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.pointer = options.pointer;
    this.file = options.file;
    this.hint = options.hint;
  }

  /** A copy of this error that names the file it came from. */
  withFile(file: string): CordonError {
    const copy = new CordonError(this.code, this.message, {
      ...(this.pointer === undefined ? {} : { pointer: this.pointer }),
      ...(this.hint === undefined ? {} : { hint: this.hint }),
      file,
      cause: this.cause,
    });
    return copy;
  }

  toJSON(): Record<string, string> {
    const out: Record<string, string> = { code: this.code, message: this.message };
    if (this.file !== undefined) out['file'] = this.file;
    if (this.pointer !== undefined) out['pointer'] = this.pointer;
    if (this.hint !== undefined) out['hint'] = this.hint;
    return out;
  }
}

export function isCordonError(e: unknown): e is CordonError {
  return e instanceof CordonError;
}

/** Escape one JSON pointer token (RFC 6901). */
export function pointerToken(token: string | number): string {
  return String(token).replaceAll('~', '~0').replaceAll('/', '~1');
}

/** Build a JSON pointer from path tokens. */
export function toPointer(path: readonly (string | number)[]): string {
  return path.length === 0 ? '' : '/' + path.map(pointerToken).join('/');
}
