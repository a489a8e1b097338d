// Chaos on the secure hall (Hall `secure: true`): etcd on TLS with client certificates and a user
// whose role reaches only the hall's prefix, the simulator's broker on TLS with a required user,
// the OPC-UA units on SignAndEncrypt with the simulator's certificate trusted explicitly. First it
// shows from outside that the links really are secured (a plain or anonymous client is refused,
// no controller runs an unsigned OPC-UA link, the OPC-UA units take the controllers' writes), then
// runs representative trials under the same invariants and no-vacuous-pass rule as the plain hall.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect, type IClientOptions } from 'mqtt';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { waitFor } from '../helpers.ts';
import { etcdctl } from '../support/etcd-cluster.ts';
import {
  trialBrokerRestart,
  trialGatewayStatusRetained,
  trialKill9,
  trialPartition,
  trialSlowUnitSigstop,
} from '../support/hall.ts';
import { useChaosHall } from './chaos-hall.ts';

// Sensor nodes report every 2 s (the site's 10 s): the retained-status trial waits one report
// interval for every node to report again, the proof of life it is about; nothing here waits on a
// stale window.
const chaos = useChaosHall({ name: 'chaos-secure', secure: true, opcuaShare: 1 / 3, reportIntervalS: 2 });
const hall = chaos.hall;

/** The controller's log lines (JSON) with this message, since the mark of its last start. */
async function logLines(dir: string, node: string, msg: string): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  for (const line of (await readFile(join(dir, `${node}.log`), 'utf8')).split('\n')) {
    if (!line.includes(msg)) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a line cut by kill -9
    }
  }
  return out;
}

/** The simulator's broker counters (GET /sim/state). */
async function brokerState(
  simUrl: string,
): Promise<{ tls: boolean; authRefused: number; tlsRefused: number }> {
  const res = await fetch(`${simUrl}/sim/state`, { signal: AbortSignal.timeout(5000) });
  return ((await res.json()) as { mqttBroker: { tls: boolean; authRefused: number; tlsRefused: number } })
    .mqttBroker;
}

/** Whether a client gets an MQTT session: 'connected', or what refused it (bounded by 5 s). */
function mqttSession(url: string, opts: IClientOptions): Promise<string> {
  return new Promise((resolve) => {
    const client = connect(url, { connectTimeout: 4000, reconnectPeriod: 0, ...opts });
    const done = (outcome: string) => {
      clearTimeout(timer);
      client.end(true);
      resolve(outcome);
    };
    const timer = setTimeout(() => done('no CONNACK within 5 s'), 5000);
    client.once('connect', () => done('connected'));
    client.once('error', (err) => done(`error: ${err.message}`));
    client.once('close', () => done('closed'));
  });
}

