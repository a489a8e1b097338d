// The simulator's embedded MQTT broker (aedes over plain TCP): where the simulated gateways publish
// node reports and where controllers subscribe. Invariant: `close()` always finishes — it destroys
// every open connection instead of waiting for clients to leave.
import net from 'node:net';
import { Aedes } from 'aedes';
import type { Logger } from 'pino';
import { CoolctlError, ErrorCodes } from '../../src/errors.ts';

export interface BrokerOptions {
  host: string;
  /** 0 lets the OS pick; the handle's `url` and `port` tell which one it picked. */
  port: number;
  logger?: Logger;
}

export interface BrokerHandle {
  /** `mqtt://HOST:PORT` with the port actually bound. */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

const CLOSE_DEADLINE_MS = 3000;

export async function startBroker(opts: BrokerOptions): Promise<BrokerHandle> {
  const log = opts.logger;
  const aedes = await Aedes.createBroker();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    // A client that vanishes mid-frame must not take the broker down.
    socket.on('error', () => {});
    aedes.handle(socket);
  });
  aedes.on('clientError', (client, err) =>
    log?.debug({ client: client.id, err: err.message }, 'mqtt client error'),
  );
  aedes.on('connectionError', (_client, err) => log?.debug({ err: err.message }, 'mqtt connection error'));

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port, opts.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    throw new CoolctlError(
      ErrorCodes.STARTUP,
      `MQTT broker cannot listen on ${opts.host}:${opts.port}: ${(err as Error).message} (pick another port or stop what holds it)`,
      { cause: err },
    );
  }
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  const url = `mqtt://${host}:${port}`;
  log?.info({ url }, 'MQTT broker listening');

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    close() {
      closing ??= (async () => {
        const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const s of sockets) s.destroy();
        const aedesClosed = new Promise<void>((resolve) => aedes.close(() => resolve()));
        let timer: NodeJS.Timeout | undefined;
        const deadline = new Promise<void>((resolve) => {
          timer = setTimeout(() => {
            log?.warn('MQTT broker did not close in time; abandoning it');
            resolve();
          }, CLOSE_DEADLINE_MS);
        });
        await Promise.race([Promise.all([serverClosed, aedesClosed]), deadline]);
        clearTimeout(timer);
      })();
      return closing;
    },
  };
}
