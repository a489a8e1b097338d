// freePort() hands out a port that is free now, for a server that must know its port before it
// binds. The probe closes at once, so the same port is free again for the next call: a test that
// asks for several ports before starting its servers (one Promise.all for every node's API) could
// get one port twice, and one node then failed to listen (EADDRINUSE) — a whole chaos suite lost.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { freePort } from '../../src/util/async.ts';

afterEach(() => {
  vi.restoreAllMocks();
});

describe('freePort', () => {
  it('never hands out a port twice in one process, even when the same one is drawn again', async () => {
    // Every draw lands on the same port: only the memory of what was handed out tells them apart.
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    const ports = [];
    for (let i = 0; i < 3; i++) ports.push(await freePort('127.0.0.1'));
    ports.push(...(await Promise.all([freePort('127.0.0.1'), freePort('127.0.0.1')])));
    expect(new Set(ports).size).toBe(ports.length);
  });
});
