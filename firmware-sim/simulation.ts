// The simulated data hall: wires the thermal model, the air handlers (each behind its real
// Modbus TCP, Modbus RTU or OPC-UA server), the sensor mesh with its MQTT gateways, the write journal and the
// faults into one thing that starts, ticks and stops. Sim time runs `timeScale` × wall time;
// device watchdogs and network timing stay on the wall clock, as on real equipment.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { NATIVE_PROFILE, type Site } from '../src/config/site-schema.ts';
import { BadRequestError, CoolctlError, ErrorCodes } from '../src/errors.ts';
import type { AhuStatus } from '../src/unit-contract.ts';
import { ModbusDevices, type SharedLineState } from './ahu/modbus-devices.ts';
import type { ModbusTcpBounds } from './ahu/modbus-tcp-listener.ts';
import type { OpcuaAhuServer } from './ahu/opcua-server.ts';
import type { ProfileQuirks } from './ahu/profile-pdu.ts';
import { profilePointOf, SimAirHandler } from './ahu/unit.ts';
import { DEFAULT_NO_DATA_WORD, type Fault } from './faults.ts';
import { Journal } from './journal.ts';
import {
  type BrokerCounters,
  type BrokerHandle,
  type BrokerSecurity,
  type BrokerSecurityFiles,
  loadBrokerSecurity,
  startBroker,
} from './mesh/broker.ts';
import { ModbusGatewayServer } from './mesh/modbus-gateway.ts';
import { SensorMesh } from './mesh/sensor-mesh.ts';
import { ThermalModel } from './thermal/model.ts';

export interface SimulationOptions {
  site: Site;
  seed?: number;
  /** Sim seconds per wall second; 1 = real time. */
  timeScale?: number;
  /** Wall ms between ticks. */
  tickMs?: number;
  /** Bind every device and the broker on an OS-chosen port (tests run in parallel). */
  ephemeralPorts?: boolean;
  /** Publish to this broker instead of starting the embedded one. */
  mqttUrl?: string;
  /** Where the embedded broker listens; default 127.0.0.1:1883. */
  mqttPort?: number;
  /**
   * The embedded broker's TLS listener and required user (docs/sim-api.md#a-secured-mqtt-broker);
   * the simulated gateways log in with them. With `mqttUrl`, only the user applies (a broker of
   * one's own has its own certificate).
   */
  mqttSecurity?: BrokerSecurityFiles | undefined;
  profile?: 'constant' | 'daily';
  /**
   * Every Modbus TCP listener's (units, TCP→RTU gateways, sensor gateways) connection cap and
   * timeouts; defaults in ./ahu/modbus-tcp-listener.ts (docs/modbus-register-map.md#bad-frames).
   */
  modbusTcp?: ModbusTcpBounds;
  /** Where units' `profile: NAME` files are (default config/profiles). */
  profilesDir?: string;
  /** Start-up behaviour of vendor-profile units (not ready, no data, slow first reads). */
  profileQuirks?: Partial<ProfileQuirks>;
  logger: Logger;
}

export interface AhuState extends AhuStatus {
  endpoint: string;
}

/** Largest physics step; longer sim intervals are sub-stepped so the model stays accurate. */
const MAX_STEP_S = 5;
const SETTLE_STEP_S = 10;

export class Simulation {
  readonly site: Site;
  readonly journal: Journal;
  readonly model: ThermalModel;
  readonly units = new Map<string, SimAirHandler>();
  readonly timeScale: number;
  private readonly opts: SimulationOptions;
  private readonly log: Logger;
  private readonly modbus: ModbusDevices;
  private readonly opcua: { server: OpcuaAhuServer; ahuIds: string[]; url: string }[] = [];
  private readonly endpoints = new Map<string, string>();
  private broker: BrokerHandle | undefined;
  private brokerSecurity: BrokerSecurity = {};
  private readonly brokerCounters: BrokerCounters = {
    authRefused: 0,
    tlsRefused: 0,
    slowClientsDropped: 0,
    connectionsRefused: 0,
  };
  private brokerRestarting = false;
  private mesh: SensorMesh | undefined;
  private readonly gatewayServers = new Map<string, ModbusGatewayServer>();
  private readonly gatewayEndpoints = new Map<string, { host: string; port: number }>();
  private mqttUrl = '';
  private timer: NodeJS.Timeout | undefined;
  private simMs = 0;
  private lastWallMs = 0;
  private readonly activeFaults = new Map<string, Fault>();
  private stopping: Promise<void> | undefined;
  private readonly loopDelay = monitorEventLoopDelay({ resolution: 10 });
  readonly counters = { ticks: 0, tickErrors: 0, faultsApplied: 0, faultRequestsRejected: 0 };

