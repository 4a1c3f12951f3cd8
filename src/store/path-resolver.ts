import { lstatSync, readlinkSync } from 'node:fs';
import type { PathResolver } from '../policy/types.js';

const MAX_LINKS = 40; // as the Linux kernel (ELOOP after 40 symlinks)

/**
 * Resolve a normalised absolute path component by component as the kernel would: each symlink
 * is followed (relative targets against its directory), `..` after a symlink applies to the
 * target, and once a component does not exist the rest is appended as written. A dangling
 * symlink as the last component is followed to its target, because creating the file would
 * create the target. Loops and unreadable directories resolve to undefined (deny).
 */
export function createFsPathResolver(): PathResolver {
  return (path: string): string | undefined => {
    let pending = path.split('/').filter((s) => s !== '');
    const done: string[] = [];
    let links = 0;
    let exists = true;
    while (pending.length > 0) {
      const seg = pending.shift() ?? '';
      if (seg === '.') continue;
      if (seg === '..') {
        done.pop();
        continue;
      }
      if (!exists) {
        done.push(seg);
        continue;
      }
      const cur = '/' + [...done, seg].join('/');
      let st;
      try {
        st = lstatSync(cur);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') {
          exists = false;
          done.push(seg);
          continue;
        }
        if (code === 'ENOTDIR') {
          // A file used as a directory: nothing below it can exist; judge the path as written.
          exists = false;
          done.push(seg);
          continue;
        }
        return undefined;
      }
      if (st.isSymbolicLink()) {
        if (++links > MAX_LINKS) return undefined;
        let target: string;
        try {
          target = readlinkSync(cur);
        } catch {
          return undefined;
        }
        const t = target.split('/').filter((s) => s !== '');
        if (target.startsWith('/')) done.length = 0;
        pending = [...t, ...pending];
        continue;
      }
      done.push(seg);
    }
    return '/' + done.join('/');
  };
}
