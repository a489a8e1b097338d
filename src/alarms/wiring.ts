// How a controller node puts its alarms together: the etcd store on the control plane's client,
// the notifier built from the site's `alarms.notifications` (rebuilt when a reload changes that
// section, handing on what was not delivered yet; the webhook reads its header and CA files),
// and the engine. The daemon calls
// createAlarms() once and start()/stop() on what it returns (src/daemon/controller.ts).
import { dirname, resolve } from 'node:path';
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { EtcdSpaceProbe } from '../cluster/etcd/space-probe.ts';
import type { Leadership } from '../cluster/leadership.ts';
import type { MqttLink } from '../config/link-secrets.ts';
import type { Site } from '../config/site-schema.ts';
import type { GroupDriver } from '../control/group-driver.ts';
import type { DeviceIo } from '../devices/device-io.ts';
import type { SensorStore } from '../sensors/sensor-store.ts';
import { AlarmEngine } from './alarm-engine.ts';
import { AlarmStore } from './alarm-store.ts';
import { Notifier, SHUTDOWN_DRAIN_MS } from './notify.ts';

export interface AlarmWiring {
  node: string;
  etcd: Etcd3;
  prefix: string;
  callTimeoutMs: number;
  leadership: Leadership;
  drivers: ReadonlyMap<string, GroupDriver>;
  devices: ReadonlyMap<string, DeviceIo>;
  sensors: () => SensorStore | undefined;
  /** The running config (replaced on reload). */
  config: () => { site: Site; sitePath: string; nodes: readonly string[]; mqtt: MqttLink | undefined };
  /** This node's API, for the alerts' generatorURL. */
  apiUrl: string;
  logger: Logger;
  registry: Registry;
}

/** The notifier for the running site's `alarms.notifications`, rebuilt when that section changes. */
export class NotifierHolder {
  private key: string | undefined;
  private current: Notifier | undefined;
  private readonly w: Pick<AlarmWiring, 'node' | 'config' | 'apiUrl' | 'logger' | 'registry'>;
  private readonly log: Logger;

  constructor(w: Pick<AlarmWiring, 'node' | 'config' | 'apiUrl' | 'logger' | 'registry'>) {
    this.w = w;
    this.log = w.logger.child({ component: 'alarm-notify' });
  }

  get(): Notifier | undefined {
    const cfg = this.w.config();
    const n = cfg.site.alarms?.notifications;
    const key = JSON.stringify([n ?? null, cfg.sitePath]);
    if (key === this.key) return this.current;
    this.key = key;
    const old = this.current;
    this.current = undefined;
    if (!n?.webhook && !n?.mqtt) {
      if (old) void old.stop();
      return undefined;
    }
    if (n.mqtt && !cfg.mqtt)
      this.log.error(
        'alarms.notifications.mqtt is set but the controller config names no broker (sensors.mqtt): no MQTT notifications',
      );
    this.current = new Notifier({
      logger: this.w.logger,
      registry: this.w.registry,
      site: cfg.site.site.id,
      generatorUrl: `${this.w.apiUrl}/api/v1/alarms?state=all`,
      ...(n.maxAttempts !== undefined ? { maxAttempts: n.maxAttempts } : {}),
      ...(n.webhook?.resendS !== undefined ? { firingHoldMs: n.webhook.resendS * 5000 } : {}),
      ...(n.webhook
        ? {
            webhook: {
              url: n.webhook.url,
              ...(n.webhook.headerFile !== undefined
                ? {
                    headerFile: {
                      name: n.webhook.headerName ?? 'Authorization',
                      file: resolve(dirname(cfg.sitePath), n.webhook.headerFile),
                    },
                  }
                : {}),
              ...(n.webhook.caFile !== undefined
                ? { caFile: resolve(dirname(cfg.sitePath), n.webhook.caFile) }
                : {}),
              ...(n.webhook.timeoutMs ? { timeoutMs: n.webhook.timeoutMs } : {}),
            },
          }
        : {}),
      ...(n.mqtt && cfg.mqtt
        ? {
            mqtt: {
              url: cfg.mqtt.url,
              topic: n.mqtt.topic,
              username: cfg.mqtt.username,
              password: cfg.mqtt.password,
              tls: cfg.mqtt.tls,
              clientId: `coolctl-${this.w.node}-alarms`,
            },
          }
        : {}),
    });
    this.log.info(
      { sinks: this.current.status().sinks.map((s) => `${s.name} ${s.target}`) },
      'alarm notifications configured',
    );
    // What the old sinks had not delivered yet goes on through the new ones, not lost to a reload.
    if (old) void old.handOver(this.current);
    return this.current;
  }

  /** The node is stopping: what waits is sent for a moment, then what is left is counted and said. */
  async stop(): Promise<void> {
    await this.current?.stop({ drainMs: SHUTDOWN_DRAIN_MS });
    this.current = undefined;
  }
}

export function createAlarms(w: AlarmWiring): { engine: AlarmEngine; stop(): Promise<void> } {
  const store = new AlarmStore({
    client: w.etcd,
    prefix: w.prefix,
    callTimeoutMs: w.callTimeoutMs,
    logger: w.logger,
    registry: w.registry,
  });
  const notifier = new NotifierHolder(w);
  const engine = new AlarmEngine({
    node: w.node,
    store,
    leadership: w.leadership,
    drivers: w.drivers,
    devices: w.devices,
    sensors: w.sensors,
    config: w.config,
    spaceProbe: new EtcdSpaceProbe({
      client: w.etcd,
      prefix: w.prefix,
      node: w.node,
      callTimeoutMs: w.callTimeoutMs,
      logger: w.logger,
      registry: w.registry,
    }),
    notifier: () => notifier.get(),
    resendMs: () => (w.config().site.alarms?.notifications?.webhook?.resendS ?? 60) * 1000,
    logger: w.logger,
    registry: w.registry,
  });
  return {
    engine,
    stop: async () => {
      await engine.stop();
      await notifier.stop();
    },
  };
}