  constructor(opts: SimulationOptions) {
    this.opts = opts;
    this.site = opts.site;
    this.timeScale = opts.timeScale ?? 1;
    this.log = opts.logger;
    this.journal = new Journal(() => this.simMs);
    this.model = new ThermalModel(opts.site, { seed: opts.seed ?? 1, profile: opts.profile ?? 'constant' });
    for (const ahu of opts.site.airHandlers) this.units.set(ahu.id, new SimAirHandler(ahu, this.journal));
    this.modbus = new ModbusDevices(this.units, {
      ephemeralPorts: opts.ephemeralPorts ?? false,
      ...(opts.modbusTcp ? { modbusTcp: opts.modbusTcp } : {}),
      ...(opts.profilesDir ? { profilesDir: opts.profilesDir } : {}),
      ...(opts.profileQuirks ? { profileQuirks: opts.profileQuirks } : {}),
      logger: this.log,
    });
  }

  get simTimeMs(): number {
    return this.simMs;
  }

  /** Where each Modbus TCP sensor gateway really listens (ephemeral ports differ from the site file). */
  modbusGatewayEndpoints(): Record<string, { host: string; port: number }> {
    return Object.fromEntries(this.gatewayEndpoints);
  }

  get brokerUrl(): string {
    return this.mqttUrl;
  }

  /** Starts every server; on failure stops what had started and rethrows. */
  async start(): Promise<void> {
    try {
      const security = this.opts.mqttSecurity ?? {};
      if (this.opts.mqttUrl && (security.certFile ?? security.keyFile ?? security.caFile) !== undefined)
        throw new CoolctlError(
          ErrorCodes.STARTUP,
          'MQTT certificate, key and CA files are for the embedded broker; an external broker (mqttUrl) has its own',
        );
      // Before any device listens: a missing key or password file fails fast, with nothing to undo.
      this.brokerSecurity = await loadBrokerSecurity(security);
      await this.startDevices();
      if (this.opts.mqttUrl) {
        this.mqttUrl = this.opts.mqttUrl;
      } else {
        this.broker = await startBroker({
          host: '127.0.0.1',
          port: this.opts.ephemeralPorts ? 0 : (this.opts.mqttPort ?? 1883),
          security: this.brokerSecurity,
          counters: this.brokerCounters,
          logger: this.log.child({ component: 'broker' }),
        });
        this.mqttUrl = this.broker.url;
      }
      const { auth, tls } = this.brokerSecurity;
      this.mesh = new SensorMesh(this.site, this.model.readRack, {
        brokerUrl: this.mqttUrl,
        brokerLogin: {
          ...(auth ? { username: auth.username, password: auth.password } : {}),
          ...(tls ? { ca: tls.ca } : {}),
        },
        seed: this.opts.seed ?? 1,
        simNowMs: () => this.simMs,
        logger: this.log.child({ component: 'mesh' }),
      });
      await this.mesh.start();
      for (const g of this.site.gateways) {
        if (g.transport !== 'modbus-tcp' || !g.endpoint) continue;
        const server = new ModbusGatewayServer(this.site, g.id, this.mesh, {
          ...this.opts.modbusTcp,
          host: g.endpoint.host,
          port: this.opts.ephemeralPorts ? 0 : g.endpoint.port,
          logger: this.log.child({ component: 'modbus-gateway' }),
        });
        this.gatewayServers.set(g.id, server);
        this.gatewayEndpoints.set(g.id, await server.start());
      }
    } catch (err) {
      await this.stop();
      throw err;
    }
    // Settle the physics so the hall starts near its local-control steady state, not from cold:
    // 30 sim minutes is > 20 of the model's longest time constants.
    this.advance(1800, SETTLE_STEP_S);
    this.simMs = 0;
    this.model.resetEnergy();
    this.lastWallMs = performance.now();
    this.timer = setInterval(() => this.tick(), this.opts.tickMs ?? 100);
    this.loopDelay.enable();
  }

