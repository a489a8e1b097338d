// freePort: a port a test server can bind a moment later. The hall lost controllers at start with
// EADDRINUSE on their API port: listen(0) hands out ports from the kernel's ephemeral range, the
// same range every outgoing connection's source port comes from, and a secured hall makes
// thousands of those between choosing a port and binding it. Ports now come from below that range.
import { readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { freePort } from '../../src/util/async.ts';

const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);

describe('freePort', () => {
  it('gives ports below the ephemeral range that bind, and not the same one every time', async () => {
    const ports = await Promise.all(Array.from({ length: 20 }, () => freePort('127.0.0.1')));
    for (const p of ports) {
      expect(p).toBeGreaterThanOrEqual(10_000);
      expect(p).toBeLessThan(low);
    }
    expect(new Set(ports).size).toBeGreaterThan(10);
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(ports[0], '127.0.0.1', resolve);
    });
    server.close();
  });

  it('no outgoing connection is ever given a port it chose', async () => {
    const server = createServer((s) => s.destroy());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const target = (server.address() as { port: number }).port;
    const chosen = await freePort('127.0.0.1');
    const sources: number[] = [];
    for (let i = 0; i < 200; i++) {
      const c = connect(target, '127.0.0.1');
      await new Promise<void>((resolve, reject) => c.once('connect', resolve).once('error', reject));
      sources.push(c.localPort ?? 0);
      c.destroy();
    }
    server.close();
    expect(sources.every((p) => p >= low)).toBe(true);
    expect(sources).not.toContain(chosen);
  });
});
