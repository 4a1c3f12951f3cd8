import { join } from 'node:path';
import { z } from 'zod';
import { CordonError } from '../errors.js';
import { parseStrictJson } from '../manifest/json.js';
import type { AcceptanceStore } from '../manifest/verify.js';
import { readFileIfExists, writeFileAtomic } from './files.js';

const StateSchema = z.strictObject({
  agents: z.record(
    z.string(),
    z.strictObject({ version: z.string(), digest: z.string(), acceptedAt: z.string() }),
  ),
  revocationSerial: z.number().int().min(1).optional(),
  revocationAcceptedAt: z.string().optional(),
});
type State = z.output<typeof StateSchema>;

/**
 * Rollback-protection state in the state directory (`accepted.json`): the last manifest
 * version accepted per agent and the last revocation-list serial. A damaged file is an error,
 * never a reset: forgetting it would silently re-enable rollbacks.
 */
export class FileAcceptanceStore implements AcceptanceStore {
  readonly file: string;
  private state: State;

  constructor(stateDir: string) {
    this.file = join(stateDir, 'accepted.json');
    const raw = readFileIfExists(this.file, 16 * 1024 * 1024);
    if (raw === undefined) {
      this.state = { agents: {} };
      return;
    }
    try {
      this.state = StateSchema.parse(parseStrictJson(raw, { maxBytes: 16 * 1024 * 1024 }));
    } catch (cause) {
      throw new CordonError(
        'STATE_CORRUPT',
        `${this.file} is damaged; rollback protection cannot be checked`,
        {
          file: this.file,
          hint: 'restore it from backup; deleting it re-enables rollback to older manifests',
          cause,
        },
      );
    }
  }

  lastAccepted(agentName: string): { version: string; digest: string } | undefined {
    return Object.prototype.hasOwnProperty.call(this.state.agents, agentName)
      ? this.state.agents[agentName]
      : undefined;
  }

  accept(agentName: string, version: string, digest: string, at: Date): void {
    const agents = { ...this.state.agents };
    Object.defineProperty(agents, agentName, {
      value: { version, digest, acceptedAt: at.toISOString() },
      enumerable: true,
      writable: true,
      configurable: true,
    });
    this.state = { ...this.state, agents };
    this.save();
  }

  revocationSerial(): number | undefined {
    return this.state.revocationSerial;
  }

  acceptRevocationSerial(serial: number, at: Date): void {
    this.state = {
      ...this.state,
      revocationSerial: serial,
      revocationAcceptedAt: at.toISOString(),
    };
    this.save();
  }

  private save(): void {
    writeFileAtomic(this.file, JSON.stringify(this.state, null, 2) + '\n', 0o600);
  }
}
