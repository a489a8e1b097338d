// The config check that `coolctl run`, a reload and `coolctl config validate` share: every file a
// config names read and judged as the daemon reads it (missing, open to other users, broken, too
// big, not UTF-8), values no schema sees (NaN, infinities, credentials in any URL, empty ranges),
// a node name from the command line looked up as an own key, and every problem of both files in
// one round, the first 100 listed and the rest counted. Secrets never appear in a problem.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { makeCa, makeLeaf } from '../../scripts/lib/throwaway-pki.ts';
import { AuthStore } from '../../src/api/auth/auth-store.ts';
import { formatValidation, validateConfigFile } from '../../src/cli/config-validate.ts';
import { secretLine } from '../../src/config/config-files.ts';
import { loadControllerConfig } from '../../src/config/controller-config.ts';
import { loadSite } from '../../src/config/load-site.ts';
import { Controller, etcdStartError } from '../../src/daemon/controller.ts';
import { ConfigError, CoolctlError, ErrorCodes } from '../../src/errors.ts';
import { quietLogger } from '../helpers.ts';
import { MemoryKv } from '../support/memory-kv.ts';

const DEMO = resolve('config/demo-site.yaml');
const FIXTURE = resolve('test/fixtures/cluster/controller.yaml');
const PASSWORD = 'Hall-A-Adm1n-Secret';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'coolctl-config-checks-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

let n = 0;
/** A fresh folder for one case. */
async function folder(): Promise<string> {
  const dir = join(root, `case-${++n}`);
  await mkdir(dir, { recursive: true });
  return dir;
}

type Doc = Record<string, unknown>;
const demo = async (): Promise<Doc & { airHandlers: Doc[]; racks: Doc[]; gateways: Doc[] }> =>
  parse(await readFile(DEMO, 'utf8'));

/** Writes a site (the demo site changed by `edit`) and a controller config naming it; returns the config. */
async function configWith(
  dir: string,
  o: { site?: (s: Awaited<ReturnType<typeof demo>>) => void; controller?: Doc; siteName?: string } = {},
): Promise<string> {
  const site = await demo();
  o.site?.(site);
  const siteName = o.siteName ?? 'site.yaml';
  await writeFile(join(dir, siteName), stringify(site));
  const file = join(dir, 'controller.yaml');
  await writeFile(
    file,
    stringify({
      site: siteName,
      cluster: { etcd: ['http://127.0.0.1:2379'] },
      nodes: { a: { api: '127.0.0.1:8101' }, b: { api: '127.0.0.1:8102' } },
      ...o.controller,
    }),
  );
  return file;
}

/** The ConfigError loading `file` for node a throws. */
async function refusal(file: string, node = 'a'): Promise<ConfigError> {
  const err = await loadControllerConfig(file, node).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'the config should be refused').toBeInstanceOf(ConfigError);
  return err as ConfigError;
}

const paths = (err: ConfigError) => err.problems.map((p) => p.path);
const opcua = (s: { airHandlers: Doc[] }) => s.airHandlers.find((a) => a.protocol === 'opcua')!;
const opcuaIndex = (s: { airHandlers: Doc[] }) => s.airHandlers.findIndex((a) => a.protocol === 'opcua');

