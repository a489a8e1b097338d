// One node-opcua server hosting every simulated OPC-UA air handler behind one endpoint URL: an
// Object per AHU with read-only variables bound live to `unit.status()`, and a WriteCommand method
// that hands epoch, heartbeat and commands to `unit.write()` in one call (the fenced write).
// Faults are read from `unit.faults` on every read and call, so they take effect at once. A unit
// whose site entry names a vendor profile with an `opcua:` section serves that profile's own
// namespace and nodes instead (./opcua-profile-unit.ts), backed by the same SimAirHandler.
// Invariants: a getter or method never throws into node-opcua; every WriteCommand call that reaches
// the method is journaled exactly once; stop() is bounded and leaves no timer behind.
import { timingSafeEqual } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type CallMethodResultOptions,
  CallRequest,
  DataType,
  DataValue,
  type ISessionContext,
  MessageSecurityMode,
  type Namespace,
  OPCUACertificateManager,
  OPCUAServer,
  RegisterServerMethod,
  SecurityPolicy,
  StatusCodes,
  Variant,
} from 'node-opcua';
import { type Logger, pino } from 'pino';
import type { OpcuaAirHandler } from '../../src/config/site-schema.ts';
import {
  OPCUA_POINT_NAMES,
  OPCUA_POINTS,
  type OpcuaPointName,
  resolveNodeMap,
  WRITE_COMMAND_ARGS,
  WRITE_COMMAND_BROWSE_NAME,
  WRITE_COMMAND_STATUS,
} from '../../src/devices/opcua/node-map.ts';
import { CoolctlError, ErrorCodes } from '../../src/errors.ts';
import { type AhuCommand, MODE_CODE } from '../../src/unit-contract.ts';
import { Delays, freePort } from '../../src/util/async.ts';
import { DEFAULT_PROFILES_DIR } from './modbus-devices.ts';
import { guardOpcuaChannels, newOpcuaChannelCounters, routeSimNodeOpcuaLogs } from './opcua-channels.ts';
import { type LoadedProfile, loadOpcuaProfile, OpcuaProfileUnit } from './opcua-profile-unit.ts';
import { clientIdentity, faultStatus, statusByName } from './opcua-status.ts';
import type { ProfileQuirks } from './profile-pdu.ts';
import type { MeasuredPoint, RejectReason, SimAirHandler } from './unit.ts';

export interface OpcuaUser {
  username: string;
  password: string;
}

export interface OpcuaAhuServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** e.g. "/coolctl-sim"; appended to opc.tcp://host:port */
  resourcePath: string;
  logger?: Logger;
  /** Certificate store; default <repo>/var/opcua-pki, so the self-signed certificate is made once. */
  pkiDir?: string;
  /** Accepted user/password identities, besides anonymous. */
  users?: OpcuaUser[];
  /** Sessions the server accepts at once (node-opcua's default 10); embedded units often allow 2–5. */
  maxSessions?: number;
  /** Where units' `profile: NAME` files are (default config/profiles). */
  profilesDir?: string;
  /** Start-up behaviour of vendor-profile units (not ready, no data). */
  profileQuirks?: Partial<ProfileQuirks>;
  /** Wall clock of vendor-profile units' watchdogs and start-up windows (tests may pass their own). */
  wallNowMs?: () => number;
}

/** Where a sim's certificate lives unless told: stable, so it is created only on the very first start. */
export const DEFAULT_PKI_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../var/opcua-pki');

/** How often subscriptions sample the live getters; the unit's state changes between ticks only. */
const MIN_SAMPLING_INTERVAL_MS = 100;
const STOP_DEADLINE_MS = 5_000;
const START_ATTEMPTS_ON_PORT_0 = 3;

