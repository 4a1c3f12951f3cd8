import {
  closeSync,
  constants,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { CordonError } from '../errors.js';
import { lockExclusive } from '../native.js';

export type FileErrorCode =
  | 'FILE_NOT_FOUND'
  | 'FILE_UNREADABLE'
  | 'FILE_NOT_REGULAR'
  | 'FILE_TOO_LARGE'
  | 'FILE_EXISTS'
  | 'FILE_UNWRITABLE';

function ioError(e: unknown, file: string, writing: boolean): CordonError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' && !writing) {
    return new CordonError('FILE_NOT_FOUND', `${file}: no such file`, {
      file,
      hint: 'check the path',
      cause: e,
    });
  }
  if (code === 'EEXIST') {
    return new CordonError('FILE_EXISTS', `${file} already exists; refusing to overwrite it`, {
      file,
      hint: 'choose another name or move the existing file away first',
      cause: e,
    });
  }
  return new CordonError(
    writing ? 'FILE_UNWRITABLE' : 'FILE_UNREADABLE',
    `${file}: ${(e as Error).message}`,
    {
      file,
      hint: writing ? 'check the directory exists and is writable' : 'check the file permissions',
      cause: e,
    },
  );
}

/**
 * Read a regular file, refusing anything larger than `maxBytes` before reading it (a manifest
 * path pointing at /dev/zero or a huge file must not exhaust memory).
 */
export function readFileCapped(file: string, maxBytes: number): Buffer {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOCTTY | constants.O_NONBLOCK);
  } catch (e) {
    throw ioError(e, file, false);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) {
      throw new CordonError('FILE_NOT_REGULAR', `${file} is not a regular file`, {
        file,
        hint: 'point at a file',
      });
    }
    if (st.size > maxBytes) {
      throw new CordonError(
        'FILE_TOO_LARGE',
        `${file} is ${st.size} bytes; the limit is ${maxBytes}`,
        {
          file,
          hint: 'a file this large is almost certainly not what you meant',
        },
      );
    }
    // Read one byte past the limit so a file that grows while we read is still caught.
    const buf = Buffer.alloc(Math.min(maxBytes + 1, st.size + 1));
    let off = 0;
    for (;;) {
      const n = readSync(fd, buf, off, buf.length - off, null);
      if (n === 0) break;
      off += n;
      if (off === buf.length) {
        if (off > maxBytes)
          throw new CordonError('FILE_TOO_LARGE', `${file} is larger than ${maxBytes} bytes`, {
            file,
            hint: 'shorten the file',
          });
        break;
      }
    }
    return buf.subarray(0, off);
  } catch (e) {
    if (e instanceof CordonError) throw e;
    throw ioError(e, file, false);
  } finally {
    closeSync(fd);
  }
}

/** Read a file that may be absent. */
export function readFileIfExists(file: string, maxBytes: number): Buffer | undefined {
  try {
    return readFileCapped(file, maxBytes);
  } catch (e) {
    if (e instanceof CordonError && e.code === 'FILE_NOT_FOUND') return undefined;
    throw e;
  }
}

export function fsyncDir(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function writeAll(fd: number, data: Buffer): void {
  let off = 0;
  while (off < data.length) off += writeSync(fd, data, off);
}

/** Replace a file atomically and durably: write a temporary file, fsync, rename, fsync the directory. */
export function writeFileAtomic(file: string, data: string | Buffer, mode = 0o644): void {
  const dir = dirname(file);
  const tmp = join(dir, `.${basename(file)}.${process.pid}.${Date.now()}.tmp`);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
    try {
      writeAll(fd, Buffer.from(data));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
    fsyncDir(dir);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw ioError(e, file, true);
  }
}

/** Create a new file durably; fail with FILE_EXISTS rather than overwrite. */
export function writeFileNew(file: string, data: string | Buffer, mode = 0o644): void {
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o755 });
    const fd = openSync(
      file,
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
      mode,
    );
    try {
      writeAll(fd, Buffer.from(data));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    fsyncDir(dirname(file));
  } catch (e) {
    throw ioError(e, file, true);
  }
}

/** Create a directory (and parents); failures name the directory. */
export function ensureDir(dir: string, mode = 0o755): void {
  try {
    mkdirSync(dir, { recursive: true, mode });
  } catch (e) {
    throw ioError(e, dir, true);
  }
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/**
 * Run `fn` holding an exclusive flock(2) on `file.lock`. The kernel releases it when its holder
 * ends, however it ends, so there is no stale lock to take over; waiting longer than
 * `timeoutMs` is an error, never a silent proceed.
 */
export function withFileLock<T>(file: string, fn: () => T, timeoutMs = 10_000): T {
  const lock = `${file}.lock`;
  ensureDir(dirname(lock));
  let fd: number;
  try {
    fd = openSync(lock, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  } catch (e) {
    throw ioError(e, lock, true);
  }
  try {
    // An flock(2) the kernel drops with its holder, however it ends: a crashed holder never
    // leaves a lock to take over, and the file is never deleted (two processes that both saw
    // a dead pid could otherwise both take over, as with a pid file).
    const deadline = Date.now() + timeoutMs;
    while (!lockExclusive(fd)) {
      if (Date.now() > deadline) {
        const holder = readFileIfExists(lock, 64)?.toString().trim() || '?';
        throw new CordonError('FILE_LOCKED', `${lock} is held by process ${holder}`, {
          file: lock,
          hint: 'wait for the other cordon process to finish',
        });
      }
      Atomics.wait(sleeper, 0, 0, 5 + Math.floor(Math.random() * 10));
    }
    // The holder's pid, for the message above only.
    ftruncateSync(fd, 0);
    writeAll(fd, Buffer.from(String(process.pid)));
    return fn();
  } finally {
    closeSync(fd);
  }
}
