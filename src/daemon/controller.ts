// One controller node: wires the config, the air-handler devices, the state cache (peer channel),
// leadership on etcd, a driver per control group, and the HTTP API, and takes them down again —
// once, in the right order.
// No `process` here (signals, exit codes and sd_notify belong to the entry point), so a test can
// run three of these in one process or the entry point can run one as a service.
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Etcd3 } from 'etcd3';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { Counter, Registry } from 'prom-client';
import { createAlarms } from '../alarms/wiring.ts';
import { buildApp } from '../api/app.ts';
import { AuditTrail } from '../api/audit/audit-trail.ts';
import { AuthStore } from '../api/auth/auth-store.ts';
import { EtcdTokenLeases } from '../api/auth/token-leases.ts';
import { ApiTls, type SecureContextTarget } from '../api/tls.ts';
import { memoizedLeaderView, StateCache } from '../cache/state-cache.ts';
import { ETCD_NO_SPACE_REMEDY, isEtcdNoSpace } from '../cluster/errors.ts';
import { createEtcdClient } from '../cluster/etcd/etcd-client.ts';
import { EtcdLeadership } from '../cluster/etcd/etcd-leadership.ts';
import { EtcdPrefixKv } from '../cluster/etcd/prefix-kv.ts';
import { etcdRefusesWrites } from '../cluster/etcd/space-probe.ts';
import type { Leadership, Member } from '../cluster/leadership.ts';
import { watchStreamsGivenUp } from '../cluster/metrics.ts';
import { configHash } from '../config/config-hash.ts';
import { type ControllerConfig, loadControllerConfig } from '../config/controller-config.ts';
import { sameMqttLink } from '../config/link-secrets.ts';
import { bootstrapAdminCheck } from '../config/site-files.ts';
import { type AirHandler, type ControlGroup, maxApplyDelayMs } from '../config/site-schema.ts';
import { GroupDriver } from '../control/group-driver.ts';
import { groupControlConfig } from '../control/law/group-controller.ts';
import { neighbourGroups } from '../control/law/influence.ts';
import { learnerFor } from '../control/law/influence-learner.ts';
import { ControlMetrics } from '../control/metrics.ts';
import { createDevice } from '../devices/create-device.ts';
import type { DeviceIo } from '../devices/device-io.ts';
import { DeviceMetrics } from '../devices/metrics.ts';
import { ConfigError, CoolctlError, ErrorCodes, MAX_LISTED_PROBLEMS, problemCount } from '../errors.ts';
import { registerBuildInfo } from '../metrics/build-info.ts';
import { registerDefaultMetrics } from '../metrics/default-metrics.ts';
import { registerEventLoopDelay } from '../metrics/event-loop-delay.ts';
import { zeroSeries } from '../metrics/zero-series.ts';
import { ModbusSource } from '../sensors/modbus-source.ts';
import { MqttSource } from '../sensors/mqtt-source.ts';
import { SensorStore, type SensorView } from '../sensors/sensor-store.ts';
import { VERSION } from '../version.ts';
import { diffSites, isEmptyDiff, restartOnlyChanges, type SiteDiff } from './config-diff.ts';
import { checkLoops, type LoopHealthReport, nodeLoopProbes } from './loop-health.ts';
import { ProcessValues } from './process-values.ts';

/** What a config reload comes to (coolctl_config_reloads_total{result}). */
export const RELOAD_RESULTS = ['applied', 'unchanged', 'refused'] as const;
type ReloadResult = (typeof RELOAD_RESULTS)[number];

export interface ControllerDeps {
  logger: Logger;
  /** Tests may hand in another Leadership; the daemon uses etcd. */
  leadership?: (cfg: ControllerConfig, registry: Registry, logger: Logger) => Leadership;
  /** Tests only: handed to every group driver (`GroupDriverOptions.beforeStep`). */
  beforeStep?: (group: string) => void;
}