  private async startDevices(): Promise<void> {
    await this.modbus.start(this.site.airHandlers);
    for (const ahu of this.site.airHandlers) {
      const endpoint = this.modbus.endpoint(ahu.id);
      if (endpoint) this.endpoints.set(ahu.id, endpoint);
    }
    const opcuaByUrl = new Map<string, SimAirHandler[]>();
    for (const ahu of this.site.airHandlers) {
      const unit = this.units.get(ahu.id)!;
      if (ahu.protocol === 'opcua') {
        const list = opcuaByUrl.get(ahu.endpoint.url) ?? [];
        list.push(unit);
        opcuaByUrl.set(ahu.endpoint.url, list);
      }
    }
    // node-opcua is large (tens of MB resident): load it only for a site that has OPC-UA units.
    if (opcuaByUrl.size === 0) return;
    const { OpcuaAhuServer: Server } = await import('./ahu/opcua-server.ts');
    for (const [url, units] of opcuaByUrl) {
      const u = new URL(url.replace(/^opc\.tcp:/, 'http:'));
      const server = new Server(units, {
        host: u.hostname,
        port: this.opts.ephemeralPorts ? 0 : Number(u.port || 4840),
        resourcePath: u.pathname,
        logger: this.log.child({ component: 'opcua' }),
        ...(this.opts.profilesDir ? { profilesDir: this.opts.profilesDir } : {}),
        ...(this.opts.profileQuirks ? { profileQuirks: this.opts.profileQuirks } : {}),
      });
      const entry = { server, ahuIds: units.map((x) => x.id), url };
      this.opcua.push(entry);
      const { endpointUrl } = await server.start();
      entry.url = endpointUrl;
      for (const unit of units) this.endpoints.set(unit.id, endpointUrl);
    }
  }

  /** Steps physics by `simSeconds` at once, without waiting for the wall clock (tests, settling). */
  advance(simSeconds: number, maxStepS = MAX_STEP_S): void {
    let left = simSeconds;
    while (left > 1e-9) {
      const dt = Math.min(maxStepS, left);
      this.stepPhysics(dt);
      left -= dt;
    }
  }

  private stepPhysics(dtS: number): void {
    for (const unit of this.units.values()) this.model.setAhuCommand(unit.id, unit.effectiveCommand());
    this.model.step(dtS);
    this.simMs += dtS * 1000;
    for (const unit of this.units.values()) {
      const a = this.model.ahu(unit.id);
      unit.updateMeasurements({
        fanPct: a.fanPct,
        supplyC: a.supplyC,
        returnC: a.returnC,
        cwValvePct: a.cwValvePct,
        fanKw: a.fanKw,
        coolingKw: a.coolingKw,
      });
    }
  }

  private tick(): void {
    try {
      const now = performance.now();
      // A stalled event loop must not make physics jump by minutes at once: cap one tick at 5 s wall.
      const dtWallS = Math.min(5, (now - this.lastWallMs) / 1000);
      this.lastWallMs = now;
      this.advance(dtWallS * this.timeScale);
      for (const unit of this.units.values()) {
        // A profile unit runs its own BMS watchdog in the profile's style instead of the native one.
        const own = this.modbus.profileUnit(unit.id) ?? this.opcuaProfileUnit(unit.id);
        if (own) own.checkWatchdog();
        else unit.checkWatchdog();
      }
      this.mesh?.tick();
      this.counters.ticks++;
    } catch (err) {
      // One bad tick must not stop the hall; count it and log it.
      this.counters.tickErrors++;
      this.log.error({ err }, 'simulation tick failed');
    }
  }

