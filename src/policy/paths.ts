/** Lexical checks and normalisation of the paths in requests (not manifest patterns). */

export type PathProblem = 'relative' | 'control' | 'not-nfc' | 'too-long' | 'proc-alias';

const CONTROL = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/;
const NEEDS_WORK = /\/\/|\/\.\.?(\/|$)|.\/$/;
const NOT_PRINTABLE_ASCII = /[^\u0020-\u007e]/;
// Paths that name another process's view of the filesystem. The PDP runs in its own process,
// so it cannot resolve them as the agent would: they are denied.
const PROC_ALIAS =
  /^\/proc\/(self|thread-self|\d+)(\/task\/\d+)?\/(root|cwd|fd|fdinfo|map_files|exe)(\/|$)|^\/dev\/(fd|stdin|stdout|stderr)(\/|$)/;

/**
 * Normalise a request path: `.`, `..` (never above `/`), `//` and a trailing `/`. Returns the
 * normalised path or the problem. Non-NFC Unicode is refused rather than normalised: on Linux
 * the NFD and NFC spellings are different directories, and a request must never be judged as
 * a different file than the one it opens.
 */
// Returns a plain string (a PathProblem never starts with "/") so the hot path allocates nothing.
export function normaliseRequestPath(path: string): string {
  if (path.charCodeAt(0) !== 0x2f) return 'relative';
  if (path.length > 4096) return 'too-long';
  // Fast path: printable ASCII needs no Unicode or control-character checks.
  if (NOT_PRINTABLE_ASCII.test(path)) {
    if (CONTROL.test(path)) return 'control';
    if (path.normalize('NFC') !== path) return 'not-nfc';
  }
  let out = path;
  if (NEEDS_WORK.test(path)) {
    const segs: string[] = [];
    for (const s of path.split('/')) {
      if (s === '' || s === '.') continue;
      if (s === '..') segs.pop();
      else segs.push(s);
    }
    out = '/' + segs.join('/');
  }
  if ((out.startsWith('/proc/') || out.startsWith('/dev/')) && PROC_ALIAS.test(out))
    return 'proc-alias';
  return out;
}

export function isPathProblem(v: string): v is PathProblem {
  return v.charCodeAt(0) !== 0x2f;
}