export class Controller {
  private config: ControllerConfig;
  readonly registry = new Registry();
  private readonly reloads = new Counter({
    name: 'coolctl_config_reloads_total',
    help: 'Config reloads, by result: applied, unchanged, refused (invalid, or a start-only setting changed)',
    labelNames: ['result'],
    registers: [this.registry],
  });
  private readonly log: Logger;
  private readonly deps: ControllerDeps;
  private readonly devices = new Map<string, DeviceIo>();
  private readonly drivers = new Map<string, GroupDriver>();
  private leadership: Leadership | undefined;
  private cache: StateCache | undefined;
  private sensorStore: SensorStore | undefined;
  /**
   * Stays the same object across reloads that rebuild the store: the API and loops hold it. Every
   * method of SensorView, the optional ones too (Required): one left out here would be missing from
   * the daemon only, while tests that hand a SensorStore in pass.
   */
  private readonly sensorView: Required<SensorView> & Pick<SensorStore, 'sensor'> = {
    view: (group) => this.ingest().view(group),
    rackInletStats: (group) => this.ingest().rackInletStats(group),
    figures: (group, maxAgeMs) => this.ingest().figures(group, maxAgeMs),
    // A rack's sensors for the dashboard's floor map (GET /api/v1/site/racks/:id).
    sensor: (node, sensor) => this.ingest().sensor(node, sensor),
    // The verdict hold's memory into a group's process state, and back from it at a new term.
    verdictHold: (group) => this.ingest().verdictHold(group),
    resumeVerdictHold: (group, memory, rowAgeMs) => this.ingest().resumeVerdictHold(group, memory, rowAgeMs),
  };
  /** The group ids the API serves; updated in place on reload. */
  private readonly groupIds: string[] = [];
  private deviceMetrics: DeviceMetrics | undefined;
  private controlMetrics: ControlMetrics | undefined;
  private processValues: ProcessValues | undefined;
  private reloading: Promise<SiteDiff> | undefined;
  private mqtt: MqttSource | undefined;
  private modbusSensors: ModbusSource | undefined;
  private api: FastifyInstance | undefined;
  /** The API's users, tokens and audit trail live in etcd, on a client of their own. */
  private controlPlane: { etcd: Etcd3; auth: AuthStore; audit?: AuditTrail } | undefined;
  /** The API's certificate (api.tls), read again on every reload (SIGHUP). */
  private apiTls: ApiTls | undefined;
  private stopping: Promise<void> | undefined;
  /** Aborted by stop(): a start-up still running gives up at its next step instead of finishing. */
  private readonly startAbort = new AbortController();
  private starting: Promise<void> | undefined;
  private tearingDown: Promise<void> | undefined;
  /** A reload asked for while another runs: later asks join it (it reads the files after them all). */
  private queuedReload: Promise<SiteDiff> | undefined;
  /** The cluster's alarms (src/alarms/): judged by the groups' leaders, kept in etcd. */
  private alarms: ReturnType<typeof createAlarms> | undefined;
  private apiUrl = '';
  /** Stops the event-loop delay sampler (coolctl_event_loop_delay_seconds). */
  private stopLoopDelay: (() => void) | undefined;

  constructor(cfg: ControllerConfig, deps: ControllerDeps) {
    this.config = cfg;
    this.deps = deps;
    // The entry point's logger already names the node; a test's may not.
    this.log = deps.logger.bindings().node === cfg.node ? deps.logger : deps.logger.child({ node: cfg.node });
    zeroSeries(this.reloads, { result: RELOAD_RESULTS });
  }

  /** What the config runs with but probably should not: at start and at every reload taken. */
  private logWarnings(cfg: ControllerConfig): void {
    for (const w of cfg.warnings ?? [])
      this.log.warn({ file: w.file, line: w.line, path: w.path, allowed: w.allowed }, `config: ${w.message}`);
  }

  private reloaded(result: ReloadResult): void {
    this.reloads.inc({ result });
  }

  /** The running config (replaced by a successful reload). */
  get cfg(): ControllerConfig {
    return this.config;
  }

  get url(): string {
    return this.apiUrl;
  }

  get cluster(): Leadership | undefined {
    return this.leadership;
  }

  get stateCache(): StateCache | undefined {
    return this.cache;
  }

  private ingest(): SensorStore {
    if (!this.sensorStore) throw new Error('sensor ingest not started');
    return this.sensorStore;
  }

  /** What the node believes about the room (every group's trusted view). */
  get sensors(): SensorStore | undefined {
    return this.sensorStore;
  }

  /**
   * Starts everything; on failure stops what started and throws a CoolctlError saying what to fix.
   * A stop() meanwhile (SIGTERM during start-up) makes it give up at its next step and throw
   * `stoppedDuringStart`: nothing it had not started yet is started after the stop.
   */
  start(): Promise<void> {
    this.starting ??= this.startUp();
    return this.starting;
  }

  /** Whether `err` (from start()) only says that stop() was called while it ran. */
  stoppedDuringStart(err: unknown): boolean {
    return this.startAbort.signal.aborted && err instanceof CoolctlError && err.code === ErrorCodes.STARTUP;
  }