  /** An OPC-UA unit serving a vendor profile (one map lookup per server: servers are few). */
  private opcuaProfileUnit(ahuId: string): { checkWatchdog(): void } | undefined {
    for (const o of this.opcua) {
      const unit = o.server.profileUnit(ahuId);
      if (unit) return unit;
    }
    return undefined;
  }

  /** Shared RS-485 lines and simulated TCP→RTU gateways, with their units and counters. */
  sharedLines(): SharedLineState[] {
    return this.modbus.sharedLines();
  }

  ahuStates(): AhuState[] {
    return [...this.units.values()].map((u) => ({ ...u.status(), endpoint: this.endpoints.get(u.id) ?? '' }));
  }

  state(): Record<string, unknown> {
    const totals = this.model.totals();
    return {
      site: this.site.site.id,
      simTimeS: this.simMs / 1000,
      timeScale: this.timeScale,
      mqttBrokerUrl: this.mqttUrl,
      mqttBroker: {
        tls: this.mqttUrl.startsWith('mqtts://'),
        username: this.brokerSecurity.auth?.username ?? null,
        ...this.brokerCounters,
      },
      racks: this.site.racks.map((r) => ({ id: r.id, inletC: round2(this.model.rackInletC(r.id)) })),
      ahus: this.ahuStates().map((a) => ({
        id: a.id,
        protocol: a.protocol,
        profile: this.units.get(a.id)?.config.profile ?? NATIVE_PROFILE,
        endpoint: a.endpoint,
        mode: a.mode,
        fanPct: round2(a.fanPct),
        supplySetpointC: round2(a.supplySetpointC),
        supplyC: round2(a.supplyC),
        returnC: round2(a.returnC),
        epoch: a.epoch,
        lastWriter: a.lastWriter,
        alarms: a.alarms,
      })),
      gateways: (this.mesh?.gateways() ?? []).map((g) => {
        const ep = this.gatewayEndpoints.get(g.id);
        return ep
          ? { ...g, transport: 'modbus-tcp', endpoint: `modbus-tcp://${ep.host}:${ep.port}` }
          : { ...g, transport: 'mqtt' };
      }),
      rtuLines: this.sharedLines(),
      // Each OPC-UA endpoint's units and counters (reads, calls, and its channel cap's refusals and drops).
      opcuaServers: this.opcua.map((o) => ({
        endpoint: o.url,
        ahus: o.ahuIds,
        counters: { ...o.server.counters },
      })),
      power: {
        fanKw: round2(totals.fanKw),
        coolingKw: round2(totals.coolingKw),
        itKw: round2(totals.itKw),
        fanKwh: round2(totals.fanKwh),
        coolingKwh: round2(totals.coolingKwh),
        plantKw: round2(totals.plantKw),
        chillerKw: round2(totals.chillerKw),
        plantKwh: round2(totals.plantKwh),
        chillerKwh: round2(totals.chillerKwh),
        economiserHours: round2(totals.economiserHours),
        freeCoolingKwh: round2(totals.freeCoolingKwh),
        wetBulbC: round2(totals.wetBulbC),
        chwSupplyC: round2(totals.chwSupplyC),
      },
      mesh: this.mesh?.stats() ?? null,
      journal: { lastSeq: this.journal.lastSeq },
      faults: [...this.activeFaults.values()],
      loadProfile: this.loadProfileState(),
      counters: this.counters,
      process: {
        rssMb: round2(process.memoryUsage.rss() / 2 ** 20),
        eventLoopLagP50Ms: round2(this.loopDelay.percentile(50) / 1e6),
        eventLoopLagP99Ms: round2(this.loopDelay.percentile(99) / 1e6),
      },
    };
  }

