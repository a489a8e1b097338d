// One controller node: wires the config, the air-handler devices, the state cache (peer channel),
// leadership on etcd, a driver per control group, and the HTTP API, and takes them down again —
// once, in the right order.
// No `process` here (signals, exit codes and sd_notify belong to the entry point), so a test can
// run three of these in one process or the entry point can run one as a service.
import { mkdir } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { buildApi } from '../api/app.ts';
import { StateCache } from '../cache/state-cache.ts';
import { EtcdLeadership } from '../cluster/etcd-leadership.ts';
import type { Leadership, Member } from '../cluster/leadership.ts';
import type { ControllerConfig } from '../config/controller-config.ts';
import { GroupDriver } from '../control/group-driver.ts';
import { createDevice } from '../devices/create-device.ts';
import type { DeviceIo } from '../devices/device-io.ts';
import { DeviceMetrics } from '../devices/metrics.ts';
import { CoolctlError, ErrorCodes } from '../errors.ts';
import { ModbusSource } from '../sensors/modbus-source.ts';
import { MqttSource } from '../sensors/mqtt-source.ts';
import { SensorStore } from '../sensors/sensor-store.ts';

export const VERSION = '0.1.0';

export interface ControllerDeps {
  logger: Logger;
  /** Tests may hand in another Leadership; the daemon uses etcd. */
  leadership?: (cfg: ControllerConfig, registry: Registry, logger: Logger) => Leadership;
}

export class Controller {
  readonly cfg: ControllerConfig;
  readonly registry = new Registry();
  private readonly log: Logger;
  private readonly deps: ControllerDeps;
  private readonly devices = new Map<string, DeviceIo>();
  private readonly drivers = new Map<string, GroupDriver>();
  private leadership: Leadership | undefined;
  private cache: StateCache | undefined;
  private sensorStore: SensorStore | undefined;
  private mqtt: MqttSource | undefined;
  private modbusSensors: ModbusSource | undefined;
  private api: FastifyInstance | undefined;
  private stopping: Promise<void> | undefined;
  private apiUrl = '';

