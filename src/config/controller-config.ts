// The controller's own config file (`coolctl run --config FILE --node NAME`): where the site file
// is, the etcd cluster and its timing, the nodes of the cluster and their APIs, the sensor broker.
// One schema, defaults filled in, every problem listed with its line. The timing rules that keep
// a single leader are checked here, at load, and say why (docs/leadership.md). Each setting says
// whether a reload applies it or it needs a restart (`live`/`restartOnly`, src/config/reload-class.ts).
import { dirname, resolve } from 'node:path';
import { type Static, Type as T } from '@sinclair/typebox';
import type { EtcdSecurity } from '../cluster/etcd/etcd-client.ts';
import { leadershipTimingProblems, type TimingField } from '../cluster/timing.ts';
import { leaseCommandRequests } from '../devices/create-device.ts';
import { ConfigError, type ConfigProblem } from '../errors.ts';
import { type ApiSettings, ApiSettingsSchema, apiSettings } from './api-config.ts';
import { ajv, checkYamlConfig, valueAt } from './config-check.ts';
import { CONTROLLER_FILE_MAX_BYTES, readConfigFile, readSecretLine } from './config-files.ts';
import {
  checkApiTls,
  EtcdSettingsSchema,
  linkRules,
  loadEtcdSecurity,
  loadMqttLink,
  loadPeerKeys,
  type MqttLink,
  MqttSettingsSchema,
} from './link-secrets.ts';
import { checkSite } from './load-site.ts';
import { live, restartOnly } from './reload-class.ts';
import { bootstrapAdminCheck, siteEndpointProblems, siteFileProblems } from './site-files.ts';
import { type RuleProblem, reservedIdProblem } from './site-rules.ts';
import { maxApplyDelayMs, type Site } from './site-schema.ts';

/** Where the controller config's settings are documented: what a problem with no better hint points to. */
const CONTROLLER_DOCS = 'docs/daemon.md';

const NodeName = T.String({
  pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$',
  description: 'node name: letters, digits, _ . -',
});
// These addresses become URLs that are registered in etcd, dialled with operators' tokens, written
// into the dashboard's CSP and logged: a DNS name or IPv4 address (no `user@`, no `;`, no path) and a
// port 1–65535, as src/util/api-origin.ts reads them back.
const HOST_PORT =
  '^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*:(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$';
const HostPort = T.String({
  pattern: HOST_PORT,
  description: 'host:port (a DNS name or IPv4 address; port 1–65535)',
});

