import type { OcsfEvent } from '../src/audit/events.js';
import type { AuditLog } from '../src/audit/log.js';

/**
 * Append `count` events (cycling through `events`) the way a busy enforcement point does: many
 * appenders waiting at once, new ones arriving while earlier groups are synced. At most
 * `window * depth` appends are in flight.
 */
export async function appendPipelined(
  log: AuditLog,
  events: readonly OcsfEvent[],
  count: number,
  window = 1024,
  depth = 8,
): Promise<void> {
  const inFlight: Promise<unknown>[] = [];
  for (let i = 0; i < count;) {
    const group: Promise<unknown>[] = [];
    for (const end = Math.min(count, i + window); i < end; i++) {
      group.push(log.append(events[i % events.length] as OcsfEvent));
    }
    inFlight.push(Promise.all(group));
    if (inFlight.length >= depth) await inFlight.shift();
  }
  await Promise.all(inFlight);
}
