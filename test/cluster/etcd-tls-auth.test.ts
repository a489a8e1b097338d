// etcd with TLS on client and peer links, client certificates required and authentication on
// (test/support/etcd-cluster.ts `secure`): a real controller process, configured with
// cluster.etcd { hosts, tls, auth } and its password in a file, leads every group as a user whose
// role reaches only the cluster prefix, reads its sensors from a TLS broker with a password
// (mosquitto), and writes neither password to its logs. A client
// without a certificate, or with a wrong password, is refused; the user cannot write outside the prefix.
// After a restart of every member (etcd forgets the users' sign-in tokens) it signs in and leads again.
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { createEtcdClient, etcdCall } from '../../src/cluster/etcd/etcd-client.ts';
import { loadSite } from '../../src/config/load-site.ts';
import { waitFor } from '../helpers.ts';
import { type Mosquitto, startMosquitto } from '../sensors/mosquitto.ts';
import { type EtcdCluster, freePort, startEtcdCluster } from '../support/etcd-cluster.ts';
import { tmpDir } from './harness.ts';

const PREFIX = '/coolctl/secure';
let etcd: EtcdCluster;
let root: { dir: string; cleanup: () => Promise<void> };
let broker: Mosquitto;
const MQTT_PASSWORD = `mqtt-${Math.random().toString(36).slice(2)}-${Date.now()}`;

beforeAll(async () => {
  root = await tmpDir('etcd-secure');
  etcd = await startEtcdCluster({ secure: { prefix: `${PREFIX}/` } });
  broker = await startMosquitto({ secure: { users: { coolctl: MQTT_PASSWORD } } });
}, 60_000);

afterAll(async () => {
  await etcd?.stop();
  await broker?.stop();
  await root?.cleanup();
});

async function readBytes(file: string): Promise<Buffer> {
  const { readFile } = await import('node:fs/promises');
  return readFile(file);
}

/** A client as the daemon builds it, with what the test chooses to give it. */
async function client(opts: { cert: boolean; password: string | undefined }) {
  const s = etcd.security!;
  return createEtcdClient({
    hosts: etcd.clientUrls,
    callTimeoutMs: 2_000,
    tls: {
      ca: await readBytes(s.caFile),
      ...(opts.cert ? { cert: await readBytes(s.certFile), key: await readBytes(s.keyFile) } : {}),
    },
    ...(opts.password === undefined ? {} : { auth: { username: s.username, password: opts.password } }),
  });
}

interface Controller {
  lines: string[];
  /** Groups n1 logged a transition to `to` for, from log line `fromLine` on. */
  transitioned: (to: string, fromLine?: number) => Set<string | undefined>;
  stop: () => Promise<void>;
}

