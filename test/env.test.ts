import { describe, expect, it } from 'vitest';
import { defaultDirs } from '../src/env.js';

describe('directories', () => {
  it('follow XDG by default, CORDON_HOME when set, and the specific variables above both', () => {
    expect(defaultDirs({}, '/home/a')).toEqual({
      policyDir: '/home/a/.config/cordon',
      stateDir: '/home/a/.local/state/cordon',
    });
    expect(defaultDirs({ XDG_CONFIG_HOME: '/x/cfg', XDG_STATE_HOME: '/x/st' }, '/home/a')).toEqual({
      policyDir: '/x/cfg/cordon',
      stateDir: '/x/st/cordon',
    });
    expect(defaultDirs({ CORDON_HOME: '/opt/c', XDG_CONFIG_HOME: '/x/cfg' }, '/home/a')).toEqual({
      policyDir: '/opt/c/policy',
      stateDir: '/opt/c/state',
    });
    expect(
      defaultDirs(
        {
          CORDON_HOME: '/opt/c',
          CORDON_POLICY_DIR: '/etc/cordon',
          CORDON_STATE_DIR: '/var/lib/cordon',
        },
        '/home/a',
      ),
    ).toEqual({
      policyDir: '/etc/cordon',
      stateDir: '/var/lib/cordon',
    });
    // Empty values are unset, never the current directory.
    expect(defaultDirs({ CORDON_HOME: '', XDG_CONFIG_HOME: '' }, '/home/a').policyDir).toBe(
      '/home/a/.config/cordon',
    );
  });
});
