// The gateway's Modbus TCP listener in process, with a scripted request handler: what the real
// process cannot be made to do on cue — a request that stays on the line past the idle timeout, and
// answers large enough to pass the buffered-bytes cap before the socket's own high-water mark, and
// a request held on the line while a newcomer needs a slot.
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type ListenerHooks, ModbusListener } from '../../src/gateway/modbus-listener.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { mbap } from './harness.ts';

const running: { listener: ModbusListener; sockets: Socket[] }[] = [];
afterEach(async () => {
  for (const r of running.splice(0)) {
    for (const s of r.sockets) s.destroy();
    await r.listener.stop();
  }
});

interface Seen {
  refused: { reason: string; detail: string }[];
  idle: string[];
}

async function listen(
  opts: {
    idleTimeoutMs: number;
    maxBufferedBytes?: number;
    maxInFlight?: number;
    maxConnections?: number;
    idleDisplaceAfterMs?: number;
  },
  handle: ListenerHooks['handle'],
): Promise<{ port: number; seen: Seen; client: () => Promise<Socket> }> {
  const seen: Seen = { refused: [], idle: [] };
  const listener = new ModbusListener(
    { host: '127.0.0.1', port: 0, maxConnections: 4, ...opts },
    {
      handle,
      refuse: (reason, _client, detail) => seen.refused.push({ reason, detail }),
      idle: (_client, detail) => seen.idle.push(detail),
      connections: () => undefined,
    },
    quietLogger,
  );
  const run = { listener, sockets: [] as Socket[] };
  running.push(run);
  const { port } = await listener.start();
  const client = () =>
    new Promise<Socket>((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port });
      s.on('error', () => undefined);
      run.sockets.push(s);
      s.once('connect', () => resolve(s));
      s.once('error', reject);
    });
  return { port, seen, client };
}

describe('ModbusListener', () => {
  it('a request still on the line when the idle timeout passes is answered, not cut off', async () => {
    let release: () => void = () => undefined;
    const onLine = new Promise<void>((r) => {
      release = r;
    });
    const { seen, client } = await listen({ idleTimeoutMs: 1_000 }, async (_unit, pdu) => {
      await onLine;
      return Buffer.from([pdu[0]!, 2, 0, 42]);
    });
    const s = await client();
    let answer: number[] | undefined;
    s.on('data', (d: Buffer) => {
      answer = [...d.subarray(7)];
    });
    s.write(mbap(1, [3, 0, 0, 0, 1]));
    const t0 = performance.now();
    // Half an idle timeout past it, the request unanswered: the connection is still there.
    await waitFor('an idle timeout and a half', () => performance.now() > t0 + 1_500, { intervalMs: 100 });
    expect(s.destroyed).toBe(false);
    release();
    await waitFor('the answer', () => answer);
    expect(answer).toEqual([3, 2, 0, 42]);
    expect(seen.idle).toEqual([]);
    // Then silence is idleness again.
    await waitFor('the idle close', () => s.destroyed || s.readableEnded, { timeoutMs: 5_000 });
    expect(seen.idle).toEqual(['no request for 1000 ms']);
  });

  it('answers a client leaves unread past maxBufferedBytes close its connection (slow_reader)', async () => {
    // A full FC3 answer (125 registers) for each 12-byte request, every one served at once.
    const big = Buffer.concat([Buffer.from([3, 250]), Buffer.alloc(250)]);
    const { seen, client } = await listen(
      { idleTimeoutMs: 60_000, maxBufferedBytes: 4_096, maxInFlight: 1_000_000 },
      () => big,
    );
    const s = await client();
    s.pause();
    // 1 MB of reads would be 22 MB of answers: the kernel's buffers fill, then the cap is passed.
    s.write(Buffer.alloc(12 * 87_000).fill(mbap(1, [3, 0, 0, 0, 125])));
    await waitFor('the connection refused', () => seen.refused.length > 0, { timeoutMs: 20_000 });
    expect(seen.refused[0]).toMatchObject({ reason: 'slow_reader' });
    expect(seen.refused[0]!.detail).toMatch(/bytes of answers unread \(maxBufferedBytes 4096\)/);
  });

  it('at the bound a newcomer takes the slot of a connection idle past idleDisplaceAfterMs, never of one with a request on the line', async () => {
    const IDLE_MS = 50;
    let release: () => void = () => undefined;
    const onLine = new Promise<void>((r) => {
      release = r;
    });
    // Unit 2's line holds its request until released; unit 1 answers at once.
    const { seen, client } = await listen(
      { idleTimeoutMs: 60_000, maxConnections: 2, idleDisplaceAfterMs: IDLE_MS },
      async (unit, pdu) => {
        if (unit === 2) await onLine;
        return Buffer.from([pdu[0]!, 2, 0, unit]);
      },
    );
    const answers = new Map<Socket, number[][]>();
    const ask = async (unit: number) => {
      const s = await client();
      answers.set(s, []);
      s.on('data', (d: Buffer) => answers.get(s)!.push([...d.subarray(7)]));
      s.write(mbap(unit, [3, 0, 0, 0, 1]));
      return s;
    };
    // The older connection waits on the line; the younger was answered and then sent nothing.
    const waiting = await ask(2);
    const idle = await ask(1);
    await waitFor('the idle one answered', () => answers.get(idle)!.length === 1);
    const answeredAt = performance.now();
    await waitFor('idle past the minimum', () => performance.now() - answeredAt > IDLE_MS);
    // Before, the newcomer was closed at accept: both slots had spoken.
    const newcomer = await ask(1);
    await waitFor('the newcomer answered', () => answers.get(newcomer)!.length === 1);
    await waitFor('the idle connection closed', () => idle.readableEnded || idle.destroyed);
    expect(seen.refused).toEqual([
      {
        reason: 'idle_connection_evicted',
        detail: expect.stringMatching(
          /^nothing in flight and no byte received for \d+ ms \(idleDisplaceAfterMs 50\); its slot went to 127\.0\.0\.1:\d+, at maxConnectionsPerHost 2 from 127\.0\.0\.1$/,
        ),
      },
    ]);
    // The request on the line is still answered on its own connection.
    expect(waiting.destroyed || waiting.readableEnded).toBe(false);
    release();
    await waitFor('the held request answered', () => answers.get(waiting)!.length === 1);
    expect(answers.get(waiting)).toEqual([[3, 2, 0, 2]]);
  });
});