describe('secret files: one rule for every reader, and never their contents', () => {
  it('a YAML typo in the bootstrap admin file is told by its position only, and run exits 2 before any etcd', async () => {
    const dir = await folder();
    await writeFile(join(dir, 'admin.yaml'), `name: admin\npassword: "${PASSWORD}\n`, { mode: 0o600 });
    const file = await configWith(dir, { controller: { api: { bootstrapAdminFile: 'admin.yaml' } } });
    const r = await validateConfigFile(file, { node: 'a' });
    expect(r.valid).toBe(false);
    expect(r.problems).toEqual([
      expect.objectContaining({
        path: '/api/bootstrapAdminFile',
        message: expect.stringMatching(/admin\.yaml is not valid YAML \(line \d+, column \d+\)$/),
      }),
    ]);
    expect(JSON.stringify(r)).not.toContain(PASSWORD);
    // The daemon refuses it at load, as validate does: exit 2 (systemd does not restart), no password.
    const run = spawnSync(process.execPath, ['src/cli.ts', 'run', '--config', file, '--node', 'a'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(run.status, run.stderr).toBe(2);
    expect(run.stderr).toMatch(/\/api\/bootstrapAdminFile: .*not valid YAML \(line \d+, column \d+\)/);
    expect(run.stderr + run.stdout).not.toContain(PASSWORD);
    // The API's own reader of the file says no more.
    const store = new AuthStore({
      kv: new MemoryKv(),
      prefix: '/c',
      logger: quietLogger,
      registry: new Registry(),
    });
    await store.start();
    const err = await store.bootstrap(join(dir, 'admin.yaml')).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/not YAML \(line \d+, column \d+\)$/);
    expect((err as Error).message).not.toContain(PASSWORD);
    await store.stop();
  });

  it('refuses a secret file other users can reach, saying the chmod to run; accepts 600', async () => {
    const dir = await folder();
    await writeFile(join(dir, 'etcd-password'), 'etcd pw\n', { mode: 0o600 });
    await chmod(join(dir, 'etcd-password'), 0o644);
    await writeFile(join(dir, 'cluster.secret'), `${'a'.repeat(32)}\n`, { mode: 0o600 });
    await chmod(join(dir, 'cluster.secret'), 0o666);
    await writeFile(join(dir, 'admin.yaml'), `name: admin\npassword: "${PASSWORD}"\n`, { mode: 0o600 });
    await chmod(join(dir, 'admin.yaml'), 0o604);
    const file = await configWith(dir, {
      controller: {
        cluster: {
          etcd: { hosts: ['http://127.0.0.1:2379'], auth: { username: 'u', passwordFile: 'etcd-password' } },
          secretFile: 'cluster.secret',
        },
        nodes: { a: { api: '127.0.0.1:8101', peer: '127.0.0.1:8201' } },
        api: { bootstrapAdminFile: 'admin.yaml' },
      },
    });
    const err = await refusal(file);
    const byPath = new Map(err.problems.map((p) => [p.path, p]));
    expect(byPath.get('/cluster/etcd/auth/passwordFile')?.message).toMatch(
      /open to every user .*\(mode 0644\)/,
    );
    expect(byPath.get('/cluster/etcd/auth/passwordFile')?.allowed).toMatch(
      new RegExp(`^chmod 600 ${join(dir, 'etcd-password')}`),
    );
    expect(byPath.get('/cluster/secretFile')?.message).toMatch(/\(mode 0666\)/);
    expect(byPath.get('/api/bootstrapAdminFile')?.message).toMatch(/\(mode 0604\)/);
    expect(err.message).not.toContain(PASSWORD);
    for (const f of ['etcd-password', 'cluster.secret', 'admin.yaml']) await chmod(join(dir, f), 0o600);
    await expect(loadControllerConfig(file, 'a')).resolves.toMatchObject({
      etcdSecurity: { auth: { username: 'u', password: 'etcd pw' } },
    });
    // The layout deploy/install.sh makes: root:coolctl 0640 (this suite runs as root).
    if (process.getuid?.() === 0) {
      await chmod(join(dir, 'cluster.secret'), 0o640);
      await expect(loadControllerConfig(file, 'a')).resolves.toBeDefined();
    }
  });

  it('one trim rule for every secret: surrounding blank lines and spaces go, a second line is refused', async () => {
    const dir = await folder();
    await writeFile(join(dir, 'mqtt-password'), 'mq\n\n', { mode: 0o600 });
    await writeFile(join(dir, 'etcd-password'), '  pw \r\n', { mode: 0o600 });
    const file = await configWith(dir, {
      controller: {
        cluster: {
          etcd: { hosts: ['http://127.0.0.1:2379'], auth: { username: 'u', passwordFile: 'etcd-password' } },
        },
        sensors: { mqtt: { url: 'mqtt://127.0.0.1:1883', username: 'm', passwordFile: 'mqtt-password' } },
      },
    });
    const cfg = await loadControllerConfig(file, 'a');
    expect(cfg.mqtt?.password).toBe('mq');
    expect(cfg.etcdSecurity.auth?.password).toBe('pw');
    await writeFile(join(dir, 'mqtt-password'), 'first\nsecond\n', { mode: 0o600 });
    await writeFile(join(dir, 'etcd-password'), '\n\n', { mode: 0o600 });
    const err = await refusal(file);
    expect(err.problems.map((p) => [p.path, p.message])).toEqual([
      ['/cluster/etcd/auth/passwordFile', `${join(dir, 'etcd-password')} is empty`],
      ['/sensors/mqtt/passwordFile', `${join(dir, 'mqtt-password')} holds more than one line`],
    ]);
    expect(err.message).not.toMatch(/first|second/);
    expect(secretLine(Buffer.from('  hex \n'), 'f')).toEqual({ ok: true, value: 'hex' });
  });
});

describe('every file the config names, checked as run reads it', () => {
  it('api.tls: missing files and a key that is not the certificate’s are refused at their paths', async () => {
    const dir = await folder();
    const ca = await makeCa(dir);
    const one = await makeLeaf(ca, 'one', { usage: ['serverAuth'] });
    const two = await makeLeaf(ca, 'two', { usage: ['serverAuth'] });
    const file = await configWith(dir, {
      controller: { api: { tls: { certFile: 'api.crt', keyFile: 'api.key' } } },
    });
    expect(paths(await refusal(file))).toEqual(['/api/tls/certFile', '/api/tls/keyFile']);
    await copyFile(one.certFile, join(dir, 'api.crt'));
    await copyFile(two.keyFile, join(dir, 'api.key'));
    const err = await refusal(file);
    expect(err.problems).toEqual([
      expect.objectContaining({
        path: '/api/tls/keyFile',
        message: `${join(dir, 'api.key')} is not the private key of ${join(dir, 'api.crt')} (or not a PEM key)`,
      }),
    ]);
    expect(err.message).not.toMatch(/BEGIN|PRIVATE KEY/);
    await copyFile(one.keyFile, join(dir, 'api.key'));
    await expect(loadControllerConfig(file, 'a')).resolves.toBeDefined();
  });

  it('OPC-UA: a username needs a password file, which must exist, read relative to the site file', async () => {
    const dir = await folder();
    await mkdir(join(dir, 'site'));
    const file = await configWith(dir, {
      siteName: 'site/site.yaml',
      site: (s) => {
        Object.assign(opcua(s).endpoint as Doc, { username: 'ahu', passwordFile: 'secrets/opcua-password' });
      },
    });
    const i = opcuaIndex(await demo());
    const missing = await refusal(file);
    expect(missing.problems).toEqual([
      expect.objectContaining({
        file: join(dir, 'site/site.yaml'),
        path: `/airHandlers/${i}/endpoint/passwordFile`,
        message: `cannot read ${join(dir, 'site/secrets/opcua-password')} (ENOENT)`,
        line: expect.any(Number),
      }),
    ]);
    // The same file checked on its own: `config validate` of the site refuses it too.
    const siteAlone = await validateConfigFile(join(dir, 'site/site.yaml'));
    expect(siteAlone.problems.map((p) => p.path)).toEqual([`/airHandlers/${i}/endpoint/passwordFile`]);
    await mkdir(join(dir, 'site/secrets'));
    await writeFile(join(dir, 'site/secrets/opcua-password'), 'opcua pw\n', { mode: 0o600 });
    const cfg = await loadControllerConfig(file, 'a');
    const unit = cfg.site.airHandlers[i]!;
    expect(unit.protocol === 'opcua' && unit.endpoint.passwordFile).toBe(
      join(dir, 'site/secrets/opcua-password'),
    );
    // A username with no password file: refused, not sent as an anonymous-looking login.
    const noFile = await configWith(await folder(), {
      site: (s) => {
        Object.assign(opcua(s).endpoint as Doc, { username: 'ahu' });
      },
    });
    expect((await refusal(noFile)).problems).toEqual([
      expect.objectContaining({
        path: `/airHandlers/${i}/endpoint/passwordFile`,
        message: expect.stringMatching(/names a username but no passwordFile/),
      }),
    ]);
  });

  it('alarms.notifications.webhook.headerFile: missing or open to others is refused at load, not sent without it', async () => {
    const dir = await folder();
    const file = await configWith(dir, {
      site: (s) => {
        s.alarms = {
          notifications: { webhook: { url: 'http://127.0.0.1:9093/api/v2/alerts', headerFile: 'am.header' } },
        };
      },
    });
    expect((await refusal(file)).problems).toEqual([
      expect.objectContaining({
        path: '/alarms/notifications/webhook/headerFile',
        message: `cannot read ${join(dir, 'am.header')} (ENOENT)`,
      }),
    ]);
    await writeFile(join(dir, 'am.header'), 'Bearer from-the-file\n', { mode: 0o644 });
    const open = await refusal(file);
    expect(open.problems[0]?.message).toMatch(/open to every user/);
    expect(open.message).not.toContain('from-the-file');
    await chmod(join(dir, 'am.header'), 0o600);
    await expect(loadControllerConfig(file, 'a')).resolves.toBeDefined();
  });

  it('alarms.notifications.webhook.caFile: missing, not a certificate, or for a plain http:// receiver is refused at load', async () => {
    const dir = await folder();
    const withUrl = (url: string) =>
      configWith(dir, {
        site: (s) => {
          s.alarms = { notifications: { webhook: { url, caFile: 'am-ca.pem' } } };
        },
      });
    const file = await withUrl('https://127.0.0.1:9093/api/v2/alerts');
    const at = '/alarms/notifications/webhook/caFile';
    expect((await refusal(file)).problems).toEqual([
      expect.objectContaining({ path: at, message: `cannot read ${join(dir, 'am-ca.pem')} (ENOENT)` }),
    ]);
    await writeFile(join(dir, 'am-ca.pem'), 'not a certificate\n');
    expect((await refusal(file)).problems).toEqual([
      expect.objectContaining({ path: at, message: `${join(dir, 'am-ca.pem')} holds no PEM certificate` }),
    ]);
    const ca = await makeCa(dir, 'am-ca-made');
    await copyFile(ca.caFile, join(dir, 'am-ca.pem'));
    await expect(loadControllerConfig(file, 'a')).resolves.toBeDefined();
    expect((await refusal(await withUrl('http://127.0.0.1:9093/api/v2/alerts'))).problems).toEqual([
      expect.objectContaining({
        path: at,
        message: expect.stringMatching(/not https:\/\/: it would never be used/),
      }),
    ]);
  });

  it('a bootstrap admin file that is gone is a warning (the cluster may have its admin), not a refusal', async () => {
    const dir = await folder();
    const file = await configWith(dir, { controller: { api: { bootstrapAdminFile: 'admin.yaml' } } });
    const r = await validateConfigFile(file, { node: 'a' });
    expect(r.valid).toBe(true);
    expect(r.warnings.map((w) => w.path)).toContain('/api/bootstrapAdminFile');
    // A short password is refused now, as the API would refuse it at first start.
    await writeFile(join(dir, 'admin.yaml'), 'name: admin\npassword: short\n', { mode: 0o600 });
    expect((await refusal(file)).problems[0]?.message).toMatch(/first admin's password would be refused/);
  });
});

describe('values no schema sees', () => {
  it('credentials in any URL — OPC-UA endpoint, webhook, etcd, broker — are refused at their path, never repeated', async () => {
    const dir = await folder();
    const file = await configWith(dir, {
      site: (s) => {
        (opcua(s).endpoint as Doc).url = `opc.tcp://ahu:${PASSWORD}@127.0.0.1:48400/coolctl-sim`;
        s.alarms = { notifications: { webhook: { url: `http://am:${PASSWORD}@127.0.0.1:9093/x` } } };
      },
      controller: {
        cluster: { etcd: [`http://root:${PASSWORD}@127.0.0.1:2379`] },
        sensors: { mqttUrl: `mqtt://u:${PASSWORD}@127.0.0.1:1883` },
      },
    });
    const err = await refusal(file);
    const i = opcuaIndex(await demo());
    expect(err.problems.map((p) => [p.path, p.message])).toEqual(
      expect.arrayContaining([
        ['/cluster/etcd/0', 'credentials in an etcd URL would be written to logs and errors'],
        ['/sensors/mqttUrl', 'credentials in the broker URL would be written to logs and errors'],
        [
          `/airHandlers/${i}/endpoint/url`,
          'credentials in an OPC-UA endpoint URL would be written to logs and errors',
        ],
        [
          '/alarms/notifications/webhook/url',
          'credentials in the webhook URL would be written to logs and errors',
        ],
      ]),
    );
    // One problem per URL: not also the webhook pattern that only kept the @ out.
    expect(err.problems.filter((p) => p.path === '/alarms/notifications/webhook/url')).toHaveLength(1);
    expect(err.message).not.toContain(PASSWORD);
    expect(JSON.stringify(err.problems)).not.toContain(PASSWORD);
    // Addresses that become URLs (a node's API, registered in etcd) or are logged with their host.
    const hosts = await configWith(await folder(), {
      site: (s) => {
        (s.airHandlers.find((a) => a.protocol === 'modbus-tcp')!.endpoint as Doc).host =
          `plc:${PASSWORD}@10.0.0.9`;
      },
      controller: { nodes: { a: { api: `root:${PASSWORD}@127.0.0.1:8101` } } },
    });
    const h = await refusal(hosts);
    expect(paths(h)).toEqual(expect.arrayContaining(['/nodes/a/api', '/airHandlers/0/endpoint/host']));
    expect(h.message).not.toContain(PASSWORD);
  });

  it('NaN and infinities are refused in both files, once each, as what they are; an empty inlet range too', async () => {
    const dir = await folder();
    const file = await configWith(dir, {
      site: (s) => {
        s.racks[0]!.itLoadKw = Number.NaN;
        s.sensing = { inletRangeC: [Number.NaN, 60], spikeCPerS: Number.POSITIVE_INFINITY };
        const modbus = s.airHandlers.find((a) => a.protocol === 'modbus-tcp')!;
        modbus.pointMap = { tempScale: Number.POSITIVE_INFINITY, pctScale: Number.NEGATIVE_INFINITY };
      },
      controller: { timeScale: Number.POSITIVE_INFINITY },
    });
    const text = await readFile(join(dir, 'site.yaml'), 'utf8');
    expect(text).toMatch(/\.nan/); // the YAML spelling an author would write
    const err = await refusal(file);
    const m = new Map(err.problems.map((p) => [p.path, p.message]));
    expect(m.get('/racks/0/itLoadKw')).toBe('is not a number (.nan)');
    expect(m.get('/sensing/inletRangeC/0')).toBe('is not a number (.nan)');
    expect(m.get('/sensing/spikeCPerS')).toBe('is infinite (.inf)');
    expect([...m.values()]).toContain('is infinite (-.inf)');
    expect(m.get('/timeScale')).toBe('is infinite (.inf)');
    // Not also "must be <= 200" and "must be >= 0" for the same value.
    expect(err.problems.filter((p) => p.path === '/racks/0/itLoadKw')).toHaveLength(1);

    // Alone, a NaN end of the range is that one problem, not also an "empty range".
    const nanEnd = await configWith(await folder(), {
      site: (s) => {
        s.sensing = { inletRangeC: [Number.NaN, 60] };
      },
    });
    expect((await refusal(nanEnd)).problems.map((p) => [p.path, p.message])).toEqual([
      ['/sensing/inletRangeC/0', 'is not a number (.nan)'],
    ]);
    const inverted = await configWith(await folder(), {
      site: (s) => {
        s.sensing = { inletRangeC: [40, 20] };
      },
    });
    expect((await refusal(inverted)).problems).toEqual([
      expect.objectContaining({ path: '/sensing/inletRangeC/1', message: expect.stringMatching(/is empty/) }),
    ]);
  });

  it('port 0 (the simulator’s "pick one") is refused where the controller must dial, and still loads for the simulator', async () => {
    const dir = await folder();
    const file = await configWith(dir, {
      site: (s) => {
        (s.airHandlers.find((a) => a.protocol === 'modbus-tcp')!.endpoint as Doc).port = 0;
        s.gateways[0] = {
          ...s.gateways[0],
          transport: 'modbus-tcp',
          endpoint: { host: '127.0.0.1', port: 0 },
        };
      },
      controller: { sensors: { mqttUrl: 'mqtt://127.0.0.1:1883' } },
    });
    await expect(loadSite(join(dir, 'site.yaml'))).resolves.toBeDefined();
    const err = await refusal(file);
    expect(paths(err)).toEqual(['/airHandlers/0/endpoint/port', '/gateways/0/endpoint/port']);
    expect(err.problems[0]!.message).toMatch(/has port 0: the controller cannot dial it/);
  });

  it('two Modbus sensor gateways on one endpoint, or one on an air handler’s, are refused at the second', async () => {
    const unitAt = (s: Doc) =>
      (s.airHandlers as Doc[]).find((a) => a.protocol === 'modbus-tcp')!.endpoint as Doc;
    const twice = await configWith(await folder(), {
      site: (s) => {
        s.gateways = s.gateways.map((g: Doc) => ({
          ...g,
          transport: 'modbus-tcp',
          endpoint: { host: '127.0.0.1', port: 15999 },
        }));
      },
      controller: { sensors: { mqttUrl: 'mqtt://127.0.0.1:1883' } },
    });
    expect((await refusal(twice)).problems).toEqual([
      expect.objectContaining({
        path: '/gateways/1/endpoint',
        message: expect.stringMatching(/"gw-2" is polled at 127\.0\.0\.1:15999, already gateways\/0's/),
      }),
    ]);
    const onUnit = await configWith(await folder(), {
      site: (s) => {
        const { host, port } = unitAt(s);
        s.gateways[0] = { ...s.gateways[0], transport: 'modbus-tcp', endpoint: { host, port } };
      },
      controller: { sensors: { mqttUrl: 'mqtt://127.0.0.1:1883' } },
    });
    expect((await refusal(onUnit)).problems).toEqual([
      expect.objectContaining({
        path: '/gateways/0/endpoint',
        message: expect.stringMatching(/already airHandlers\/0's/),
      }),
    ]);
  });

  it('a site with MQTT gateways and no broker in the controller config is valid, with a warning that says so', async () => {
    const r = await validateConfigFile(FIXTURE, { node: 'node-a' });
    expect(r.valid).toBe(true);
    expect(r.warnings).toEqual([
      expect.objectContaining({
        path: '/sensors',
        message: expect.stringMatching(/gw-1, gw-2 publish over MQTT, but this config names no broker/),
      }),
    ]);
  });
});

describe('a node name from the command line', () => {
  it.each(['toString', 'constructor', 'hasOwnProperty', '__proto__', 'valueOf'])(
    '--node %s is no node of the file, said as such',
    async (name) => {
      const err = await refusal(FIXTURE, name);
      expect(err.problems).toEqual([
        expect.objectContaining({
          path: '/nodes',
          message: `no node "${name}" in this file`,
          allowed: 'one of node-a, node-b, node-c',
        }),
      ]);
    },
  );

  it('coolctl run --node toString exits 2 with that message, no stack', () => {
    const run = spawnSync(
      process.execPath,
      ['src/cli.ts', 'run', '--config', FIXTURE, '--node', 'toString'],
      {
        encoding: 'utf8',
        timeout: 30_000,
      },
    );
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/no node "toString" in this file \(allowed: one of node-a, node-b, node-c\)/);
    expect(run.stderr).not.toMatch(/TypeError|\n\s+at /);
  });
});

describe('every problem in one round, each with its line', () => {
  it('a heartbeat too slow, a missing secret file and missing etcd and MQTT password files: one refusal', async () => {
    const dir = await folder();
    const file = await configWith(dir, {
      controller: {
        cluster: {
          etcd: { hosts: ['http://127.0.0.1:2379'], auth: { username: 'u', passwordFile: 'etcd-password' } },
          secretFile: 'cluster.secret',
        },
        nodes: { a: { api: '127.0.0.1:8101', peer: '127.0.0.1:8201' } },
        sensors: { mqtt: { url: 'mqtt://127.0.0.1:1883', username: 'm', passwordFile: 'mqtt-password' } },
        control: { periodMs: 60_000 },
      },
    });
    const err = await refusal(file);
    expect(paths(err).sort()).toEqual([
      '/cluster/etcd/auth/passwordFile',
      '/cluster/secretFile',
      '/control/periodMs',
      '/sensors/mqtt/passwordFile',
    ]);
    expect(err.problems.every((p) => typeof p.line === 'number')).toBe(true);
  });

  it('a bad controller file and a bad site file are listed together', async () => {
    const file = await configWith(await folder(), {
      site: (s) => {
        s.racks[0]!.itLoadKw = 900;
      },
      controller: { cluster: { etcd: ['http://127.0.0.1:2379'], leaseTTL: 3 } },
    });
    const err = await refusal(file);
    expect(paths(err)).toEqual(expect.arrayContaining(['/cluster/leaseTTL', '/racks/0/itLoadKw']));
  });

  it('a union that fails shows the branch the value is written as, and the controller config’s doc', async () => {
    const dir = await folder();
    const mapping = await configWith(dir, {
      controller: { cluster: { etcd: { hosts: ['http://127.0.0.1:2379'], tls: { caFile: 1 } } } },
    });
    expect((await refusal(mapping)).problems.map((p) => `${p.path}: ${p.message}`)).toEqual([
      '/cluster/etcd/tls/caFile: must be string',
    ]);
    const text = await configWith(await folder(), {
      controller: { cluster: { etcd: 'http://127.0.0.1:2379' } },
    });
    expect((await refusal(text)).problems).toEqual([
      expect.objectContaining({
        path: '/cluster/etcd',
        message: 'is text',
        allowed: 'a list or a mapping (key: value); see docs/daemon.md',
      }),
    ]);
  });
});

describe('files as bytes: size, kind, encoding, emptiness', () => {
  it('a site file above the documented size, and a FIFO, are refused by stat, before a byte is read', async () => {
    const dir = await folder();
    const file = await configWith(dir);
    await truncate(join(dir, 'site.yaml'), 9 * 1024 * 1024); // sparse: nothing to read fast
    const big = await refusal(file);
    expect(big.problems[0]!.message).toMatch(
      /site\.yaml is 9\.0 MB, more than the 8\.0 MB a site file may be/,
    );
    await rm(join(dir, 'site.yaml'));
    execFileSync('mkfifo', [join(dir, 'site.yaml')]);
    expect((await refusal(file)).problems[0]!.message).toMatch(/site\.yaml is not a regular file/);
    const controller = join(dir, 'controller.yaml');
    await truncate(controller, 2 * 1024 * 1024);
    const err = await loadControllerConfig(controller, 'a').catch((e: unknown) => e);
    expect((err as ConfigError).problems[0]!.message).toMatch(
      /more than the 1\.0 MB a controller config may be/,
    );
  });

  it('not UTF-8: the byte and its line; UTF-16: said so; empty: said so', async () => {
    const dir = await folder();
    const latin = join(dir, 'latin-site.yaml');
    await writeFile(
      latin,
      Buffer.concat([
        Buffer.from('site:\n  id: x\n  name: "Halle '),
        Buffer.from([0xe9]),
        Buffer.from('"\n'),
      ]),
    );
    const l = (await loadSite(latin).catch((e: unknown) => e)) as ConfigError;
    expect(l.problems).toEqual([
      expect.objectContaining({ line: 3, message: 'byte 29 (line 3) is 0xe9, which is not UTF-8' }),
    ]);
    const utf16 = join(dir, 'utf16-site.yaml');
    await writeFile(
      utf16,
      Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('site:\n  id: x\n', 'utf16le')]),
    );
    const u = (await loadSite(utf16).catch((e: unknown) => e)) as ConfigError;
    expect(u.problems[0]!.message).toBe('the file is UTF-16 (little-endian) text');
    expect(u.problems[0]!.allowed).toMatch(/UTF-8/);
    const empty = join(dir, 'empty-site.yaml');
    await writeFile(empty, '# nothing yet\n');
    const e = (await loadSite(empty).catch((x: unknown) => x)) as ConfigError;
    expect(e.problems).toEqual([
      expect.objectContaining({
        path: '',
        message: 'the file is empty (nothing but blank lines or comments)',
      }),
    ]);
  });

  it('config validate tells an unparsable or empty site.yaml by its name, not as a controller config', async () => {
    const dir = await folder();
    await writeFile(join(dir, 'site.yaml'), 'site:\n  id: [unclosed\n');
    const broken = await validateConfigFile(join(dir, 'site.yaml'));
    expect(broken).toMatchObject({ kind: 'site', valid: false });
    expect(broken.problems[0]!.message).toMatch(/^YAML syntax/);
    await writeFile(join(dir, 'site.yaml'), '');
    expect(await validateConfigFile(join(dir, 'site.yaml'))).toMatchObject({
      kind: 'site',
      problems: [expect.objectContaining({ message: expect.stringMatching(/the file is empty/) })],
    });
    await writeFile(join(dir, 'hall.yaml'), '');
    const unknown = await validateConfigFile(join(dir, 'hall.yaml'));
    expect(unknown.kind).toBeNull();
    expect(unknown.problems[0]!.allowed).toMatch(/--kind site\|controller/);
  });
});

describe('many problems: the first 100 listed, the rest counted up to 1000', () => {
  const manyRacks = async (dir: string) => {
    const text = await readFile(DEMO, 'utf8');
    const bad = `racks:\n${'  - 1\n'.repeat(30_000)}`;
    await writeFile(
      join(dir, 'site.yaml'),
      text.slice(0, text.indexOf('racks:\n')) + bad + text.slice(text.indexOf('airHandlers:')),
    );
  };

  it('in the error, in config validate’s JSON and in the reload’s one log line', async () => {
    const dir = await folder();
    const file = await configWith(dir);
    const cfg = await loadControllerConfig(file, 'a');
    await manyRacks(dir);
    // Checking stops at 1 000: what refusing a file costs is bounded whatever it holds.
    const err = await refusal(file);
    expect(err.problems).toHaveLength(1001);
    expect(err.problems.at(-1)).toMatchObject({
      message: 'more problems than the 1000 a check collects: checking stopped here',
    });
    expect(err.message.split('\n')).toHaveLength(102);
    expect(err.message).toMatch(/: at least 1000 problems \(checking stops after 1000\)\n/);
    expect(err.message).toMatch(/… and 900 more problem\(s\) like these, and more not checked/);
    const r = await validateConfigFile(file, { node: 'a' });
    const json = JSON.parse(JSON.stringify(r)) as {
      problems: unknown[];
      problemCount: number;
      checkingStopped?: boolean;
    };
    expect(json.problems).toHaveLength(100);
    expect(json.problemCount).toBe(1000);
    expect(json.checkingStopped).toBe(true);
    expect(formatValidation(r).split('\n')[0]).toMatch(
      /not a valid controller config — at least 1000 problems/,
    );

    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (s: string) => lines.push(s) });
    const controller = new Controller(cfg, { logger });
    await expect(controller.reload()).rejects.toBeInstanceOf(ConfigError);
    const refused = lines
      .map((l) => JSON.parse(l) as Doc)
      .find((l) => l.msg === 'config reload refused: the running config is kept')!;
    expect(refused.problemCount).toBe(1000);
    expect(refused.checkingStopped).toBe(true);
    expect(refused.problems).toHaveLength(100);
    expect(refused.err).toBeUndefined(); // the problems once, not again as the error's text
    expect(lines.join('').length).toBeLessThan(64 * 1024);
  });
});

describe('etcd unreachable at start', () => {
  it('names cluster.etcd, the file, the addresses and what to check; still a start-up failure (exit 1)', async () => {
    const cfg = await loadControllerConfig(FIXTURE, 'node-a');
    const cause = new CoolctlError(
      ErrorCodes.ETCD_UNAVAILABLE,
      'etcd list: 14 UNAVAILABLE: No connection established',
    );
    const err = etcdStartError(cause, cfg, 33_000) as CoolctlError;
    expect(err.code).toBe(ErrorCodes.STARTUP);
    expect(err.message).toContain(`cluster.etcd in ${FIXTURE} names http://127.0.0.1:2379`);
    expect(err.message).toMatch(/tried for 33 s, last: etcd list: 14 UNAVAILABLE/);
    expect(err.message).toMatch(/Check that the etcd members run and listen on those addresses/);
    // Other start-up failures keep their own words.
    const inUse = new CoolctlError(ErrorCodes.DATA_DIR_IN_USE, 'data dir in use');
    expect(etcdStartError(inUse, cfg, 1)).toBe(inUse);
  });
});
