// sliceTurns: a long pass gives the event loop a turn once its slice has run, and only then.
import { describe, expect, it } from 'vitest';
import { sliceTurns } from '../../src/util/async.ts';

describe('sliceTurns', () => {
  it('goes on at once within the slice, and waits for the next turn of the loop once it has run', async () => {
    let now = 0;
    const turn = sliceTurns(2, () => now);
    let immediateRan = false;
    setImmediate(() => {
      immediateRan = true;
    });
    now = 1.9;
    expect(await turn()).toBe(false);
    expect(immediateRan).toBe(false);
    now = 2;
    expect(await turn()).toBe(true);
    // The loop turned: an immediate queued before it ran.
    expect(immediateRan).toBe(true);
    // A new slice starts at the turn.
    now = 3.5;
    expect(await turn()).toBe(false);
    now = 4;
    expect(await turn()).toBe(true);
  });
});
