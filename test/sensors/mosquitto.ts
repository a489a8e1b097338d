// Debian's mosquitto as a separate process on a loopback port: a real broker outside the test
// process (MQTT 3.1.1 and 5), so that what the test measures of its own memory is the client's.
// deploy/dev/prepare.sh installs it for the tests. Opt-in `secure`: a TLS listener (a CA made with
// openssl) and a password file (mosquitto_passwd), no anonymous clients.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll } from 'vitest';
import { makeCa, makeLeaf } from '../../scripts/lib/throwaway-pki.ts';
import { waitFor } from '../helpers.ts';

export interface Mosquitto {
  url: string;
  port: number;
  /** With `secure`: the CA that signed the broker's certificate. */
  caFile?: string;
  /** The broker's log so far (stderr), for failure messages and secret checks. */
  log(): string;
  stop(): Promise<void>;
}

const MOSQUITTO = '/usr/sbin/mosquitto';

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export async function startMosquitto(
  opts: { secure?: { users: Record<string, string> } } = {},
): Promise<Mosquitto> {
  if (!existsSync(MOSQUITTO)) throw new Error(`${MOSQUITTO} is missing: run deploy/dev/prepare.sh test`);
  const dir = await mkdtemp(join(tmpdir(), 'coolctl-mosquitto-'));
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  let caFile: string | undefined;
  let listener = `listener ${port} 127.0.0.1\nallow_anonymous true\n`;
  if (opts.secure) {
    const ca = await makeCa(dir, 'mqtt-ca');
    const server = await makeLeaf(ca, 'mqtt-broker', { usage: ['serverAuth'] });
    const passwd = join(dir, 'passwd');
    await writeFile(passwd, '', { mode: 0o600 });
    for (const [user, password] of Object.entries(opts.secure.users))
      execFileSync('/usr/bin/mosquitto_passwd', ['-b', passwd, user, password], { timeout: 10_000 });
    caFile = ca.caFile;
    // `user root`: the broker would drop to `mosquitto`, who cannot read the test's 0600 files.
    listener =
      `user root\nlistener ${port} 127.0.0.1\nallow_anonymous false\npassword_file ${passwd}\n` +
      `cafile ${ca.caFile}\ncertfile ${server.certFile}\nkeyfile ${server.keyFile}\nlog_type all\n`;
  }
  await writeFile(conf, `${listener}persistence false\nlog_dest stderr\n`);
  const child: ChildProcess = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => {
    stderr = (stderr + b.toString()).slice(-64_000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await waitFor(`mosquitto listening on ${port}`, async () => {
      if (child.exitCode !== null) throw new Error(`mosquitto exited: ${stderr}`);
      return accepts(port);
    });
  } catch (err) {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    url: `${opts.secure ? 'mqtts' : 'mqtt'}://127.0.0.1:${port}`,
    port,
    ...(caFile ? { caFile } : {}),
    log: () => stderr,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        exited,
        new Promise<void>((resolve) => {
          timer = setTimeout(() => {
            child.kill('SIGKILL');
            resolve();
          }, 3000);
        }),
      ]);
      clearTimeout(timer);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A mosquitto for the test file and a client connected to it that publishes as a gateway would,
 * started before its tests and stopped after them. Read them inside tests (`broker()`, `publisher()`).
 */
export function mosquittoWithPublisher(): { broker: () => Mosquitto; publisher: () => mqtt.MqttClient } {
  let broker: Mosquitto | undefined;
  let publisher: mqtt.MqttClient | undefined;
  beforeAll(async () => {
    broker = await startMosquitto();
    publisher = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
  }, 30_000);
  afterAll(async () => {
    await publisher?.endAsync(true);
    await broker?.stop();
  });
  const need = <T>(x: T | undefined, what: string): T => {
    if (x === undefined) throw new Error(`${what} not started (call inside a test)`);
    return x;
  };
  return { broker: () => need(broker, 'mosquitto'), publisher: () => need(publisher, 'the publisher') };
}
