import { hostname, type as osType, userInfo } from 'node:os';
import { VERSION } from '../version.js';
import type { EventContext } from './events.js';

/**
 * What every event written by this process says about the host and the acting program; the
 * device is named by its key id when this process knows it (a client of the endpoint service
 * does not: the service names the device on what it records).
 */
export function processContext(deviceKeyId: string | undefined, agent?: string): EventContext {
  let user: { name: string; uid: string } | undefined;
  try {
    const u = userInfo();
    user = { name: u.username, uid: String(u.uid) };
  } catch {
    user = undefined;
  }
  return {
    productVersion: VERSION,
    device: {
      hostname: hostname(),
      ...(deviceKeyId === undefined ? {} : { uid: deviceKeyId.slice(0, 16) }),
      osName: osType(),
    },
    actor: {
      name: agent ?? 'cordon',
      pid: process.pid,
      processName: 'cordon',
      ...(user === undefined ? {} : { user }),
    },
  };
}