const REASON_STATUS: Record<RejectReason, string> = {
  'stale-epoch': WRITE_COMMAND_STATUS.staleEpoch,
  'out-of-range': WRITE_COMMAND_STATUS.outOfRange,
  'heartbeat-unchanged': WRITE_COMMAND_STATUS.heartbeatUnchanged,
  tripped: WRITE_COMMAND_STATUS.tripped,
  offline: WRITE_COMMAND_STATUS.offline,
  'fault-bad-status': WRITE_COMMAND_STATUS.faultBadStatus,
  'fault-exception': WRITE_COMMAND_STATUS.faultBadStatus,
  'partial-command-block': 'BadInvalidArgument',
  expired: 'BadTimeout',
  // Vendor-profile refusals (Modbus units, ./profile-pdu.ts); an OPC-UA unit never gives them.
  'bms-timeout': 'BadDeviceFailure',
  'unsupported-function': 'BadNotSupported',
  'not-ready': 'BadWaitingForInitialData',
};

export class OpcuaAhuServer {
  readonly units: readonly SimAirHandler[];
  private readonly opts: OpcuaAhuServerOptions;
  private readonly log: Logger;
  private server: OPCUAServer | undefined;
  private url = '';
  private stopping: Promise<void> | undefined;
  /** Fault delays in flight; stop() settles them so no timer outlives the server. */
  private readonly delays = new Delays();
  /**
   * When each WriteCommand call's request must be done by (`performance.now()` ms): receipt +
   * timeoutHint. A method sees only its arguments and the session, so the request's hint is found
   * by its first argument, the very Variant node-opcua hands the method.
   */
  private readonly callExpiry = new WeakMap<object, number>();
  readonly counters = {
    reads: 0,
    calls: 0,
    getterErrors: 0,
    methodErrors: 0,
    expiredCalls: 0,
    // Refusals and channels closed at node-opcua's channel cap (./opcua-channels.ts).
    ...newOpcuaChannelCounters(),
  };
  /** Units that serve a vendor profile, made at start(). */
  private readonly vendor = new Map<string, OpcuaProfileUnit>();

  constructor(units: SimAirHandler[], opts: OpcuaAhuServerOptions) {
    const nonOpcua = units.filter((u) => u.config.protocol !== 'opcua').map((u) => u.id);
    if (nonOpcua.length > 0)
      throw new Error(`OpcuaAhuServer: not OPC-UA air handlers: ${nonOpcua.join(', ')}`);
    const seen = new Set<string>();
    for (const u of units) {
      if ((u.config.profile ?? 'coolctl-native') !== 'coolctl-native') continue;
      const map = resolveNodeMap(u.config as OpcuaAirHandler);
      const key = `${map.namespaceUri} ${map.prefix}`;
      if (seen.has(key))
        throw new Error(`OpcuaAhuServer: node prefix ${map.prefix} used twice in ${map.namespaceUri}`);
      seen.add(key);
    }
    this.units = units;
    this.opts = opts;
    this.log = opts.logger ?? pino({ level: 'silent' });
  }

  get endpointUrl(): string {
    return this.url;
  }

  /** A unit serving a vendor profile (it runs its own BMS watchdog); undefined for native units. */
  profileUnit(ahuId: string): OpcuaProfileUnit | undefined {
    return this.vendor.get(ahuId);
  }

  /** Loads every vendor unit's profile once per file; a profile that cannot be served stops start(). */
  private async loadProfiles(): Promise<void> {
    const cache = new Map<string, Promise<LoadedProfile>>();
    for (const u of this.units) {
      const loaded = await loadOpcuaProfile(u.config, this.opts.profilesDir ?? DEFAULT_PROFILES_DIR, cache);
      if (!loaded) continue;
      this.vendor.set(
        u.id,
        new OpcuaProfileUnit(u, loaded, {
          ...(this.opts.profileQuirks ? { quirks: this.opts.profileQuirks } : {}),
          ...(this.opts.wallNowMs ? { wallNowMs: this.opts.wallNowMs } : {}),
        }),
      );
    }
  }