  /** The IT-load profile in force, and whether it is the configured one or a load-profile fault's. */
  private loadProfileState(): { profile: string; factor: number; source: 'configured' | 'fault' } {
    const { profile, level } = this.model.loadProfile();
    return { profile, factor: level, source: this.activeFaults.has('load-profile') ? 'fault' : 'configured' };
  }

  /** Applies validated faults; ids are checked for the whole batch first so a bad one changes nothing. */
  async applyFaults(faults: Fault[]): Promise<void> {
    const problems = faults.flatMap((f, i) =>
      this.checkIds(f).map((p) => (faults.length > 1 ? `[${i}] ${p}` : p)),
    );
    if (problems.length > 0) {
      this.counters.faultRequestsRejected++;
      throw new BadRequestError(
        ErrorCodes.FAULT_INVALID,
        `invalid fault request: ${problems.join('; ')}`,
        problems,
      );
    }
    const touchedAhus = new Set<string>();
    try {
      for (const f of faults) {
        this.applyOne(f, touchedAhus);
        this.counters.faultsApplied++;
        this.log.warn({ fault: f }, f.fault === 'clear-all' ? 'all faults cleared' : 'fault changed');
      }
    } finally {
      // Whatever was set on a unit reaches its servers, even if a later fault of the batch failed.
      for (const id of touchedAhus) await this.syncDeviceFaults(id);
    }
  }

  private checkIds(f: Fault): string[] {
    const unknown = (what: string, id: string, known: Iterable<string>): string[] => {
      const list = [...known];
      const sample = list.slice(0, 10).join(', ') + (list.length > 10 ? ', …' : '');
      return [`unknown ${what} "${id}"; known: ${sample}`];
    };
    if ('ahu' in f && !this.units.has(f.ahu)) return unknown('air handler', f.ahu, this.units.keys());
    if (MODBUS_ONLY_FAULTS.has(f.fault) && 'ahu' in f && this.units.get(f.ahu)?.protocol === 'opcua') {
      return [`${f.fault} applies to Modbus air handlers; "${f.ahu}" speaks OPC-UA (use ahu-bad-status)`];
    }
    if (f.fault === 'ahu-sensor-broken' && f.clear !== true) {
      // A profile unit can only say "no data" with a value its profile names; without one it would
      // serve a plausible 0, which is no broken probe at all.
      const profileUnit = this.modbus.profileUnit(f.ahu);
      if (profileUnit && !profileUnit.servesNoData(f.point)) {
        return [
          `ahu-sensor-broken: "${f.ahu}" serves profile ${profileUnit.profile.name}, which names no noData value for ${profilePointOf(f.point)}`,
        ];
      }
      if (f.word !== undefined && (profileUnit || this.units.get(f.ahu)?.protocol === 'opcua')) {
        return [
          `ahu-sensor-broken: word applies to native Modbus units; "${f.ahu}" serves ${profileUnit ? `its profile's noData value` : 'BadSensorFailure (OPC-UA)'}`,
        ];
      }
    }
    if (f.fault === 'ahu-bad-status' && this.units.get(f.ahu)?.protocol !== 'opcua') {
      return [`ahu-bad-status applies to OPC-UA air handlers; "${f.ahu}" speaks Modbus (use ahu-exception)`];
    }
    if ('node' in f) {
      const node = this.site.sensorNodes.find((n) => n.id === f.node);
      if (!node)
        return unknown(
          'sensor node',
          f.node,
          this.site.sensorNodes.map((n) => n.id),
        );
      if (f.sensor && f.sensor !== '*' && !node.sensors.some((s) => s.id === f.sensor)) {
        return unknown(
          `sensor on ${f.node}`,
          f.sensor,
          node.sensors.map((s) => s.id),
        );
      }
    }
    if ('gateway' in f && !this.site.gateways.some((g) => g.id === f.gateway)) {
      return unknown(
        'gateway',
        f.gateway,
        this.site.gateways.map((g) => g.id),
      );
    }
    if (f.fault === 'unit-moved' && f.clear !== true) {
      if ((f.dxM ?? 0) === 0 && (f.dyM ?? 0) === 0)
        return ['unit-moved: give dxM or dyM (m), or clear: true'];
      return this.model.layoutProblems({ kind: 'unit-moved', ahu: f.ahu, dxM: f.dxM ?? 0, dyM: f.dyM ?? 0 });
    }
    if (f.fault === 'blanking-panel-removed' && !this.site.racks.some((r) => r.id === f.rack)) {
      return unknown(
        'rack',
        f.rack,
        this.site.racks.map((r) => r.id),
      );
    }
    if (f.fault === 'heat-load-step' && f.rack !== '*' && !this.site.racks.some((r) => r.id === f.rack)) {
      return unknown(
        'rack',
        f.rack,
        this.site.racks.map((r) => r.id),
      );
    }
    return [];
  }

