import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';

/** What the kernel needs besides the file itself to execute it. */
export type ExecNeeds =
  | { readonly kind: 'elf'; readonly interpreter?: string }
  | { readonly kind: 'script'; readonly interpreter: string }
  | { readonly kind: 'unknown' };

const PT_INTERP = 3;

/**
 * Read the ELF program interpreter (the dynamic loader, e.g. /lib64/ld-linux-x86-64.so.2) or a
 * script's `#!` interpreter. The kernel opens either with execute intent, so the sandbox must
 * grant it the execute right too.
 */
export function execNeeds(path: string): ExecNeeds {
  // Without waiting on a FIFO or a device named as a program: only a regular file is executed,
  // and only one is read.
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    if (!fstatSync(fd).isFile()) return { kind: 'unknown' };
    const head = Buffer.alloc(4096);
    const n = readSync(fd, head, 0, head.length, 0);
    if (n >= 2 && head[0] === 0x23 && head[1] === 0x21) {
      const line = head.subarray(2, n).toString('latin1').split('\n', 1)[0] ?? '';
      const interpreter = line.trim().split(/[ \t]+/, 1)[0] ?? '';
      return interpreter.startsWith('/') ? { kind: 'script', interpreter } : { kind: 'unknown' };
    }
    if (n < 64 || head.readUInt32BE(0) !== 0x7f454c46) return { kind: 'unknown' };
    const is64 = head[4] === 2;
    const le = head[5] === 1;
    const u16 = (o: number): number => (le ? head.readUInt16LE(o) : head.readUInt16BE(o));
    const u32 = (o: number): number => (le ? head.readUInt32LE(o) : head.readUInt32BE(o));
    const u64 = (o: number): number =>
      Number(le ? head.readBigUInt64LE(o) : head.readBigUInt64BE(o));
    const phoff = is64 ? u64(32) : u32(28);
    const phentsize = u16(is64 ? 54 : 42);
    const phnum = u16(is64 ? 56 : 44);
    const table = Buffer.alloc(Math.min(phentsize * phnum, 65536));
    readSync(fd, table, 0, table.length, phoff);
    for (let i = 0; i < phnum && (i + 1) * phentsize <= table.length; i++) {
      const o = i * phentsize;
      const type = le ? table.readUInt32LE(o) : table.readUInt32BE(o);
      if (type !== PT_INTERP) continue;
      const off = is64
        ? Number(le ? table.readBigUInt64LE(o + 8) : table.readBigUInt64BE(o + 8))
        : le
          ? table.readUInt32LE(o + 4)
          : table.readUInt32BE(o + 4);
      const size = is64
        ? Number(le ? table.readBigUInt64LE(o + 32) : table.readBigUInt64BE(o + 32))
        : le
          ? table.readUInt32LE(o + 16)
          : table.readUInt32BE(o + 16);
      const buf = Buffer.alloc(Math.min(size, 4096));
      readSync(fd, buf, 0, buf.length, off);
      return { kind: 'elf', interpreter: buf.toString('latin1').replace(/\0.*$/s, '') };
    }
    return { kind: 'elf' };
  } finally {
    closeSync(fd);
  }
}
