// What an attacker with write access to the state directory can do, as test tools.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeRecord, scanRecord } from '../../src/audit/record.js';

export function segmentFiles(stateDir: string): string[] {
  const dir = join(stateDir, 'audit', 'segments');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.ndjson'))
    .sort()
    .map((f) => join(dir, f));
}

export function readLines(file: string): string[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '');
}

export function writeLines(file: string, lines: readonly string[]): void {
  writeFileSync(file, lines.map((l) => l + '\n').join(''));
}

/** The event JSON text inside a record line. */
export function eventText(line: string): string {
  return line.slice('{"event":'.length, line.lastIndexOf(',"hash":"'));
}

/**
 * Renumber and re-hash every record from `from` on so the hash chain is intact again — what an
 * attacker does after editing, inserting or deleting records. Only signed checkpoints (which need
 * the device key) can reveal it.
 */
export function rechain(lines: string[], from: number): string[] {
  const out = lines.slice(0, from);
  let prev = from === 0 ? '0'.repeat(64) : scanRecord(Buffer.from(out[from - 1]!)).hash;
  let seq = from === 0 ? 1 : scanRecord(Buffer.from(out[from - 1]!)).seq + 1;
  for (const line of lines.slice(from)) {
    const time = scanRecord(Buffer.from(line)).time;
    const r = encodeRecord(seq++, time, prev, eventText(line));
    prev = r.hash;
    out.push(r.line);
  }
  return out;
}
