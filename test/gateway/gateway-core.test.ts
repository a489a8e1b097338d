// The gateway's decision per request, without sockets: a scripted transport stands in for the line
// (the one thing the real-process tests cannot make: a line that never ends a request), so the
// watchdog's "wedged" verdict and the answers to each unit reply can be checked exactly.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeFencedWrite, writeAddress } from '../../src/devices/modbus/gateway-fencing.ts';
import { parseGatewayConfig } from '../../src/gateway/config.ts';
import { EpochStore } from '../../src/gateway/epoch-store.ts';
import { FencingGateway } from '../../src/gateway/gateway.ts';
import { GatewayMetrics } from '../../src/gateway/metrics.ts';
import type { Transport, TransportOutcome } from '../../src/gateway/transport.ts';
import { quietLogger, waitFor } from '../helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'coolctl-gateway-core-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A line whose answers the test writes: each request gets `reply(pdu)`; `hang` never answers. */
class ScriptedTransport implements Transport {
  readonly endpoint = 'scripted';
  readonly usable = true;
  readonly sent: Buffer[] = [];
  reply: (pdu: Buffer) => TransportOutcome | 'hang' = (pdu) => ({
    kind: 'answer',
    pdu: Buffer.from(pdu.subarray(0, 5)),
  });
  async open(): Promise<void> {}
  async close(): Promise<void> {}
  transact(_unitId: number, pdu: Buffer): Promise<TransportOutcome> {
    this.sent.push(pdu);
    const r = this.reply(pdu);
    return r === 'hang' ? new Promise(() => undefined) : Promise.resolve(r);
  }
}

async function gateway(name: string, timeoutMs = 100) {
  const cfg = parseGatewayConfig(
    [
      `gateway: ${name}`,
      'listen: { port: 0 }',
      'http: { port: 0 }',
      `stateFile: ${join(dir, `${name}.json`)}`,
      'lines: [{ name: a, tcp: { host: 127.0.0.1, port: 1 } }]',
      `units: [{ id: 3, line: a, timeoutMs: ${timeoutMs} }]`,
    ].join('\n'),
  );
  const line = new ScriptedTransport();
  const { store } = await EpochStore.open(cfg.stateFile);
  const g = new FencingGateway(cfg, store, {
    logger: quietLogger,
    metrics: new GatewayMetrics(new Registry()),
    transports: new Map([['a', line]]),
  });
  return { g, line };
}

function fc16(address: number, words: number[]): Buffer {
  const b = Buffer.alloc(6 + 2 * words.length);
  b[0] = 16;
  b.writeUInt16BE(address, 1);
  b.writeUInt16BE(words.length, 3);
  b[5] = 2 * words.length;
  for (const [i, w] of words.entries()) b.writeUInt16BE(w, 6 + 2 * i);
  return b;
}

const fenced = (epoch: number, fc: 5 | 6 | 15 | 16, address: number, values: number[]) =>
  fc16(writeAddress(), encodeFencedWrite({ epoch, fc, address, values }));

describe('FencingGateway', () => {
  it('sends the unit the plain write, answers with the window echo; the same epoch again is the same leader', async () => {
    const { g, line } = await gateway('echo');
    const req = fenced(5, 15, 10, [1, 0, 1]);
    expect([...(await g.handle(3, req, 't'))]).toEqual([...req.subarray(0, 5)]);
    expect([...line.sent[0]!]).toEqual([15, 0, 10, 0, 3, 1, 0b101]);
    expect((await g.handle(3, fenced(5, 6, 1, [7]), 't'))[0]).toBe(16);
    expect(line.sent).toHaveLength(2);
  });

  it('a stale epoch never reaches the line; the unit’s own exception comes back as the window write’s', async () => {
    const { g, line } = await gateway('stale');
    await g.handle(3, fenced(9, 6, 1, [1]), 't');
    expect([...(await g.handle(3, fenced(8, 6, 1, [2]), 't'))]).toEqual([0x90, 0x0d]);
    expect(line.sent).toHaveLength(1);
    line.reply = () => ({ kind: 'answer', pdu: Buffer.from([0x86, 0x03]) });
    expect([...(await g.handle(3, fenced(9, 6, 1, [999]), 't'))]).toEqual([0x90, 0x03]);
  });

  it('a line that holds a request past every deadline is wedged: the watchdog is withheld', async () => {
    const { g, line } = await gateway('wedged', 10);
    expect(g.wedged()).toBeUndefined();
    line.reply = () => 'hang';
    void g.handle(3, Buffer.from([3, 0, 0, 0, 1]), 't');
    const why = await waitFor('the wedged verdict', () => g.wedged(), { timeoutMs: 5_000, intervalMs: 50 });
    expect(why).toMatch(/line a has held one request for \d+ ms/);
    expect(g.health()).toMatchObject({ ok: false, problems: [expect.stringMatching(/line a/)] });
  });
});
