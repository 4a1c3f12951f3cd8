import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { CordonError } from '../errors.js';
import { loadGuardrails, type Guardrails } from '../policy/guardrails.js';
import { readFileCapped } from './files.js';

/** The `.cedar` files directly inside a guardrails directory (examples/ and other folders are not loaded). */
export function readGuardrailFiles(dir: string): { name: string; text: string }[] {
  if (!existsSync(dir)) return [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (cause) {
    // An unreadable guardrails directory must not read as "no guardrails".
    throw new CordonError('FILE_UNREADABLE', `${dir}: ${(cause as Error).message}`, {
      file: dir,
      hint: 'check the directory permissions',
      cause,
    });
  }
  return names
    .filter((f) => f.endsWith('.cedar'))
    .sort()
    .map((f) => {
      const file = join(dir, f);
      const raw = readFileCapped(file, 1024 * 1024);
      try {
        return { name: file, text: new TextDecoder('utf-8', { fatal: true }).decode(raw) };
      } catch (cause) {
        throw new CordonError('GUARDRAIL_SYNTAX', `${file}: not valid UTF-8`, {
          file,
          hint: 'save the file as UTF-8',
          cause,
        });
      }
    });
}

/** Load and validate the guardrails of a policy directory; undefined when there are none. */
export function loadGuardrailDir(dir: string): Guardrails | undefined {
  const files = readGuardrailFiles(dir);
  return files.length === 0 ? undefined : loadGuardrails(files);
}