describe('chaos: the secure hall', () => {
  it('etcd refuses a plain client and a certificate without a user; the hall’s admin reads the prefix', async () => {
    const h = hall();
    await expect(
      etcdctl(h.etcd.endpoints, ['get', '/coolctl-chaos/', '--prefix', '--keys-only']),
    ).rejects.toThrow();
    // The node certificate proves the machine, not who: without the user it reads nothing.
    await expect(h.etcd.ctl(['get', '/coolctl-chaos/', '--prefix', '--keys-only'])).rejects.toThrow(
      /permission denied|user name is empty|authentication/i,
    );
    const keys = await h.etcdctl(['get', '/coolctl-chaos/election/', '--prefix', '--keys-only']);
    for (const g of Object.keys(h.groups)) expect(keys).toContain(`/coolctl-chaos/election/${g}/`);
    // What the controllers were given: TLS to every member (through the proxies) and the prefix user.
    const cfg = parse(await readFile(join(h.dir, 'c1.yaml'), 'utf8')) as {
      cluster: { etcd: { hosts: string[]; auth: { username: string } } };
      sensors: { mqtt: { url: string; username: string } };
    };
    expect(cfg.cluster.etcd.hosts.every((u) => u.startsWith('https://'))).toBe(true);
    expect(cfg.cluster.etcd.auth.username).toBe(h.security!.etcd.username);
    expect(cfg.sensors.mqtt.url).toMatch(/^mqtts:\/\//);
  }, 30_000);

  it('the broker refuses anonymous, wrong-password and plain clients; the hall’s user gets a session', async () => {
    const h = hall();
    const m = h.security!.mqtt;
    const ca = [await readFile(m.caFile)];
    const before = await brokerState(h.simUrl);
    expect(before.tls).toBe(true);
    // Every controller got its session over TLS as the hall's user.
    for (const n of h.nodes) {
      const connected = await logLines(h.dir, n, 'sensor MQTT connected');
      expect(connected.length, `${n} connected to the broker`).toBeGreaterThan(0);
      expect(connected.every((l) => String(l.url).startsWith('mqtts://'))).toBe(true);
      expect(await logLines(h.dir, n, 'refused our credentials')).toEqual([]);
    }
    expect(await mqttSession(h.mqttUrl, { ca })).toMatch(/bad username or password|not authorized/i);
    expect(await mqttSession(h.mqttUrl, { ca, username: m.username, password: 'wrong' })).toMatch(
      /bad username or password|not authorized/i,
    );
    expect(
      await mqttSession(h.mqttUrl.replace(/^mqtts:/, 'mqtt:'), {
        username: m.username,
        password: m.password,
      }),
    ).not.toBe('connected');
    expect(await mqttSession(h.mqttUrl, h.mqttOptions())).toBe('connected');
    // And the sensor reports get through: zone-1, the group whose racks have nodes, reads ok.
    const leaders = await h.waitForLeaders();
    await waitFor(
      'zone-1 to read its sensors over mqtts://',
      async () => {
        const g = (await h.operator(leaders.get('zone-1')!.node, 'GET', '/api/v1/groups/zone-1')) as {
          sensors?: { verdict?: string } | null;
        };
        return g.sensors?.verdict === 'ok';
      },
      { timeoutMs: 15_000, intervalMs: 250 },
    );
    // The broker counted both refused logins and the plain client's failed handshake.
    const after = await waitFor(
      'the broker to count the plain client',
      async () => {
        const b = await brokerState(h.simUrl);
        return b.tlsRefused > before.tlsRefused ? b : null;
      },
      { timeoutMs: 5000, intervalMs: 100 },
    );
    expect(after.authRefused - before.authRefused).toBe(2);
  }, 30_000);

  it('every OPC-UA unit runs SignAndEncrypt with the simulator trusted by hand and takes the leaders’ writes', async () => {
    const h = hall();
    const opcua = [...h.protocols].filter(([, p]) => p === 'opcua').map(([a]) => a);
    expect(opcua.length).toBeGreaterThan(0);
    const site = parse(await readFile(join(h.dir, 'site.yaml'), 'utf8')) as {
      airHandlers: { id: string; protocol: string; endpoint: { securityMode?: string } }[];
    };
    for (const a of site.airHandlers.filter((x) => x.protocol === 'opcua'))
      expect(a.endpoint.securityMode).toBe('SignAndEncrypt');
    for (const n of h.nodes) {
      const log = await readFile(join(h.dir, `${n}.log`), 'utf8');
      expect(log).not.toContain('without message security');
      const pki = join(h.dir, 'var', n, 'opcua-pki');
      expect(await readdir(join(pki, 'trusted', 'certs'))).toContain('coolctl-sim.pem');
      // node-opcua files a server certificate it does not trust under rejected/: none may be there.
      expect(await readdir(join(pki, 'rejected')).catch(() => [])).toEqual([]);
    }
    // The simulator's journal: each OPC-UA unit takes a leader's fenced write within a watchdog period.
    const seq = await h.lastSeq();
    await waitFor(
      'an accepted epoch write on every OPC-UA unit',
      async () => {
        const entries = (await h.journal(seq)).entries;
        return opcua.every((a) => entries.some((e) => e.ahu === a && e.accepted && e.epoch > 0));
      },
      { timeoutMs: h.handOnMs, intervalMs: 200 },
    );
  }, 30_000);

  it('kill -9 of a leader', async () => {
    const r = await chaos.trial('kill9-leader', trialKill9);
    expect(r.failoverMs).not.toBeNull();
  }, 60_000);

  it('a leader cut off from etcd (TLS through the proxies) stops before the new leader writes', async () => {
    const r = await chaos.trial('partition-leader', trialPartition);
    expect(r.gapMs).not.toBeNull();
    expect(r.gapMs!).toBeGreaterThan(0);
  }, 60_000);

  it('the TLS broker restarted: every controller logs in again over TLS', async () => {
    const h = hall();
    const before = await brokerState(h.simUrl);
    const reconnects = async (n: string) =>
      (await logLines(h.dir, n, 'sensor MQTT connected')).filter((l) => l.reconnect === true).length;
    const counts = new Map(await Promise.all(h.nodes.map(async (n) => [n, await reconnects(n)] as const)));
    await chaos.trial('broker-restart', trialBrokerRestart);
    await waitFor(
      'every controller reconnected to the restarted broker',
      async () => {
        for (const n of h.live()) if ((await reconnects(n)) <= counts.get(n)!) return false;
        return true;
      },
      { timeoutMs: 15_000, intervalMs: 200 },
    );
    const after = await brokerState(h.simUrl);
    expect(after.tls).toBe(true);
    expect(after.authRefused).toBe(before.authRefused);
  }, 60_000);

  it('a slow OPC-UA unit and its leader SIGSTOPped past the TTL', async () => {
    const r = await chaos.trial('slow-unit-sigstop', (h) => trialSlowUnitSigstop(h, { protocol: 'opcua' }));
    expect(r.newEpoch).toBeGreaterThan(r.oldEpoch!);
  }, 60_000);

  it('a retained offline gateway status, published by an authenticated client', async () => {
    await chaos.trial('gateway-status-retained', trialGatewayStatusRetained);
  }, 60_000);
});