  async start(): Promise<{ endpointUrl: string }> {
    if (this.server) throw new Error('OpcuaAhuServer: already started');
    const startedMs = performance.now();
    if (this.vendor.size === 0) await this.loadProfiles();
    // node-opcua's lines about the channel cap would otherwise go to stdout once per socket.
    routeSimNodeOpcuaLogs(this.log);
    const attempts = this.opts.port === 0 ? START_ATTEMPTS_ON_PORT_0 : 1;
    for (let attempt = 1; ; attempt++) {
      const port = this.opts.port === 0 ? await freePort(this.opts.host) : this.opts.port;
      const server = this.createServer(port);
      try {
        await server.initialize();
        server.on('request', (request) => this.noteRequest(request));
        this.buildAddressSpace(server);
        await server.start();
        this.server = server;
        this.url = server.getEndpointUrl();
        guardOpcuaChannels(server, this.counters, this.log, () => this.url);
        break;
      } catch (err) {
        await boundedShutdown(server).catch(() => undefined);
        if (err instanceof CoolctlError) throw err;
        // Another process may take the port between freePort() closing it and node-opcua binding it.
        if (attempt < attempts && (err as NodeJS.ErrnoException).code === 'EADDRINUSE') continue;
        throw new CoolctlError(
          ErrorCodes.STARTUP,
          `OPC-UA server on ${this.opts.host}:${port} could not start (${String(err)}); free the port or change the AHU endpoint url`,
          { cause: err },
        );
      }
    }
    this.log.info(
      {
        endpointUrl: this.url,
        ahus: this.units.map((u) => u.id),
        startMs: Math.round(performance.now() - startedMs),
      },
      'opcua server listening',
    );
    return { endpointUrl: this.url };
  }

  /** Faults are consulted on every read and call, so there is nothing to re-apply; kept for the simulation's hook. */
  async applyFaults(): Promise<void> {
    for (const u of this.units) {
      if (u.faults.badStatus && !(u.faults.badStatus in StatusCodes)) {
        this.log.warn(
          { ahu: u.id, status: u.faults.badStatus },
          'unknown OPC-UA status name; answering BadDeviceFailure',
        );
      }
    }
  }