  private applyOne(f: Fault, touchedAhus: Set<string>): void {
    const clear = 'clear' in f && f.clear === true;
    this.applyEffect(f, clear, touchedAhus);
    // Listed as active only once its effect is in place: a fault the hall refused is never shown.
    const key = faultKey(f);
    if (clear) this.activeFaults.delete(key);
    else if (f.fault !== 'clear-all' && f.fault !== 'broker-restart') this.activeFaults.set(key, f);
  }

  private applyEffect(f: Fault, clear: boolean, touchedAhus: Set<string>): void {
    switch (f.fault) {
      case 'ahu-trip':
      case 'ahu-offline':
      case 'ahu-slow':
      case 'ahu-exception':
      case 'ahu-garbage':
      case 'ahu-reset':
      case 'ahu-silent':
      case 'ahu-bad-status': {
        const faults = this.units.get(f.ahu)!.faults;
        if (f.fault === 'ahu-trip') faults.trip = !clear;
        if (f.fault === 'ahu-offline') faults.offline = !clear;
        if (f.fault === 'ahu-slow') faults.slowMs = clear ? 0 : (f.ms ?? 2000);
        if (f.fault === 'ahu-exception') faults.exceptionCode = clear ? null : (f.code ?? 4);
        if (f.fault === 'ahu-garbage') faults.garbage = !clear;
        if (f.fault === 'ahu-reset') faults.reset = !clear;
        if (f.fault === 'ahu-silent') faults.silent = !clear;
        if (f.fault === 'ahu-bad-status') faults.badStatus = clear ? null : (f.status ?? 'BadDeviceFailure');
        if (f.fault === 'ahu-exception' || f.fault === 'ahu-bad-status')
          faults.faultWritesOnly = !clear && (f.writesOnly ?? false);
        touchedAhus.add(f.ahu);
        return;
      }
      case 'ahu-sensor-broken': {
        const broken = this.units.get(f.ahu)!.faults.brokenSensors;
        if (clear) broken.delete(f.point);
        else broken.set(f.point, f.word ?? DEFAULT_NO_DATA_WORD);
        return;
      }
      case 'sensor-stuck':
      case 'sensor-dead':
        this.mesh?.setSensorFault(
          f.node,
          f.sensor ?? '*',
          clear ? null : { kind: f.fault === 'sensor-stuck' ? 'stuck' : 'dead' },
        );
        return;
      case 'sensor-noisy':
        this.mesh?.setSensorFault(
          f.node,
          f.sensor ?? '*',
          clear ? null : { kind: 'noisy', sigma: f.sigma ?? 2 },
        );
        return;
      case 'sensor-out-of-range':
        this.mesh?.setSensorFault(
          f.node,
          f.sensor ?? '*',
          clear ? null : { kind: 'out-of-range', value: f.value ?? 150 },
        );
        return;
      case 'gateway-down':
        this.mesh?.setGatewayDown(f.gateway, !clear);
        this.gatewayServers
          .get(f.gateway)
          ?.setDown(!clear)
          .catch((err: unknown) =>
            this.log.warn({ err, gateway: f.gateway }, 'modbus gateway fault not applied'),
          );
        return;
      case 'packet-loss':
        this.mesh?.setPacketLoss(clear ? null : (f.pct ?? 20));
        return;
      case 'heat-load-step':
        this.model.setLoadStep(f.rack, clear ? 1 : (f.factor ?? 1.5));
        return;
      case 'load-profile':
        // Clearing (clear-all) brings back the profile the simulator was started with, at level 1.
        if (clear) this.model.setProfile(this.opts.profile ?? 'constant');
        else this.model.setProfile(f.profile, f.factor);
        return;
      case 'unit-moved':
        if (clear) this.model.restoreLayout({ kind: 'unit-moved', ahu: f.ahu });
        else this.model.layoutChange({ kind: 'unit-moved', ahu: f.ahu, dxM: f.dxM ?? 0, dyM: f.dyM ?? 0 });
        return;
      case 'blanking-panel-removed':
        if (clear) this.model.restoreLayout({ kind: 'blanking-panel-removed', rack: f.rack });
        else this.model.layoutChange({ kind: 'blanking-panel-removed', rack: f.rack });
        return;
      case 'broker-restart':
        void this.restartBroker(f.downMs ?? 1000);
        return;
      case 'clear-all':
        // Every listed fault, the load profile included: the hall goes back to how it was started.
        for (const active of this.activeFaults.values()) this.applyEffect(active, true, touchedAhus);
        this.activeFaults.clear();
        return;
    }
  }