  /**
   * `p`, unless stop() comes first: then a STARTUP error at once (a step waiting on an etcd that does
   * not answer must not hold the stop for its whole retry budget); `p` settles unobserved.
   */
  private step<T>(p: Promise<T>): Promise<T> {
    const signal = this.startAbort.signal;
    const stopped = () =>
      new CoolctlError(ErrorCodes.STARTUP, `controller ${this.config.node} was stopped during start-up`);
    if (signal.aborted) {
      p.catch(() => {});
      return Promise.reject(stopped());
    }
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => reject(stopped());
      signal.addEventListener('abort', onAbort, { once: true });
      p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  private async startUp(): Promise<void> {
    const { cfg } = this;
    this.groupIds.push(...cfg.site.controlGroups.map((g) => g.id));
    // Unprefixed, as every Prometheus client names them (process_*, nodejs_*): stock rules and
    // dashboards for Node processes work as they are.
    registerDefaultMetrics(this.registry);
    this.stopLoopDelay = registerEventLoopDelay(this.registry);
    registerBuildInfo(this.registry, VERSION);
    this.logWarnings(cfg);
    try {
      await this.step(prepareDataDir(cfg));
      this.startSensors();
      const metrics = new DeviceMetrics(this.registry);
      this.deviceMetrics = metrics;
      // Not raced against a stop: a unit opened after the teardown would keep reconnecting.
      for (const ahu of cfg.site.airHandlers) {
        await this.openDevice(ahu);
        await this.step(Promise.resolve());
      }
      if (cfg.peer && (cfg.secret || cfg.peerKeys)) {
        this.cache = new StateCache({
          node: cfg.node,
          cluster: cfg.cluster.prefix,
          secret: cfg.secret,
          peerKeys: cfg.peerKeys,
          listen: cfg.peer,
          logger: this.log,
          registry: this.registry,
          pingIntervalMs: cfg.cluster.keepaliveIntervalMs,
          // A dead link shows within a few TTLs; failsafe does not wait for it (its pings time out).
          idleTimeoutMs: cfg.cluster.leaseTtlS * 3000,
          connectTimeoutMs: cfg.cluster.etcdCallTimeoutMs,
          siteGroups: () => this.groupIds,
        });
        try {
          await this.step(this.cache.start());
        } catch (err) {
          throw new CoolctlError(
            ErrorCodes.STARTUP,
            `cannot serve the peer channel on ${cfg.peer.host}:${cfg.peer.port}: ${(err as Error).message} (free the port or change nodes.${cfg.node}.peer)`,
            { cause: err },
          );
        }
      }
      const cache = this.cache;
      const leadership =
        this.deps.leadership?.(cfg, this.registry, this.log) ??
        new EtcdLeadership({
          node: cfg.node,
          apiUrl: `${cfg.api.tls ? 'https' : 'http'}://${cfg.apiHost}:${cfg.apiPort}`,
          ...(cfg.peerUrl ? { peerUrl: cfg.peerUrl } : {}),
          configHash: await this.step(configHash(cfg.file, cfg.sitePath)),
          groups: cfg.site.controlGroups.map((g) => g.id),
          etcd: { hosts: cfg.cluster.etcd, ...cfg.etcdSecurity },
          prefix: cfg.cluster.prefix,
          leaseTtlS: cfg.cluster.leaseTtlS,
          keepaliveIntervalMs: cfg.cluster.keepaliveIntervalMs,
          safetyMarginMs: cfg.cluster.safetyMarginMs,
          etcdCallTimeoutMs: cfg.cluster.etcdCallTimeoutMs,
          rebalanceHoldMs: cfg.cluster.rebalanceHoldMs,
          dataDir: cfg.dataDir,
          logger: this.log,
          registry: this.registry,
          ...(cache && cfg.cluster.failsafe ? { failsafe: cache } : {}),
        });
      this.leadership = leadership;
      if (cache) {
        leadership.on('members', (members: Member[]) => cache.setMembers(members));
        cache.setLeaderView(memoizedLeaderView(() => leadership.groups()));
      }
      for (const g of cfg.site.controlGroups) this.drivers.set(g.id, this.newDriver(g));
      this.processValues = new ProcessValues(this.registry, {
        node: cfg.node,
        site: () => this.config.site,
        leadership: () => this.leadership,
        drivers: this.drivers,
        devices: this.devices,
        sensors: this.sensorView,
      });
      const etcdSettings = {
        hosts: cfg.cluster.etcd,
        callTimeoutMs: cfg.cluster.etcdCallTimeoutMs,
        ...cfg.etcdSecurity,
      };
      const etcd = createEtcdClient(etcdSettings);
      const controlPlaneLog = this.log.child({ component: 'control-plane' });
      const givenUp = watchStreamsGivenUp(this.registry, 'control-plane');
      const kv = new EtcdPrefixKv(etcd, cfg.cluster.etcdCallTimeoutMs, {
        newClient: () =>
          createEtcdClient({
            ...etcdSettings,
            onWatchSilent: (silentMs) => {
              givenUp();
              controlPlaneLog.warn(
                { silentMs: Math.round(silentMs) },
                'watch stream silent (its etcd member does not answer): resuming it on another member',
              );
            },
          }),
        log: controlPlaneLog,
      });
      const auth = new AuthStore({
        kv,
        prefix: cfg.cluster.prefix,
        logger: this.log,
        registry: this.registry,
        leases: new EtcdTokenLeases({
          client: etcd,
          callTimeoutMs: cfg.cluster.etcdCallTimeoutMs,
          logger: this.log,
          registry: this.registry,
        }),
      });
      this.controlPlane = { etcd, auth };
      const etcdStartedAtMs = performance.now();
      await this.step(
        auth.start().catch((err: unknown) => {
          throw etcdStartError(err, cfg, performance.now() - etcdStartedAtMs);
        }),
      );
      if (cfg.api.bootstrapAdminFile && auth.empty) {
        // The file is needed now, and judged as the config check judges it: a problem with it is
        // the operator's to fix (exit 2), not a start-up failure to retry.
        const admin = await this.step(bootstrapAdminCheck(cfg.api.bootstrapAdminFile, { required: true }));
        if (admin.problems.length > 0)
          throw new ConfigError(
            cfg.file,
            admin.problems.map((p) => ({
              ...p,
              file: cfg.file,
              message: `the cluster has no API user yet, so this node creates the first admin from it, but ${p.message}`,
            })),
          );
        await this.step(auth.bootstrap(cfg.api.bootstrapAdminFile));
      }
      if (auth.empty)
        this.log.warn(
          'the cluster has no API user: nobody can sign in (set api.bootstrapAdminFile; docs/security.md)',
        );
      const audit = new AuditTrail({
        kv,
        prefix: cfg.cluster.prefix,
        logger: this.log,
        registry: this.registry,
      });
      this.controlPlane.audit = audit;
      this.alarms = createAlarms({
        node: cfg.node,
        etcd,
        prefix: cfg.cluster.prefix,
        callTimeoutMs: cfg.cluster.etcdCallTimeoutMs,
        leadership,
        drivers: this.drivers,
        devices: this.devices,
        sensors: () => this.sensorStore,
        config: () => ({
          site: this.config.site,
          sitePath: this.config.sitePath,
          nodes: Object.keys(this.config.nodes),
          mqtt: this.config.mqtt,
        }),
        apiUrl: `${cfg.api.tls ? 'https' : 'http'}://${cfg.apiHost}:${cfg.apiPort}`,
        logger: this.log,
        registry: this.registry,
      });
      if (cfg.api.tls) this.apiTls = await this.step(loadApiTls(cfg, this.log));
      this.api = await this.step(
        buildApp({
          auth,
          audit,
          alarms: this.alarms.engine,
          ...(this.apiTls ? { https: this.apiTls.httpsOptions() } : {}),
          security: {
            secureCookies: !!this.apiTls,
            metricsAuth: cfg.api.metricsAuth,
            sessionTtlS: cfg.api.sessionTtlS,
            signInsPerMinute: cfg.api.signInsPerMinute,
            actionsPerMinute: cfg.api.actionsPerMinute,
          },
          node: cfg.node,
          version: VERSION,
          leadership,
          registry: this.registry,
          groups: this.groupIds,
          drivers: this.drivers,
          ...(cache ? { cache } : {}),
          sensors: this.sensorView,
          loops: () => this.health(),
          site: cfg.site,
          devices: this.devices,
          logger: this.log,
          startedAtMs: Date.now(),
        }),
      );
      try {
        this.apiUrl = await this.step(this.api.listen({ host: cfg.apiHost, port: cfg.apiPort }));
        if (this.apiTls) this.apiTls.attach(this.api.server as unknown as SecureContextTarget);
      } catch (err) {
        throw new CoolctlError(
          ErrorCodes.STARTUP,
          `cannot serve the API on ${cfg.apiHost}:${cfg.apiPort}: ${(err as Error).message} (free the port or change nodes.${cfg.node}.api)`,
          { cause: err },
        );
      }
      const place = { prefix: cfg.cluster.prefix, node: cfg.node };
      const leadershipStartedAtMs = performance.now();
      await this.step(
        leadership
          .start(
            AbortSignal.any([
              AbortSignal.timeout(Math.max(10_000, cfg.cluster.leaseTtlS * 3000)),
              this.startAbort.signal,
            ]),
          )
          .catch(async (err: unknown) => {
            const triedMs = performance.now() - leadershipStartedAtMs;
            // etcd answers but takes no writes (no lease, no member record): say so, not "check
            // that etcd runs". One question, only when the start failed on etcd.
            if (
              isEtcdStartFailure(err) &&
              (await etcdRefusesWrites(etcd, place, cfg.cluster.etcdCallTimeoutMs))
            )
              throw etcdNoSpaceAtStart(err, cfg);
            throw etcdStartError(err, cfg, triedMs);
          }),
      );
      cache?.setMembers(leadership.members());
      for (const d of this.drivers.values()) d.start();
      this.alarms.engine.start();
      this.processValues.start();
      this.log.info(
        { api: this.apiUrl, groups: this.drivers.size, units: this.devices.size },
        'controller started',
      );
    } catch (err) {
      await this.teardown();
      if (this.startAbort.signal.aborted)
        throw new CoolctlError(ErrorCodes.STARTUP, `controller ${cfg.node} was stopped during start-up`, {
          cause: err,
        });
      if (err instanceof CoolctlError) throw err;
      throw new CoolctlError(
        ErrorCodes.STARTUP,
        `controller ${cfg.node} could not start: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  /**
   * Hot reload (SIGHUP, or the config file changed): re-reads the config and the site, refuses it
   * whole if it is invalid or changes a start-only setting (the running config stays), else applies
   * the difference — units opened/closed, groups joined/left, changed groups' loops restarted (they
   * warm-start from their own process state) — without touching the loops that did not change.
   */
  reload(why = 'asked'): Promise<SiteDiff> {
    // A burst of asks (SIGHUPs, a file written in steps) is one more reload, not one each: the
    // queued one reads the files after every ask in the burst.
    if (this.queuedReload) return this.queuedReload;
    const run = async (): Promise<SiteDiff> => {
      this.log.info({ why }, 'reloading the config');
      // A renewed certificate is taken whatever else the reload finds; a broken one is refused
      // and the running one kept (ApiTls logs which).
      await this.apiTls?.reload().catch(() => {});
      let next: ControllerConfig;
      try {
        next = await loadControllerConfig(this.config.file, this.config.node);
        const refused = restartOnlyChanges(this.config, next);
        if (refused.length > 0) throw new ConfigError(next.file, refused);
      } catch (err) {
        this.reloaded('refused');
        // Once, and bounded: the problems as data (the first ones, and how many in all), not again
        // as the error's text; a file with 300 000 bad racks is one short line.
        this.log.error(
          err instanceof ConfigError
            ? {
                problems: err.problems.slice(0, MAX_LISTED_PROBLEMS),
                ...problemCount(err.problems),
              }
            : { err: (err as Error).message },
          'config reload refused: the running config is kept',
        );
        throw err;
      }
      const old = this.config;
      const diff = diffSites(old.site, next.site, !sameMqttLink(old.mqtt, next.mqtt));
      // A new group's election needs a write: while etcd refuses writes it would be taken on with
      // nobody leading it (and its units moved out of driven groups). Refused whole, before any change.
      if (diff.addedGroups.length > 0 && (await this.etcdRefusesWrites()) === true) {
        this.reloaded('refused');
        this.log.error(
          { addedGroups: diff.addedGroups, remedy: ETCD_NO_SPACE_REMEDY },
          'config reload refused: the running config is kept: it adds groups, whose elections need etcd writes, and etcd refuses writes (database space exceeded); reload again once space is freed and the alarm disarmed',
        );
        throw new CoolctlError(
          ErrorCodes.ETCD_NO_SPACE,
          `config reload refused: it adds groups (${diff.addedGroups.join(', ')}) and etcd refuses writes (database space exceeded); ${ETCD_NO_SPACE_REMEDY}`,
          { retryable: true },
        );
      }
      this.logWarnings(next);
      // Published once the reload is taken; a refused write is retried by leadership until it lands.
      void configHash(next.file, next.sitePath).then((h) => this.leadership?.setConfigHash?.(h));
      if (isEmptyDiff(diff)) {
        this.config = next;
        this.reloaded('unchanged');
        this.log.info('config reloaded: nothing changed');
        return diff;
      }
      const restartGroups = new Set([...diff.removedGroups, ...diff.changedGroups]);
      for (const g of restartGroups) {
        this.drivers.get(g)?.stop();
        this.drivers.delete(g);
      }
      for (const g of diff.removedGroups) this.controlMetrics?.groupRemoved(g);
      for (const a of [...diff.removedAhus, ...diff.changedAhus]) {
        await this.devices
          .get(a)
          ?.close()
          .catch(() => {});
        this.devices.delete(a);
      }
      this.config = next;
      const ahus = new Map(next.site.airHandlers.map((a) => [a.id, a]));
      for (const a of [...diff.addedAhus, ...diff.changedAhus]) await this.openDevice(ahus.get(a)!);
      if (diff.sensorsChanged) {
        await Promise.allSettled([this.mqtt?.stop(), this.modbusSensors?.stop()]);
        this.mqtt = undefined;
        this.modbusSensors = undefined;
        SensorStore.unregisterMetrics(this.registry);
        this.startSensors(this.sensorStore);
      }
      const ids = next.site.controlGroups.map((g) => g.id);
      this.groupIds.splice(0, this.groupIds.length, ...ids);
      if (diff.addedGroups.length + diff.removedGroups.length > 0) this.leadership?.setGroups?.(ids);
      for (const g of next.site.controlGroups) {
        if (this.drivers.has(g.id)) continue;
        const d = this.newDriver(g);
        this.drivers.set(g.id, d);
        d.start();
      }
      this.reloaded('applied');
      this.log.info(diff, 'config reloaded and applied');
      return diff;
    };
    const p = (this.reloading ?? Promise.resolve())
      .catch(() => {})
      .then(() => {
        this.queuedReload = undefined;
        return run();
      });
    this.queuedReload = p;
    this.reloading = p;
    return p;
  }

  /** Whether etcd refuses writes for lack of space (one question); null: no answer, or no etcd here. */
  private etcdRefusesWrites(): Promise<boolean | null> {
    const etcd = this.controlPlane?.etcd;
    if (!etcd) return Promise.resolve(null);
    const { cluster } = this.config;
    return etcdRefusesWrites(
      etcd,
      { prefix: cluster.prefix, node: this.config.node },
      cluster.etcdCallTimeoutMs,
    );
  }

  private newDriver(g: ControlGroup): GroupDriver {
    const { cfg } = this;
    this.controlMetrics ??= new ControlMetrics(this.registry);
    this.controlMetrics.groupAdded(g.id);
    const units = cfg.site.airHandlers.filter((a) => g.airHandlers.includes(a.id));
    const control = {
      config: groupControlConfig(cfg.site, g.id, {
        ...(g.tuning ? { tuning: g.tuning } : {}),
        ...(g.influence ? { influence: g.influence } : {}),
      }),
      sensors: this.sensorView,
      neighbours: ownValue(neighbourGroups(cfg.site), g.id) ?? [],
    };
    return new GroupDriver(g, this.devices, this.leadership!, {
      periodMs: cfg.periodMs,
      logger: this.log.child({ component: 'driver' }),
      pullTimeoutMs: cfg.cluster.pullTimeoutMs,
      // The undriven bound stays inside the tightest watchdog of the group's units.
      unitWatchdogMs: Math.min(...units.map((a) => a.watchdogS ?? 30)) * 1000,
      minApplyDelayMs: units.length > 0 ? Math.min(...units.map((a) => maxApplyDelayMs(a.client))) : 0,
      ...(this.cache ? { store: this.cache } : {}),
      metrics: this.controlMetrics,
      ...(this.deps.beforeStep ? { beforeStep: this.deps.beforeStep } : {}),
      control: {
        ...control,
        learner: learnerFor(cfg.site, control.config, g.influence ? { influence: g.influence } : {}),
      },
    });
  }

  private async openDevice(ahu: AirHandler): Promise<void> {
    const { cfg } = this;
    const device = await createDevice(ahu, {
      logger: this.log, // each adapter names its unit and protocol in its own child logger
      metrics: this.deviceMetrics!,
      pkiDir: `${cfg.dataDir}/opcua-pki`,
      clientName: `coolctl-${cfg.node}`,
    });
    this.devices.set(ahu.id, device);
    // Start connecting now (an OPC-UA session takes a while); a unit that is down is not a start-up
    // failure: the adapter keeps reconnecting in the background and the loop sees it as lost.
    device
      .open()
      .catch((err: unknown) =>
        this.log.warn(
          { ahu: ahu.id, err: (err as Error).message },
          'unit not reachable yet; reconnecting in the background',
        ),
      );
  }

  /**
   * Every node ingests every sensor: whichever groups it comes to lead, its view is warm. A reload
   * hands in the store it replaces (`prev`): the new one starts from what it knew, before any
   * source can feed it, or every group would be blind until each node reported again.
   */
  private startSensors(prev?: SensorStore): void {
    const { cfg } = this;
    const store = new SensorStore(cfg.site, {
      timeScale: cfg.timeScale,
      logger: this.log.child({ component: 'sensors' }),
      registry: this.registry,
    });
    if (prev) store.carryOver(prev);
    this.sensorStore = store;
    const mqttGateways = cfg.site.gateways.filter((g) => (g.transport ?? 'mqtt') === 'mqtt');
    if (mqttGateways.length > 0) {
      if (cfg.mqtt) {
        this.mqtt = new MqttSource(cfg.site, store, {
          url: cfg.mqtt.url,
          username: cfg.mqtt.username,
          password: cfg.mqtt.password,
          tls: cfg.mqtt.tls,
          clientId: `coolctl-${cfg.node}`,
          logger: this.log.child({ component: 'mqtt' }),
          registry: this.registry,
        });
        this.mqtt.start();
      } else {
        this.log.warn(
          { gateways: mqttGateways.map((g) => g.id) },
          'the site has MQTT gateways but sensors.mqttUrl is not set: their sensors stay unknown (groups blind)',
        );
      }
    }
    if (cfg.site.gateways.some((g) => g.transport === 'modbus-tcp')) {
      this.modbusSensors = new ModbusSource(cfg.site, store, {
        timeScale: cfg.timeScale,
        logger: this.log.child({ component: 'modbus-sensors' }),
        registry: this.registry,
      });
      this.modbusSensors.start();
    }
  }

  /**
   * Whether every loop of the node still runs (GET /healthz, and the systemd watchdog's pings): each group's control loop ticked within
   * three periods (at least 2 s), the leadership decision loop finished a pass within max(10 s, 3 TTL), and the
   * sensor ingest the site needs is running.
   */
  health(): LoopHealthReport {
    const { cfg } = this;
    const mqttGateways = cfg.site.gateways.some((g) => (g.transport ?? 'mqtt') === 'mqtt');
    return checkLoops(
      nodeLoopProbes({
        drivers: this.drivers.values(),
        periodMs: cfg.periodMs,
        leadership: this.leadership,
        leaseTtlS: cfg.cluster.leaseTtlS,
        mqtt: cfg.mqtt && mqttGateways ? () => this.mqtt?.running ?? false : undefined,
        modbus: cfg.site.gateways.some((g) => g.transport === 'modbus-tcp')
          ? () => this.modbusSensors?.polling ?? false
          : undefined,
      }),
    );
  }

  /**
   * Resigns every group (the others take over at once; the last node first hands its units to local
   * control), then closes the rest. During start-up: the start gives up at its next step and takes
   * down what it had started; nothing is started after this.
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.startAbort.abort();
      await this.starting?.catch(() => {});
      // A reload half applied (drivers stopped, units reopening) finishes first: taking the node
      // down under it would leave what it opens after the teardown running.
      await this.reloading?.catch(() => {});
      await this.teardown();
    })();
    return this.stopping;
  }

  /** Takes down whatever is up, once (from stop(), or from a start-up that failed). */
  private teardown(): Promise<void> {
    this.tearingDown ??= (async () => {
      for (const d of this.drivers.values()) d.stop();
      this.processValues?.stop();
      // The last node standing hands its units to local control before it lets go; otherwise the
      // others take over at once and the units never notice.
      const others = this.leadership?.members().filter((m) => m.node !== this.config.node) ?? [];
      if (this.leadership && others.length === 0) {
        await Promise.allSettled([...this.drivers.values()].map((d) => d.releaseAll(2000)));
      }
      await this.leadership?.stop().catch((err: unknown) => this.log.warn({ err }, 'resign failed'));
      await this.cache?.stop().catch(() => {});
      await Promise.allSettled([this.mqtt?.stop(), this.modbusSensors?.stop()]);
      await this.api?.close().catch(() => {});
      await this.alarms?.stop();
      await this.controlPlane?.audit?.stop();
      await this.controlPlane?.auth.stop();
      this.controlPlane?.etcd.close();
      await Promise.allSettled([...this.devices.values()].map((d) => d.close()));
      this.stopLoopDelay?.();
      this.log.info('controller stopped');
    })();
    return this.tearingDown;
  }
}

/** A plain record's own value for a key from a file: never Object.prototype's (`constructor`, `toString`). */
function ownValue<T>(record: Record<string, T>, key: string): T | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}

/**
 * The API's certificate, loaded as the config check read it; a file that changed meanwhile into
 * something it cannot serve is still the operator's to fix (exit 2), named by its setting.
 */
async function loadApiTls(cfg: ControllerConfig, logger: Logger): Promise<ApiTls> {
  try {
    return await ApiTls.load(cfg.api.tls!, { logger });
  } catch (err) {
    if (!(err instanceof CoolctlError) || err.code !== ErrorCodes.CONFIG_INVALID) throw err;
    throw new ConfigError(
      cfg.file,
      [
        {
          file: cfg.file,
          path: '/api/tls',
          message: err.message,
          allowed: 'a PEM certificate chain (leaf first) and its private key (mode 600)',
        },
      ],
      { cause: err },
    );
  }
}

/** What the start writes to the data dir (OPC-UA PKI, lock, lease id: ~20 KiB), with room to spare. */
const DATA_DIR_PROBE_BYTES = 64 * 1024;

/**
 * The data dir made and proven writable before anything else starts: a path that is a file, a
 * folder the service user cannot write, or a full disk is named with its setting and what to do,
 * not found later as a bare errno in the middle of the start. The probe is as large as what the
 * start writes there, so a nearly full disk fails here too, not as a failed lock or certificate.
 */
async function prepareDataDir(cfg: ControllerConfig): Promise<void> {
  const probe = join(cfg.dataDir, `.write-test.${randomBytes(4).toString('hex')}`);
  try {
    await mkdir(cfg.dataDir, { recursive: true });
    await writeFile(probe, Buffer.alloc(DATA_DIR_PROBE_BYTES));
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new CoolctlError(
      ErrorCodes.STARTUP,
      `cannot use the data dir ${cfg.dataDir} (dataDir in ${cfg.file}): ${e.code ?? e.message}. ` +
        'It must be a directory this service user can write, on a file system with free space ' +
        '(the unit’s StateDirectory=coolctl/%i makes /var/lib/coolctl/NODE; docs/daemon.md)',
      { cause: err },
    );
  } finally {
    await rm(probe, { force: true }).catch(() => {});
  }
}

/** Codes of an etcd that did not answer (or not as the settings expect) during start-up. */
const ETCD_START_CODES: ReadonlySet<string> = new Set([
  ErrorCodes.ETCD_UNAVAILABLE,
  ErrorCodes.ETCD_TIMEOUT,
  ErrorCodes.CLUSTER_ABORTED,
]);

/** Whether a start-up failure is etcd's (unreachable, slow, or refusing writes), not ours. */
function isEtcdStartFailure(err: unknown): boolean {
  return (err instanceof CoolctlError && ETCD_START_CODES.has(err.code)) || isEtcdNoSpace(err);
}

/**
 * etcd answers but refuses writes for lack of space, so this node can take no lease: the cause and
 * the remedy (exit 1, like an unreachable etcd; systemd's restart joins once space is freed).
 */
function etcdNoSpaceAtStart(err: unknown, cfg: ControllerConfig): CoolctlError {
  return new CoolctlError(
    ErrorCodes.ETCD_NO_SPACE,
    `cannot join the cluster: etcd (${cfg.cluster.etcd.join(', ')}) refuses writes: database space exceeded ` +
      `(its NOSPACE alarm), so this node can take no lease; ${ETCD_NO_SPACE_REMEDY}; then start the node ` +
      'again (docs/leadership.md, "etcd out of space")',
    { cause: err },
  );
}

/**
 * An etcd that could not be reached at start, as the operator can act on it: which setting, in
 * which file, which addresses, how long it was tried, and what to check. Still a start-up failure
 * (exit 1, docs/daemon.md): etcd may come back, and systemd's restart tries again. Other errors
 * (a data dir in use, a node name taken) pass as they are.
 */
export function etcdStartError(err: unknown, cfg: ControllerConfig, triedMs: number): unknown {
  if (err instanceof CoolctlError && !ETCD_START_CODES.has(err.code)) return err;
  const tls = cfg.etcdSecurity.tls ? ', TLS with cluster.etcd.tls' : '';
  const auth = cfg.etcdSecurity.auth ? `, user ${cfg.etcdSecurity.auth.username}` : '';
  return new CoolctlError(
    ErrorCodes.STARTUP,
    `cannot use etcd: cluster.etcd in ${cfg.file} names ${cfg.cluster.etcd.join(', ')}${tls}${auth}; ` +
      `tried for ${Math.round(triedMs / 1000)} s, last: ${(err as Error).message}. ` +
      'Check that the etcd members run and listen on those addresses (systemctl status etcd; ' +
      'etcdctl --endpoints=… endpoint health), that this node reaches them (firewall, routes), and that ' +
      'the URLs’ scheme, the TLS files and the user match the members (docs/daemon.md, "Links")',
    { cause: err },
  );
}