  /** Closes every session and the listener; bounded, idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.delays.cancelAll();
      const server = this.server;
      if (!server) return;
      try {
        await boundedShutdown(server);
      } catch (err) {
        this.log.warn({ err }, 'opcua server shutdown did not finish cleanly');
      }
      this.log.info({ endpointUrl: this.url }, 'opcua server stopped');
    })();
    return this.stopping;
  }

  private createServer(port: number): OPCUAServer {
    const { host } = this.opts;
    const users = this.opts.users ?? [];
    const wildcard = host === '0.0.0.0' || host === '::';
    return new OPCUAServer({
      port,
      host,
      ...(wildcard ? {} : { hostname: host }),
      resourcePath: this.opts.resourcePath,
      serverCertificateManager: new OPCUACertificateManager({
        rootFolder: this.opts.pkiDir ?? DEFAULT_PKI_DIR,
        // A simulator trusts any client certificate; a real unit would not.
        automaticallyAcceptUnknownCertificate: true,
      }),
      securityPolicies: [SecurityPolicy.None, SecurityPolicy.Basic256Sha256],
      securityModes: [MessageSecurityMode.None, MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt],
      allowAnonymous: true,
      userManager: {
        isValidUser: (username: string, password: string) => checkUser(users, username, password),
      },
      registerServerMethod: RegisterServerMethod.HIDDEN,
      isAuditing: false,
      ...(this.opts.maxSessions ? { serverCapabilities: { maxSessions: this.opts.maxSessions } } : {}),
      serverInfo: {
        applicationUri: 'urn:coolctl:sim:opcua-server',
        productUri: 'urn:coolctl:sim',
        applicationName: { text: 'coolctl simulated air handlers', locale: 'en' },
      },
      buildInfo: { productName: 'coolctl-sim', manufacturerName: 'coolctl' },
    });
  }

  private buildAddressSpace(server: OPCUAServer): void {
    const addressSpace = server.engine.addressSpace;
    if (!addressSpace) throw new Error('address space missing after initialize()');
    const namespaces = new Map<string, Namespace>();
    const ids = new Map<string, string>();
    const claim = (uri: string, id: string, ahu: string): void => {
      const key = `${uri} ${id}`;
      const other = ids.get(key);
      if (other !== undefined) {
        throw new CoolctlError(
          ErrorCodes.STARTUP,
          `OPC-UA units ${other} and ${ahu} both need node ${id} in ${uri}; give one a pointMap.nodePrefix of its own`,
        );
      }
      ids.set(key, ahu);
    };
    // Vendor namespaces first, in the site's order: a profile's browse paths name their namespace
    // by index, and the first namespace registered is index 2 whatever other units the site has.
    for (const unit of this.units) {
      const v = this.vendor.get(unit.id);
      if (!v) continue;
      const ns = namespaces.get(v.namespaceUri) ?? addressSpace.registerNamespace(v.namespaceUri);
      namespaces.set(v.namespaceUri, ns);
      for (const id of v.nodeIds()) claim(v.namespaceUri, id, unit.id);
      v.build(addressSpace, ns, {
        wait: (ms) => this.delays.wait(ms),
        stopping: () => this.stopping !== undefined,
        callExpiresAtMs: (arg) => (arg && this.callExpiry.get(arg)) ?? Number.POSITIVE_INFINITY,
        counters: this.counters,
        log: this.log,
      });
    }
    for (const unit of this.units) {
      if (this.vendor.has(unit.id)) continue;
      const map = resolveNodeMap(unit.config as OpcuaAirHandler);
      claim(map.namespaceUri, map.objectNodeId, unit.id);
      const ns = namespaces.get(map.namespaceUri) ?? addressSpace.registerNamespace(map.namespaceUri);
      namespaces.set(map.namespaceUri, ns);
      const object = ns.addObject({
        organizedBy: addressSpace.rootFolder.objects,
        browseName: map.prefix,
        nodeId: map.objectNodeId,
        description: `air handler ${unit.id}`,
      });
      for (const name of OPCUA_POINT_NAMES) {
        const def = OPCUA_POINTS[name];
        ns.addVariable({
          componentOf: object,
          browseName: def.browseName,
          nodeId: map.nodes[name],
          dataType: def.dataType,
          description: `${def.description}${def.unit ? ` [${def.unit}]` : ''}`,
          minimumSamplingInterval: MIN_SAMPLING_INTERVAL_MS,
          // refreshFunc, not a getter: the Read service and subscriptions both go through it, so a
          // slow fault can delay the answer without blocking the event loop.
          value: { refreshFunc: (callback) => this.refresh(unit, name, callback) },
        });
      }
      const method = ns.addMethod(object, {
        browseName: WRITE_COMMAND_BROWSE_NAME,
        nodeId: map.writeCommandMethod,
        description: 'fenced write: epoch, heartbeat, remoteEnable, fanPct, supplySetpointC in one call',
        inputArguments: WRITE_COMMAND_ARGS.map((a) => ({
          name: a.name,
          description: { text: a.description },
          dataType: DataType[a.dataType],
        })),
        outputArguments: [],
      });
      method.bindMethod(async (inputArguments: Variant[], context: ISessionContext) =>
        this.writeCommand(unit, inputArguments, context),
      );
    }
  }

  private refresh(
    unit: SimAirHandler,
    name: OpcuaPointName,
    callback: (err: Error | null, dv: DataValue) => void,
  ) {
    this.counters.reads++;
    const answer = () => {
      let dv: DataValue;
      try {
        dv = this.readPoint(unit, name);
      } catch (err) {
        this.counters.getterErrors++;
        this.log.error({ err, ahu: unit.id, point: name }, 'opcua getter failed');
        dv = new DataValue({ statusCode: StatusCodes.BadInternalError, sourceTimestamp: new Date() });
      }
      callback(null, dv);
    };
    const slowMs = unit.faults.slowMs;
    if (slowMs > 0) void this.delays.wait(slowMs).then(answer);
    else answer();
  }

  private readPoint(unit: SimAirHandler, name: OpcuaPointName): DataValue {
    const sourceTimestamp = new Date();
    const fault = faultStatus(unit);
    if (fault && !(unit.faults.faultWritesOnly && fault.reason === 'fault-bad-status'))
      return new DataValue({ statusCode: fault.status, sourceTimestamp });
    // A broken probe: OPC-UA says so in the status code (Part 8), with no value.
    if (unit.faults.brokenSensors.has(name as MeasuredPoint))
      return new DataValue({ statusCode: StatusCodes.BadSensorFailure, sourceTimestamp });
    const st = unit.status();
    const raw = name === 'mode' ? MODE_CODE[st.mode] : st[name];
    const dataType = DataType[OPCUA_POINTS[name].dataType];
    const value = dataType === DataType.UInt32 ? Math.max(0, Math.trunc(raw)) >>> 0 : raw;
    return new DataValue({
      value: new Variant({ dataType, value }),
      statusCode: StatusCodes.Good,
      sourceTimestamp,
    });
  }

  /** Called as each request arrives, before its service runs. */
  private noteRequest(request: unknown): void {
    if (!(request instanceof CallRequest)) return;
    // 0 means no hint (Part 4): the call may take as long as it takes.
    const hintMs = request.requestHeader.timeoutHint;
    if (!(hintMs > 0)) return;
    const expiresAtMs = performance.now() + hintMs;
    for (const m of request.methodsToCall ?? []) {
      const first = m.inputArguments?.[0];
      if (first) this.callExpiry.set(first, expiresAtMs);
    }
  }