/** A real controller process, as the daemon runs, with TLS, a client certificate and a prefix user. */
async function startController(): Promise<Controller> {
  const s = etcd.security!;
  await writeFile(join(root.dir, 'mqtt-password'), `${MQTT_PASSWORD}\n`, { mode: 0o600 });
  const port = await freePort();
  const config = join(root.dir, 'controller.yaml');
  await writeFile(
    config,
    stringify({
      site: resolve('config/demo-site.yaml'),
      cluster: {
        etcd: {
          hosts: etcd.clientUrls,
          tls: { caFile: s.caFile, certFile: s.certFile, keyFile: s.keyFile },
          auth: { username: s.username, passwordFile: s.passwordFile },
        },
        prefix: PREFIX,
        leaseTtlS: 2,
        keepaliveIntervalMs: 300,
        safetyMarginMs: 400,
        etcdCallTimeoutMs: 1000,
      },
      nodes: { n1: { api: `127.0.0.1:${port}` } },
      sensors: {
        mqtt: {
          url: broker.url,
          username: 'coolctl',
          passwordFile: 'mqtt-password',
          caFile: broker.caFile,
        },
      },
      dataDir: join(root.dir, 'var'),
    }),
  );
  const lines: string[] = [];
  const proc: ChildProcess = spawn(
    process.execPath,
    ['src/cli.ts', 'run', '--config', config, '--node', 'n1', '--log-level', 'debug'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  proc.stdout?.on('data', (b: Buffer) => lines.push(b.toString()));
  proc.stderr?.on('data', (b: Buffer) => lines.push(b.toString()));
  const transitioned = (to: string, fromLine = 0) =>
    new Set(
      lines
        .slice(fromLine)
        .join('')
        .split('\n')
        .filter((l) => l.includes('"leadership transition"') && l.includes(`"to":"${to}"`))
        .map((l) => (JSON.parse(l) as { group?: string }).group),
    );
  const stop = async () => {
    proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  };
  return { lines, transitioned, stop };
}

const logTail = (c: Controller) => `\n--- controller log (tail) ---\n${c.lines.join('').slice(-3000)}`;

describe('etcd over TLS with a prefix user', () => {
  it('a controller leads every group over TLS as the prefix user, ingests over mqtts://; its logs show neither password', async () => {
    const s = etcd.security!;
    const groups = (await loadSite(resolve('config/demo-site.yaml'))).controlGroups.map((g) => g.id);
    const c = await startController();
    try {
      await waitFor(
        'an election key of n1 for every group',
        async () => {
          const keys = await etcd.ctl(['get', '--prefix', `${PREFIX}/election/`, '--keys-only'], {
            asRoot: true,
          });
          return groups.every((g) => keys.includes(`${PREFIX}/election/${g}/`));
        },
        { timeoutMs: 30_000, intervalMs: 200 },
      );
      await waitFor('n1 says it leads every group', () => {
        const leading = c.transitioned('leader');
        return groups.every((g) => leading.has(g));
      });
      await waitFor('sensor MQTT connected over TLS as coolctl', () =>
        c.lines.join('').includes('"msg":"sensor MQTT connected"'),
      );
    } catch (err) {
      throw new Error(`${String(err)}${logTail(c)}`);
    } finally {
      await c.stop();
    }
    const log = c.lines.join('');
    expect(log).toContain('"node":"n1"');
    expect(log).not.toContain(s.password);
    expect(log).not.toContain(s.rootPassword);
    expect(log).not.toContain(MQTT_PASSWORD);
  }, 60_000);

  it('after a restart of every etcd member the controller signs in again and leads every group again', async () => {
    const groups = (await loadSite(resolve('config/demo-site.yaml'))).controlGroups.map((g) => g.id);
    const c = await startController();
    try {
      await waitFor('n1 leads every group', () => groups.every((g) => c.transitioned('leader').has(g)), {
        timeoutMs: 30_000,
      });
      const members = etcd.clientUrls.map((_, i) => i);
      await Promise.all(members.map((m) => etcd.kill(m, 'SIGKILL')));
      // Down past the lease guard's deadline, so n1 must win its groups back through etcd.
      const mark = c.lines.length;
      await waitFor(
        'n1 stops leading every group',
        () => groups.every((g) => c.transitioned('fenced', mark).has(g)),
        {
          timeoutMs: 10_000,
        },
      );
      const back = c.lines.length;
      await Promise.all(members.map((m) => etcd.restart(m)));
      await waitFor(
        'n1 leads every group again',
        () => groups.every((g) => c.transitioned('leader', back).has(g)),
        { timeoutMs: 20_000 },
      );
    } catch (err) {
      throw new Error(`${String(err)}${logTail(c)}`);
    } finally {
      await c.stop();
    }
  }, 90_000);

  it('refuses a client without a certificate, and a wrong password', async () => {
    const s = etcd.security!;
    const noCert = await client({ cert: false, password: s.password });
    const wrong = await client({ cert: true, password: `${s.password}x` });
    const anonymous = await client({ cert: true, password: undefined });
    try {
      await expect(
        etcdCall('get', 2_000, undefined, (o) => noCert.get(`${PREFIX}/members/x`).options(o).string()),
      ).rejects.toThrow();
      const refused = etcdCall('get', 2_000, undefined, (o) =>
        wrong.get(`${PREFIX}/members/x`).options(o).string(),
      );
      await expect(refused).rejects.toThrow(/authentication failed/);
      await expect(refused).rejects.not.toThrow(s.password);
      // A certificate proves the machine, not the user: its CN is no etcd user.
      await expect(
        etcdCall('get', 2_000, undefined, (o) => anonymous.get(`${PREFIX}/members/x`).options(o).string()),
      ).rejects.toThrow(/user name is empty|permission denied|invalid auth token/);
    } finally {
      noCert.close();
      wrong.close();
      anonymous.close();
    }
  });

  it('the prefix user reads and writes its prefix and nothing else', async () => {
    const s = etcd.security!;
    const c = await client({ cert: true, password: s.password });
    try {
      await etcdCall('put', 2_000, undefined, (o) => c.put(`${PREFIX}/probe`).value('1').options(o).exec());
      expect(
        await etcdCall('get', 2_000, undefined, (o) => c.get(`${PREFIX}/probe`).options(o).string()),
      ).toBe('1');
      await expect(
        etcdCall('put', 2_000, undefined, (o) => c.put('/elsewhere/probe').value('1').options(o).exec()),
      ).rejects.toThrow(/permission denied/);
      await expect(
        etcdCall('get', 2_000, undefined, (o) => c.get('/coolctl/other-site/x').options(o).string()),
      ).rejects.toThrow(/permission denied/);
    } finally {
      c.close();
    }
  });
});
