import { join } from 'node:path';
import semverCompare from 'semver/functions/compare.js';
import { z } from 'zod';
import { CordonError } from '../errors.js';
import { parseStrictJson } from '../manifest/json.js';
import type { AcceptanceStore } from '../manifest/verify.js';
import { readFileIfExists, withFileLock, writeFileAtomic } from './files.js';

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
    this.state = this.load();
  }

  private load(): State {
    const raw = readFileIfExists(this.file, 16 * 1024 * 1024);
    if (raw === undefined) return { agents: {} };
    try {
      return StateSchema.parse(parseStrictJson(raw, { maxBytes: 16 * 1024 * 1024 }));
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

  /**
   * Apply `change` to the state as it is on disk, and record the result. A change that returns
   * the state it was given has nothing to record, and the file is left as it is: verifying an
   * accepted manifest again (every session's open) pays for no lock and no durable write. That
   * look needs no lock: the file is only ever replaced whole, and only by a newer version or
   * serial, so what is already covered stays covered. Anything newer is written under the
   * lock, re-read there, so concurrent verifiers never lose each other's records.
   */
  private update(change: (s: State) => State): void {
    const seen = this.load();
    if (change(seen) === seen) {
      this.state = seen;
      return;
    }
    withFileLock(this.file, () => {
      const read = this.load();
      this.state = change(read);
      if (this.state !== read)
        writeFileAtomic(this.file, JSON.stringify(this.state, null, 2) + '\n', 0o600);
    });
  }

  lastAccepted(agentName: string): { version: string; digest: string } | undefined {
    return Object.prototype.hasOwnProperty.call(this.state.agents, agentName)
      ? this.state.agents[agentName]
      : undefined;
  }

  accept(agentName: string, version: string, digest: string, at: Date): void {
    this.update((state) => {
      const current = Object.prototype.hasOwnProperty.call(state.agents, agentName)
        ? state.agents[agentName]
        : undefined;
      // Never move backwards, even if another process accepted a newer version meanwhile.
      if (current !== undefined && semverCompare(current.version, version) >= 0) return state;
      const agents = { ...state.agents };
      Object.defineProperty(agents, agentName, {
        value: { version, digest, acceptedAt: at.toISOString() },
        enumerable: true,
        writable: true,
        configurable: true,
      });
      return { ...state, agents };
    });
  }

  revocationSerial(): number | undefined {
    return this.state.revocationSerial;
  }

  acceptRevocationSerial(serial: number, at: Date): void {
    this.update((state) =>
      (state.revocationSerial ?? 0) >= serial
        ? state
        : { ...state, revocationSerial: serial, revocationAcceptedAt: at.toISOString() },
    );
  }
}