  private async writeCommand(
    unit: SimAirHandler,
    args: Variant[],
    context: ISessionContext,
  ): Promise<CallMethodResultOptions> {
    this.counters.calls++;
    try {
      const expiresAtMs = (args[0] && this.callExpiry.get(args[0])) ?? Number.POSITIVE_INFINITY;
      // A server may cancel a request whose timeoutHint has passed (Part 4): a slow unit's call
      // waits at most until then, and is not applied once it has (the client no longer waits).
      const leftMs = expiresAtMs - performance.now();
      const cutShort = unit.faults.slowMs >= leftMs;
      const slowMs = Math.min(unit.faults.slowMs, Math.max(0, leftMs));
      if (slowMs > 0) await this.delays.wait(slowMs);
      const client = clientIdentity(context);
      const cmd = parseCommand(args);
      if (!cmd) {
        // node-opcua checks argument types before calling; this only guards against a change there.
        return { statusCode: StatusCodes.BadInvalidArgument };
      }
      if (cutShort || performance.now() >= expiresAtMs) {
        this.counters.expiredCalls++;
        unit.write(client, cmd, 'expired');
        this.log.debug(
          { ahu: unit.id, client, epoch: cmd.epoch },
          'opcua write past its timeoutHint; not applied',
        );
        return { statusCode: StatusCodes.BadTimeout };
      }
      const fault = this.stopping
        ? { reason: 'offline' as const, status: StatusCodes.BadServerHalted }
        : faultStatus(unit);
      if (fault) {
        unit.write(client, cmd, fault.reason);
        return { statusCode: fault.status };
      }
      const result = unit.write(client, cmd);
      if (result.accepted) return { statusCode: StatusCodes.Good };
      const reason = result.reason ?? 'out-of-range';
      this.log.debug({ ahu: unit.id, client, epoch: cmd.epoch, reason }, 'opcua write refused');
      return { statusCode: statusByName(REASON_STATUS[reason]) };
    } catch (err) {
      this.counters.methodErrors++;
      this.log.error({ err, ahu: unit.id }, 'opcua WriteCommand failed');
      return { statusCode: StatusCodes.BadInternalError };
    }
  }
}

function parseCommand(args: Variant[]): AhuCommand | null {
  const [epoch, heartbeat, remoteEnable, fanPct, supplySetpointC] = args.map((a) => a?.value as unknown);
  if (
    typeof epoch !== 'number' ||
    typeof heartbeat !== 'number' ||
    typeof remoteEnable !== 'boolean' ||
    typeof fanPct !== 'number' ||
    typeof supplySetpointC !== 'number'
  ) {
    return null;
  }
  return { epoch, heartbeat, remoteEnable, fanPct, supplySetpointC };
}

function checkUser(users: readonly OpcuaUser[], username: string, password: string): boolean {
  const given = Buffer.from(password);
  return users.some((u) => {
    const want = Buffer.from(u.password);
    return u.username === username && want.length === given.length && timingSafeEqual(want, given);
  });
}

/** shutdown(0) closes sessions at once; the race keeps a stuck socket from hanging the caller. */
async function boundedShutdown(server: OPCUAServer): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      server.shutdown(0),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`shutdown took over ${STOP_DEADLINE_MS} ms`)),
          STOP_DEADLINE_MS,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