export const ControllerConfigSchema = T.Object(
  {
    site: T.String({
      minLength: 1,
      description: 'the site file, relative to this file',
      ...restartOnly(
        'the daemon watches the site file it started with; edits to that file (units, groups, sensors, tuning) reload live',
      ),
    }),
    cluster: T.Object(
      {
        etcd: T.Union([
          T.Array(T.String({ pattern: '^https?://' }), {
            minItems: 1,
            description: 'etcd client URLs (plain)',
          }),
          EtcdSettingsSchema,
        ]),
        prefix: T.Optional(
          T.String({
            pattern: '^/[^\\s]*[^/\\s]$',
            default: '/coolctl',
            description: 'key prefix of this cluster',
          }),
        ),
        leaseTtlS: T.Optional(
          T.Integer({ minimum: 1, maximum: 300, default: 5, description: 'etcd lease TTL (whole seconds)' }),
        ),
        keepaliveIntervalMs: T.Optional(T.Integer({ minimum: 50, maximum: 60_000, default: 1000 })),
        safetyMarginMs: T.Optional(
          T.Integer({
            minimum: 0,
            maximum: 60_000,
            default: 500,
            description: 'a leader stops acting this long before its lease could expire',
          }),
        ),
        etcdCallTimeoutMs: T.Optional(T.Integer({ minimum: 50, maximum: 60_000, default: 1000 })),
        rebalanceHoldMs: T.Optional(
          T.Integer({
            minimum: 0,
            maximum: 3_600_000,
            default: 5000,
            description: 'membership must be stable this long before groups are rebalanced',
          }),
        ),
        peerKeysFile: T.Optional(
          T.String({
            minLength: 1,
            description:
              'file holding this node’s peer-channel key with each other node (scripts/peer-keys.ts); binds each peer identity to its node; replaces secretFile; relative to this file',
          }),
        ),
        secretFile: T.Optional(
          T.String({
            minLength: 1,
            description:
              'file holding the shared cluster secret (≥ 16 bytes) that peers authenticate with; relative to this file; required when nodes have a peer address',
          }),
        ),
        failsafe: T.Optional(
          T.Boolean({
            default: false,
            description:
              'keep leading through an etcd outage while every member backs the leader on the peer channel (docs/state-cache.md)',
          }),
        ),
        pullTimeoutMs: T.Optional(
          T.Integer({
            minimum: 10,
            maximum: 10_000,
            default: 500,
            description: 'how long a new leader waits for its peers’ process state when its cache has none',
          }),
        ),
      },
      {
        additionalProperties: false,
        ...restartOnly(
          'the etcd session, the leadership timing and the peer channel are set up at start; restart the nodes one at a time',
        ),
      },
    ),
    nodes: T.Record(
      NodeName,
      T.Object(
        {
          api: HostPort,
          peer: T.Optional(
            T.String({
              pattern: HOST_PORT,
              description: 'host:port the peer channel (state cache) listens on',
            }),
          ),
          peerAdvertise: T.Optional(
            T.String({
              pattern: HOST_PORT,
              description:
                'host:port peers dial to reach this node, when not the listen address (NAT, port mapping)',
            }),
          ),
        },
        { additionalProperties: false },
      ),
      {
        minProperties: 1,
        ...restartOnly('each node binds its API and peer addresses, and registers them in etcd, at start'),
      },
    ),
    api: T.Optional(ApiSettingsSchema),
    dataDir: T.Optional(
      T.String({
        minLength: 1,
        default: 'var/{node}',
        description: '{node} is replaced by the node name; relative to this file',
        ...restartOnly('the node locks and opens its data directory at start'),
      }),
    ),
    sensors: T.Optional(
      T.Object(
        {
          mqttUrl: T.Optional(T.String({ pattern: '^mqtts?://' })),
          mqtt: T.Optional(MqttSettingsSchema),
        },
        {
          additionalProperties: false,
          ...live('the sensor ingest reconnects with the new broker settings, files read again'),
        },
      ),
    ),
    control: T.Optional(
      T.Object(
        {
          periodMs: T.Optional(
            T.Integer({
              minimum: 100,
              maximum: 60_000,
              default: 1000,
              description: 'control loop and heartbeat period',
              ...restartOnly('every group loop and unit heartbeat runs at the period it started with'),
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    timeScale: T.Optional(
      T.Number({
        minimum: 0.01,
        maximum: 10_000,
        default: 1,
        description: 'simulation only: site time runs this much faster',
        ...restartOnly('the clocks of the control loops and sensor ingest are made at start'),
      }),
    ),
  },
  { additionalProperties: false },
);

export type ControllerConfigFile = Static<typeof ControllerConfigSchema>;

/** The config with every default applied and paths resolved, for one node. */
export interface ControllerConfig {
  file: string;
  /** The file as written, defaults filled in: what a reload compares by the schema's classes. */
  doc: ControllerConfigFile;
  node: string;
  sitePath: string;
  site: Site;
  apiHost: string;
  apiPort: number;
  /** Identity, sessions and limits of the API (`api:`; docs/security.md). */
  api: ApiSettings;
  peer: { host: string; port: number } | undefined;
  /** What peers dial (registered in etcd): peerAdvertise, else the listen address. */
  peerUrl: string | undefined;
  nodes: Record<string, { api: string; peer?: string | undefined; peerAdvertise?: string | undefined }>;
  cluster: {
    etcd: string[];
    prefix: string;
    leaseTtlS: number;
    keepaliveIntervalMs: number;
    safetyMarginMs: number;
    etcdCallTimeoutMs: number;
    rebalanceHoldMs: number;
    failsafe: boolean;
    pullTimeoutMs: number;
  };
  /** TLS and user for etcd (cluster.etcd.tls / auth), read from their files. */
  etcdSecurity: EtcdSecurity;
  /** The shared cluster secret (from cluster.secretFile); undefined when no node has a peer address. */
  secret: Buffer | undefined;
  /** This node's key with each peer (cluster.peerKeysFile), used instead of the shared secret. */
  peerKeys: Map<string, Buffer> | undefined;
  dataDir: string;
  mqttUrl: string | undefined;
  /** The sensor broker link with its credentials and TLS material (sensors.mqtt or sensors.mqttUrl). */
  mqtt: MqttLink | undefined;
  periodMs: number;
  timeScale: number;
  /**
   * What the daemon can run with but probably should not (a site's MQTT gateways with no broker, a
   * bootstrap admin file that is gone, a tuning default a written range moved): `config validate`
   * prints them, the daemon logs them at start.
   */
  warnings?: ConfigProblem[];
}

const validate = ajv.compile<ControllerConfigFile>(ControllerConfigSchema);

/** The single-leader timing rule (src/cluster), reported against this file's paths. */
export function timingRules(c: ControllerConfigFile): { path: string; message: string; allowed: string }[] {
  return leadershipTimingProblems(clusterTiming(c)).map((p) => ({
    path: `/cluster/${p.field}`,
    message: p.message,
    allowed: p.allowed,
  }));
}

/**
 * Every unit's worst-case write must fit in what a healthy leader's lease leaves it. A write goes on
 * the wire only while the unit's `client.maxApplyDelayMs` fits before the lease guard's deadline
 * (safety: src/devices/resilience.ts writeBudgetMs); this rule makes sure that, with keepalives on
 * time, it always fits — the deadline is renewed to TTL − margin after each keepalive and falls to
 * TTL − margin − keepaliveIntervalMs just before the next. A unit past that would be written only
 * part of the time, or never. One problem per unit, all at once.
 */
export function deviceTimingRules(
  site: Pick<Site, 'airHandlers'>,
  timing: Pick<ControllerConfig['cluster'], 'leaseTtlS' | 'safetyMarginMs' | 'keepaliveIntervalMs'>,
  siteFile: string,
  leaseRequests: ReadonlyMap<string, { perPeriod: number; first: number }> = new Map(),
): ConfigProblem[] {
  const actWindowMs = timing.leaseTtlS * 1000 - timing.safetyMarginMs - timing.keepaliveIntervalMs;
  const problems: ConfigProblem[] = [];
  site.airHandlers.forEach((a, i) => {
    const applyMs = maxApplyDelayMs(a.client);
    const lease = leaseRequests.get(a.id);
    if (lease && applyMs <= actWindowMs) {
      const problem = leaseWindowProblem(a.id, i, applyMs, lease, timing, siteFile);
      if (problem) problems.push(problem);
      return;
    }
    if (applyMs <= actWindowMs) return;
    // Which setting the figure came from: the operator changes that one.
    const from =
      a.client?.maxApplyDelayMs !== undefined
        ? 'client.maxApplyDelayMs'
        : a.client?.timeoutMs !== undefined
          ? 'client.timeoutMs, the default of client.maxApplyDelayMs'
          : 'the default of client.maxApplyDelayMs';
    problems.push({
      file: siteFile,
      path: `/airHandlers/${i}/client/${a.client?.maxApplyDelayMs === undefined && a.client?.timeoutMs !== undefined ? 'timeoutMs' : 'maxApplyDelayMs'}`,
      message:
        `air handler ${a.id} may take ${applyMs} ms to apply a write (${from}), ` +
        `more than the ${actWindowMs} ms a leader's lease is sure to leave it (leaseTtlS × 1000 − safetyMarginMs − keepaliveIntervalMs ` +
        `of the controller config): its writes could not all end inside the term, so they would be skipped`,
      allowed:
        `client.maxApplyDelayMs ≤ ${actWindowMs} for this unit (set its gateway's response timeout to match), ` +
        `or leaseTtlS ≥ ${Math.ceil((applyMs + timing.safetyMarginMs + timing.keepaliveIntervalMs) / 1000)} in the controller config`,
    });
  });
  return problems;
}

/**
 * A lease unit (docs/leadership.md, "The lease window") sends a command of n requests only while
 * n × maxApplyDelayMs fits before the lease deadline. Its steady-state command must fit what a
 * healthy leader is sure to have (TTL − margin − keepalive interval), and its first command on a
 * connection (state points and watchdog timer too) what it has right after a keepalive
 * (TTL − margin); else that unit would be written only part of the time, or never.
 */
function leaseWindowProblem(
  unit: string,
  i: number,
  applyMs: number,
  n: { perPeriod: number; first: number },
  timing: Pick<ControllerConfig['cluster'], 'leaseTtlS' | 'safetyMarginMs' | 'keepaliveIntervalMs'>,
  siteFile: string,
): ConfigProblem | undefined {
  const leaseMs = timing.leaseTtlS * 1000 - timing.safetyMarginMs;
  const windowMs = leaseMs - timing.keepaliveIntervalMs;
  const [count, limitMs, which] =
    n.perPeriod * applyMs > windowMs
      ? [n.perPeriod, windowMs, 'leaseTtlS × 1000 − safetyMarginMs − keepaliveIntervalMs']
      : n.first * applyMs > leaseMs
        ? [n.first, leaseMs, 'leaseTtlS × 1000 − safetyMarginMs']
        : [0, 0, ''];
  if (count === 0) return undefined;
  return {
    file: siteFile,
    path: `/airHandlers/${i}/client/maxApplyDelayMs`,
    message:
      `air handler ${unit} is lease-fenced and its profile writes a command in ${count} requests: ` +
      `${count} × ${applyMs} ms worst case = ${count * applyMs} ms, more than the ${limitMs} ms (${which}) ` +
      'a leader is sure to have: its commands could not be sent whole inside the lease',
    allowed:
      `client.maxApplyDelayMs ≤ ${Math.floor(limitMs / count)} for this unit (a unit answers one register in well under 100 ms), ` +
      `fencing: gateway, or leaseTtlS ≥ ${Math.ceil((count * applyMs + timing.safetyMarginMs + (limitMs === windowMs ? timing.keepaliveIntervalMs : 0)) / 1000)}`,
  };
}

/** Node names that every JavaScript object answers to (`constructor`, …): refused, as site ids are. */
function nodeNameRules(c: ControllerConfigFile): RuleProblem[] {
  return Object.keys(c.nodes).flatMap((n) => reservedIdProblem(n, `/nodes/${n}`, 'a node name') ?? []);
}

/** The cluster's timing with its defaults: the one place they are filled in. */
function clusterTiming(c: ControllerConfigFile): Pick<ControllerConfig['cluster'], TimingField> {
  return {
    leaseTtlS: c.cluster.leaseTtlS ?? 5,
    keepaliveIntervalMs: c.cluster.keepaliveIntervalMs ?? 1000,
    safetyMarginMs: c.cluster.safetyMarginMs ?? 500,
    etcdCallTimeoutMs: c.cluster.etcdCallTimeoutMs ?? 1000,
    rebalanceHoldMs: c.cluster.rebalanceHoldMs ?? 5000,
  };
}

/**
 * Loads the controller config and its site file for `node`, and reads every file they name; throws
 * ConfigError listing every problem of both files at once — shape, rules, timing, the node, and
 * each file that is missing, unreadable, open to other users or broken — with its line. The one
 * check `coolctl run`, a reload and `coolctl config validate` make.
 */
export async function loadControllerConfig(file: string, node: string): Promise<ControllerConfig> {
  const text = await readConfigFile(file, CONTROLLER_FILE_MAX_BYTES, 'controller config');
  const checked = checkYamlConfig(
    text,
    file,
    validate,
    (x) => [...timingRules(x), ...linkRules(x), ...nodeNameRules(x)],
    {
      docs: CONTROLLER_DOCS,
    },
  );
  const problems: ConfigProblem[] = [...checked.problems];
  const warnings: ConfigProblem[] = [];
  const base = dirname(resolve(file));
  // The site file is checked whatever the shape of the rest: its problems come in the same round.
  const siteName = (checked.data as { site?: unknown } | undefined)?.site;
  const sitePath = typeof siteName === 'string' && siteName !== '' ? resolve(base, siteName) : undefined;
  let site: Site | undefined;
  let siteLines: ((pointer: string) => number | undefined) | undefined;
  if (sitePath) {
    try {
      const s = await checkSite(sitePath);
      problems.push(...s.problems);
      warnings.push(...s.warnings);
      site = s.value;
      siteLines = s.lines;
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(...err.problems);
    }
  }
  const c = checked.value;
  const failed = (): ConfigError => {
    for (const p of problems)
      p.line ??=
        p.file === file ? checked.lines(p.path) : p.file === sitePath ? siteLines?.(p.path) : undefined;
    return new ConfigError(file, problems);
  };
  if (!c || !sitePath) throw failed();

  // A name from the command line: an own key of the file's nodes, never Object.prototype's toString.
  const self = Object.hasOwn(c.nodes, node) ? c.nodes[node] : undefined;
  if (!self)
    problems.push({
      file,
      path: '/nodes',
      message: `no node "${node}" in this file`,
      allowed: `one of ${Object.keys(c.nodes).join(', ')}`,
    });
  const periodMs = c.control?.periodMs ?? 1000;
  const timeScale = c.timeScale ?? 1;
  if (site) {
    const tightest = site.airHandlers.reduce(
      (m, a) => Math.min(m, a.watchdogS ?? 30),
      Number.POSITIVE_INFINITY,
    );
    if (Number.isFinite(tightest) && periodMs * 2 > tightest * 1000)
      problems.push({
        file,
        path: '/control/periodMs',
        message: `a ${periodMs} ms heartbeat period leaves less than two heartbeats per ${tightest} s unit watchdog: units would drop to local control between writes`,
        allowed: `periodMs ≤ ${Math.floor((tightest * 1000) / 2)}`,
      });
    const lease = await leaseCommandRequests(site.airHandlers);
    problems.push(
      ...lease.problems.map((p) => ({
        file: sitePath,
        path: `/airHandlers/${p.index}/profile`,
        message: p.message,
        allowed: 'a profile in config/profiles that loads (coolctl profile check FILE)',
      })),
      ...deviceTimingRules(site, clusterTiming(c), sitePath, lease.counts),
      ...siteEndpointProblems(site, sitePath),
      ...(await siteFileProblems(site, sitePath)),
    );
    const mqttGateways = site.gateways.filter((g) => (g.transport ?? 'mqtt') === 'mqtt');
    if (mqttGateways.length > 0 && !c.sensors?.mqtt && !c.sensors?.mqttUrl)
      warnings.push({
        file,
        path: '/sensors',
        message: `the site's gateways ${mqttGateways.map((g) => g.id).join(', ')} publish over MQTT, but this config names no broker: their sensors stay unknown and the groups they feed run blind`,
        allowed: 'sensors.mqtt { url, … } or sensors.mqttUrl (the broker the gateways publish to)',
      });
  }
  const secret = await clusterSecret(file, base, c, problems);
  const etcd = Array.isArray(c.cluster.etcd) ? { hosts: c.cluster.etcd } : c.cluster.etcd;
  const etcdSecurity = await loadEtcdSecurity(etcd, base, file, problems);
  const mqttSettings = c.sensors?.mqtt ?? (c.sensors?.mqttUrl ? { url: c.sensors.mqttUrl } : undefined);
  const mqtt = mqttSettings ? await loadMqttLink(mqttSettings, base, file, problems) : undefined;
  const peerKeys =
    c.cluster.peerKeysFile && self?.peer
      ? await loadPeerKeys(c.cluster.peerKeysFile, base, file, node, Object.keys(c.nodes), problems)
      : undefined;
  const api = apiSettings(c.api, base);
  if (api.tls) await checkApiTls(api.tls, base, file, problems);
  if (api.bootstrapAdminFile) {
    const admin = await bootstrapAdminCheck(api.bootstrapAdminFile, { required: false });
    problems.push(...admin.problems.map((p) => ({ ...p, file })));
    warnings.push(...admin.warnings.map((p) => ({ ...p, file })));
  }
  if (problems.length > 0 || !self || !site) throw failed();
  // A warning about a setting that is not there has no line to point at.
  for (const w of warnings)
    if (w.file === file && valueAt(checked.data, w.path) !== undefined) w.line ??= checked.lines(w.path);
  const [apiHost, apiPort] = splitHostPort(self.api);
  return {
    file,
    doc: c,
    node,
    sitePath,
    site,
    apiHost,
    apiPort,
    api,
    peer: self.peer ? (([host, port]) => ({ host, port }))(splitHostPort(self.peer)) : undefined,
    peerUrl: self.peer ? `tcp://${self.peerAdvertise ?? self.peer}` : undefined,
    nodes: c.nodes,
    cluster: {
      etcd: etcd.hosts,
      prefix: c.cluster.prefix ?? '/coolctl',
      ...clusterTiming(c),
      failsafe: c.cluster.failsafe ?? false,
      pullTimeoutMs: c.cluster.pullTimeoutMs ?? 500,
    },
    etcdSecurity,
    secret,
    peerKeys,
    dataDir: resolve(base, (c.dataDir ?? 'var/{node}').replaceAll('{node}', node)),
    mqttUrl: mqtt?.url,
    mqtt,
    periodMs,
    timeScale,
    warnings,
  };
}

/** The cluster secret, when peers are configured; every problem recorded at its config path. */
async function clusterSecret(
  file: string,
  base: string,
  c: ControllerConfigFile,
  problems: ConfigProblem[],
): Promise<Buffer | undefined> {
  const withPeer = Object.entries(c.nodes)
    .filter(([, n]) => n.peer)
    .map(([name]) => name);
  const problem = (message: string, allowed: string) =>
    problems.push({ file, path: '/cluster/secretFile', message, allowed });
  if (withPeer.length === 0) {
    if (c.cluster.failsafe)
      problems.push({
        file,
        path: '/cluster/failsafe',
        message: 'failsafe needs the peer channel, but no node has a peer address',
        allowed: 'give every node a peer: host:port, or set failsafe: false',
      });
    return undefined;
  }
  if (withPeer.length !== Object.keys(c.nodes).length)
    problems.push({
      file,
      path: '/nodes',
      message: `only ${withPeer.join(', ')} have a peer address: process state would not reach every node`,
      allowed: 'a peer: host:port on every node, or on none',
    });
  if (!c.cluster.secretFile && c.cluster.peerKeysFile) return undefined;
  if (!c.cluster.secretFile) {
    problem('nodes have peer addresses but no cluster secret is configured', 'a path to a secret file');
    return undefined;
  }
  const path = resolve(base, c.cluster.secretFile);
  const read = await readSecretLine(path);
  if (!read.ok) {
    problem(read.message, read.allowed);
    return undefined;
  }
  const secret = Buffer.from(read.value);
  if (secret.length < 16) {
    problem(
      `the secret in ${path} has ${secret.length} bytes`,
      'at least 16 bytes, e.g. openssl rand -hex 32',
    );
    return undefined;
  }
  return secret;
}

function splitHostPort(s: string): [string, number] {
  const i = s.lastIndexOf(':');
  return [s.slice(0, i), Number(s.slice(i + 1))];
}
