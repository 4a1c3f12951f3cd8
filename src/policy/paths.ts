/** Lexical checks and normalisation of the paths in requests (not manifest patterns). */

export type PathProblem = 'relative' | 'control' | 'not-nfc' | 'too-long' | 'proc-alias';

const CONTROL = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/;
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
  const n = path.length;
  if (path.charCodeAt(0) !== 0x2f) return 'relative';
  if (n > 4096) return 'too-long';
  // One scan: is it printable ASCII, and does it hold //, /./, /../ or a trailing /?
  let plain = true;
  let needsWork = n > 1 && path.charCodeAt(n - 1) === 0x2f;
  for (let i = 0; i < n; i++) {
    const c = path.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) {
      plain = false;
      continue;
    }
    if (c === 0x2f && i + 1 < n) {
      const c1 = path.charCodeAt(i + 1);
      if (c1 === 0x2f) needsWork = true;
      else if (c1 === 0x2e) {
        const c2 = i + 2 < n ? path.charCodeAt(i + 2) : 0x2f;
        if (c2 === 0x2f || (c2 === 0x2e && (i + 3 >= n || path.charCodeAt(i + 3) === 0x2f)))
          needsWork = true;
      }
    }
  }
  if (!plain) {
    if (CONTROL.test(path)) return 'control';
    if (path.normalize('NFC') !== path) return 'not-nfc';
  }
  let out = path;
  if (needsWork) {
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
