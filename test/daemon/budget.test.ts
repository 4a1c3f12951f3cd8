import { describe, expect, it } from 'vitest';
import { BodyBudget, MAX_BODIES_PER_USER } from '../../src/daemon/server.js';
import { MAX_REQUEST_FRAME } from '../../src/protocol/wire.js';

// What one user's requests in flight may hold of request bodies, over all its connections.
describe('the per-user budget of request bodies', () => {
  it('admits a frame of the largest size to a user with nothing in flight', () => {
    expect(MAX_REQUEST_FRAME).toBeLessThan(MAX_BODIES_PER_USER);
    const b = new BodyBudget(MAX_BODIES_PER_USER);
    expect(b.take(1000, MAX_REQUEST_FRAME)).toBe(true);
  });

  it('refuses what would pass the budget, per user, until enough is given back', () => {
    const b = new BodyBudget(100);
    expect(b.take(1, 60)).toBe(true);
    expect(b.take(1, 50)).toBe(false);
    // Another user is not held back by the first.
    expect(b.take(2, 90)).toBe(true);
    let woken = 0;
    b.whenFree(1, () => woken++);
    b.give(1, 60);
    expect(woken).toBe(1);
    expect(b.used(1)).toBe(0);
    expect(b.take(1, 50)).toBe(true);
    // A wake-up is given once.
    b.give(1, 50);
    expect(woken).toBe(1);
  });

  it('a cancelled wait is not called', () => {
    const b = new BodyBudget(10);
    expect(b.take(7, 10)).toBe(true);
    let woken = false;
    const cancel = b.whenFree(7, () => (woken = true));
    cancel();
    b.give(7, 10);
    expect(woken).toBe(false);
  });

  it('always lets a user with nothing in flight go on (no request waits for itself)', () => {
    const b = new BodyBudget(10);
    expect(b.take(3, 10)).toBe(true);
    b.give(3, 10);
    expect(b.take(3, 10)).toBe(true);
  });
});