  constructor(cfg: ControllerConfig, deps: ControllerDeps) {
    this.cfg = cfg;
    this.deps = deps;
    // The entry point's logger already names the node; a test's may not.
    this.log = deps.logger.bindings().node === cfg.node ? deps.logger : deps.logger.child({ node: cfg.node });
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

  /** What the node believes about the room (every group's trusted view). */
  get sensors(): SensorStore | undefined {
    return this.sensorStore;
  }

  /** Starts everything; on failure stops what started and throws a CoolctlError saying what to fix. */
  async start(): Promise<void> {
    const { cfg } = this;
    collectDefaultMetrics({ register: this.registry, prefix: 'coolctl_process_' });
    try {
      await mkdir(cfg.dataDir, { recursive: true });
      this.startSensors();
      const metrics = new DeviceMetrics(this.registry);
      for (const ahu of cfg.site.airHandlers) {
        this.devices.set(
          ahu.id,
          await createDevice(ahu, {
            logger: this.log.child({ component: 'device', ahu: ahu.id }),
            metrics,
            pkiDir: `${cfg.dataDir}/opcua-pki`,
            clientName: `coolctl-${cfg.node}`,
          }),
        );
      }
      if (cfg.peer && cfg.secret) {
        this.cache = new StateCache({
          node: cfg.node,
          cluster: cfg.cluster.prefix,
          secret: cfg.secret,
          listen: cfg.peer,
          logger: this.log,
          registry: this.registry,
          pingIntervalMs: cfg.cluster.keepaliveIntervalMs,
          // A dead link shows within a few TTLs; failsafe does not wait for it (its pings time out).
          idleTimeoutMs: cfg.cluster.leaseTtlS * 3000,
          connectTimeoutMs: cfg.cluster.etcdCallTimeoutMs,
        });
        try {
          await this.cache.start();
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
          apiUrl: `http://${cfg.apiHost}:${cfg.apiPort}`,
          ...(cfg.peerUrl ? { peerUrl: cfg.peerUrl } : {}),
          groups: cfg.site.controlGroups.map((g) => g.id),
          etcd: { hosts: cfg.cluster.etcd },
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
      if (cache) leadership.on('members', (members: Member[]) => cache.setMembers(members));
      for (const g of cfg.site.controlGroups) {
        this.drivers.set(
          g.id,
          new GroupDriver(g, this.devices, leadership, {
            periodMs: cfg.periodMs,
            logger: this.log.child({ component: 'driver' }),
            pullTimeoutMs: cfg.cluster.pullTimeoutMs,
            ...(cache ? { store: cache } : {}),
          }),
        );
      }
      this.api = await buildApi({
        node: cfg.node,
        version: VERSION,
        leadership,
        registry: this.registry,
        groups: cfg.site.controlGroups.map((g) => g.id),
        drivers: this.drivers,
        ...(cache ? { cache } : {}),
        ...(this.sensorStore ? { sensors: this.sensorStore } : {}),
        logger: this.log,
        startedAtMs: Date.now(),
      });
      try {
        this.apiUrl = await this.api.listen({ host: cfg.apiHost, port: cfg.apiPort });
      } catch (err) {
        throw new CoolctlError(
          ErrorCodes.STARTUP,
          `cannot serve the API on ${cfg.apiHost}:${cfg.apiPort}: ${(err as Error).message} (free the port or change nodes.${cfg.node}.api)`,
          { cause: err },
        );
      }
      await leadership.start(AbortSignal.timeout(Math.max(10_000, cfg.cluster.leaseTtlS * 3000)));
      cache?.setMembers(leadership.members());
      for (const d of this.drivers.values()) d.start();
      this.log.info(
        { api: this.apiUrl, groups: this.drivers.size, units: this.devices.size },
        'controller started',
      );
    } catch (err) {
      await this.stop();
      if (err instanceof CoolctlError) throw err;
      throw new CoolctlError(
        ErrorCodes.STARTUP,
        `controller ${cfg.node} could not start: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  /** Every node ingests every sensor: whichever groups it comes to lead, its view is warm. */
  private startSensors(): void {
    const { cfg } = this;
    const store = new SensorStore(cfg.site, {
      timeScale: cfg.timeScale,
      logger: this.log.child({ component: 'sensors' }),
      registry: this.registry,
    });
    this.sensorStore = store;
    const mqttGateways = cfg.site.gateways.filter((g) => (g.transport ?? 'mqtt') === 'mqtt');
    if (mqttGateways.length > 0) {
      if (cfg.mqttUrl) {
        this.mqtt = new MqttSource(cfg.site, store, {
          url: cfg.mqttUrl,
          clientId: `coolctl-${cfg.node}`,
          logger: this.log.child({ component: 'mqtt' }),
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
      });
      this.modbusSensors.start();
    }
  }

  /** Whether every group's loop ran within three periods (what the systemd watchdog vouches for). */
  loopHealth(): { ok: boolean; why?: string } {
    const now = performance.now();
    const late = [...this.drivers.values()].filter((d) => now - d.lastTickAtMs > this.cfg.periodMs * 3);
    if (late.length === 0) return { ok: true };
    return {
      ok: false,
      why: `no period for ${late.map((d) => d.group).join(', ')} in ${this.cfg.periodMs * 3} ms`,
    };
  }

  /** Resigns every group first (the others take over at once), then closes the API and devices. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      for (const d of this.drivers.values()) d.stop();
      await this.leadership?.stop().catch((err: unknown) => this.log.warn({ err }, 'resign failed'));
      await this.cache?.stop().catch(() => {});
      await Promise.allSettled([this.mqtt?.stop(), this.modbusSensors?.stop()]);
      await this.api?.close().catch(() => {});
      await Promise.allSettled([...this.devices.values()].map((d) => d.close()));
      this.log.info('controller stopped');
    })();
    return this.stopping;
  }
}
