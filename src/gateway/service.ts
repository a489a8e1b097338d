// `coolctl gateway` as a component that starts and stops (main.ts owns signals and sd_notify): the
// epoch state file, the lines, the Modbus TCP listener for controllers and the HTTP side. start()
// opens them in that order — no controller is answered before the epochs are loaded — and stop()
// closes them in reverse, once, bounded.
import type { Logger } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { registerBuildInfo } from '../metrics/build-info.ts';
import { VERSION } from '../version.ts';
import type { GatewayConfig } from './config.ts';
import { EpochStore } from './epoch-store.ts';
import { ExclusiveClaims } from './exclusive.ts';
import { FencingGateway } from './gateway.ts';
import { GatewayHttp } from './http.ts';
import { GatewayMetrics } from './metrics.ts';
import { ModbusListener } from './modbus-listener.ts';
import type { Transport } from './transport.ts';

export class GatewayService {
  readonly registry = new Registry();
  private readonly cfg: GatewayConfig;
  private readonly log: Logger;
  private readonly transports: Map<string, Transport> | undefined;
  private gateway: FencingGateway | undefined;
  private listener: ModbusListener | undefined;
  private http: GatewayHttp | undefined;
  private readonly claims: ExclusiveClaims;
  private stopping: Promise<void> | undefined;
  /** Where controllers and Prometheus reach it, once started. */
  modbus = { host: '', port: 0 };
  httpUrl = '';

  constructor(cfg: GatewayConfig, deps: { logger: Logger; transports?: Map<string, Transport> }) {
    this.cfg = cfg;
    this.log = deps.logger;
    this.transports = deps.transports;
    this.claims = new ExclusiveClaims(cfg.name);
  }

  async start(): Promise<void> {
    collectDefaultMetrics({ register: this.registry });
    registerBuildInfo(this.registry, VERSION);
    const metrics = new GatewayMetrics(this.registry);
    // Before anything is read or opened: a second gateway on the same file or line stops here.
    await this.claims.stateFile(this.cfg.stateFile);
    for (const l of this.cfg.lines)
      if (l.serial && !this.transports?.has(l.name)) await this.claims.serialLine(l.serial.path, l.name);
    const { store, found } = await EpochStore.open(this.cfg.stateFile);
    const epochs = Object.fromEntries(store.entries().map(([id, e]) => [id, e.toString()]));
    if (found) this.log.info({ file: this.cfg.stateFile, epochs }, 'epoch state loaded');
    else
      this.log.warn({ file: this.cfg.stateFile }, 'no epoch state file: first start, every unit at epoch 0');
    const gateway = new FencingGateway(this.cfg, store, {
      logger: this.log,
      metrics,
      ...(this.transports ? { transports: this.transports } : {}),
    });
    this.gateway = gateway;
    await gateway.open();
    const listener = new ModbusListener(
      {
        host: this.cfg.listen.host,
        port: this.cfg.listen.port,
        maxConnections: this.cfg.maxConnections,
        maxConnectionsPerHost: this.cfg.maxConnectionsPerHost,
        idleTimeoutMs: this.cfg.idleTimeoutMs,
        idleDisplaceAfterMs: this.cfg.idleDisplaceAfterMs,
      },
      {
        handle: (unitId, pdu, client) => gateway.handle(unitId, pdu, client),
        refuse: (reason, client, detail) => gateway.refuse(reason, client, detail),
        idle: (client, detail) => gateway.idleClosed(client, detail),
        connections: (n) => metrics.connections.set(n),
      },
      this.log,
    );
    this.listener = listener;
    this.modbus = await listener.start();
    const startedAtMs = performance.now();
    this.http = new GatewayHttp({
      logger: this.log,
      registry: this.registry,
      gateway: this.cfg.name,
      startedAtMs,
      health: () => gateway.health(),
      refused: metrics.httpRefused,
    });
    const url = await this.http.listen(this.cfg.http.host, this.cfg.http.port);
    this.httpUrl = url;
    this.log.info(
      {
        gateway: this.cfg.name,
        modbus: `${this.modbus.host}:${this.modbus.port}`,
        http: url,
        units: this.cfg.units.length,
      },
      'gateway running',
    );
  }

  /** For the watchdog: undefined while every line moves. */
  wedged(): string | undefined {
    return this.gateway?.wedged();
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await this.listener?.stop();
      await this.gateway?.stop();
      await this.http?.close();
      await this.claims.release();
      this.log.info({ gateway: this.cfg.name }, 'gateway stopped');
    })();
    return this.stopping;
  }
}