  /**
   * Closes the embedded broker (every client connection dropped, retained messages lost, as a real
   * broker restart without persistence) and listens again on the same port after `downMs`.
   * Gateways and controllers reconnect on their own. One restart at a time; failures are logged.
   */
  private async restartBroker(downMs: number): Promise<void> {
    const old = this.broker;
    if (!old || this.brokerRestarting || this.stopping) return;
    this.brokerRestarting = true;
    try {
      this.log.warn({ downMs }, 'MQTT broker restarting');
      await old.close();
      await new Promise((r) => setTimeout(r, downMs).unref());
      if (this.stopping) return;
      this.broker = await startBroker({
        host: '127.0.0.1',
        port: old.port,
        security: this.brokerSecurity,
        counters: this.brokerCounters,
        logger: this.log.child({ component: 'broker' }),
      });
      this.log.warn({ url: this.broker.url }, 'MQTT broker back');
    } catch (err) {
      this.log.error({ err }, 'MQTT broker restart failed');
    } finally {
      this.brokerRestarting = false;
    }
  }

  private async syncDeviceFaults(ahuId: string): Promise<void> {
    await this.modbus.applyFaults(ahuId);
    for (const o of this.opcua) if (o.ahuIds.includes(ahuId)) await o.server.applyFaults();
  }

  /** Stops everything once; safe to call from any path (signal, failed start, test teardown). */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      if (this.timer) clearInterval(this.timer);
      this.loopDelay.disable();
      const results = await Promise.allSettled([
        this.mesh?.stop(),
        this.modbus.stop(),
        ...this.opcua.map((o) => o.server.stop()),
        ...[...this.gatewayServers.values()].map((g) => g.stop()),
      ]);
      await this.broker?.close();
      for (const r of results)
        if (r.status === 'rejected') this.log.warn({ err: r.reason }, 'error while stopping');
    })();
    return this.stopping;
  }
}

/** Faults only a Modbus air handler (TCP or RTU) can show. */
const MODBUS_ONLY_FAULTS: ReadonlySet<string> = new Set([
  'ahu-exception',
  'ahu-garbage',
  'ahu-reset',
  'ahu-silent',
]);

function faultKey(f: Fault): string {
  // Each broken probe of a unit is its own fault, cleared on its own.
  if (f.fault === 'ahu-sensor-broken') return `${f.fault}:${f.ahu}:${f.point}`;
  if ('ahu' in f) return `${f.fault}:${f.ahu}`;
  if ('node' in f) return `${f.fault}:${f.node}:${f.sensor ?? '*'}`;
  if ('gateway' in f) return `${f.fault}:${f.gateway}`;
  if ('rack' in f) return `${f.fault}:${f.rack}`;
  return f.fault;
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
