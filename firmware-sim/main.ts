// Entry point of the simulator: `npm run sim -- --config FILE`. The only module that touches
// `process`: arguments, signals and exit codes (0 clean stop, 2 bad config or usage, 1 start-up failure).
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { loadSite } from '../src/config/load-site.ts';
import { ConfigError } from '../src/errors.ts';
import { buildSimApi } from './api.ts';
import { Simulation } from './simulation.ts';

const USAGE = `usage: npm run sim -- [--config FILE] [--host 127.0.0.1] [--port 8090] [--time-scale 1]
                       [--seed 1] [--profile constant|daily] [--mqtt-url URL | --mqtt-port 1883]
                       [--mqtt-cert FILE --mqtt-key FILE [--mqtt-ca FILE]]
                       [--mqtt-username NAME --mqtt-password-file FILE]
                       [--modbus-idle-timeout-ms 300000] [--modbus-max-connections 64]
                       [--ephemeral-ports] [--test-routes] [--log-level info]`;

async function main(): Promise<number> {
  let args: ReturnType<typeof parse>;
  try {
    args = parse();
  } catch (err) {
    process.stderr.write(`coolctl-sim: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const logger = pino({ level: args.logLevel, base: { app: 'coolctl-sim' } });

  let site: Awaited<ReturnType<typeof loadSite>>;
  try {
    site = await loadSite(args.config);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(
        `coolctl-sim: the site file is not valid — nothing was started.\n${err.message}\n`,
      );
      return 2;
    }
    throw err;
  }

  const sim = new Simulation({
    site,
    seed: args.seed,
    timeScale: args.timeScale,
    ephemeralPorts: args.ephemeralPorts,
    profile: args.profile,
    logger,
    ...(args.mqttUrl ? { mqttUrl: args.mqttUrl } : { mqttPort: args.mqttPort }),
    mqttSecurity: args.mqttSecurity,
    modbusTcp: args.modbusTcp,
  });
  const api = buildSimApi(sim, logger, { testRoutes: args.testRoutes });
  try {
    await sim.start();
    await api.listen({ host: args.host, port: args.port });
  } catch (err) {
    process.stderr.write(`coolctl-sim: could not start: ${(err as Error).message}\n`);
    await api.close().catch(() => {});
    await sim.stop();
    return 1;
  }

  const addr = api.server.address();
  const apiUrl = typeof addr === 'object' && addr ? `http://${addr.address}:${addr.port}` : String(addr);
  const lines = [
    `coolctl-sim: site "${site.site.id}" running (time scale ${args.timeScale}×, seed ${args.seed})`,
    `  sim API      ${apiUrl}/sim/state   ${apiUrl}/sim/journal?since=0   POST ${apiUrl}/sim/faults`,
    `  MQTT broker  ${sim.brokerUrl}   (topics: ${site.gateways[0]?.topicPrefix ?? 'coolctl/sim'}/#)${
      args.mqttSecurity.username ? `   user ${args.mqttSecurity.username}` : ''
    }`,
    ...sim.ahuStates().map((a) => {
      const profile = sim.units.get(a.id)?.config.profile;
      return `  ${a.id.padEnd(10)} ${a.protocol.padEnd(10)} ${a.endpoint}${profile ? `   profile ${profile}` : ''}`;
    }),
    ...sim
      .sharedLines()
      .map(
        (l) =>
          `  ${l.kind === 'rtu-gateway' ? 'TCP→RTU gateway' : 'shared RTU line'} ${l.endpoint}: ${l.units.map((u) => `${u.ahu}@${u.unitId}`).join(', ')}`,
      ),
    ...Object.entries(sim.modbusGatewayEndpoints()).map(
      ([id, ep]) => `  ${id.padEnd(10)} sensor gateway  modbus-tcp://${ep.host}:${ep.port}`,
    ),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);

  await new Promise<void>((resolve) => {
    const onSignal = (sig: NodeJS.Signals): void => {
      logger.info({ signal: sig }, 'stopping');
      resolve();
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  });
  await api.close();
  await sim.stop();
  return 0;
}

function parse() {
  const { values } = parseArgs({
    options: {
      config: { type: 'string', default: 'config/demo-site.yaml' },
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '8090' },
      'time-scale': { type: 'string', default: '1' },
      seed: { type: 'string', default: '1' },
      profile: { type: 'string', default: 'daily' },
      'mqtt-url': { type: 'string' },
      'mqtt-port': { type: 'string', default: '1883' },
      'mqtt-cert': { type: 'string' },
      'mqtt-key': { type: 'string' },
      'mqtt-ca': { type: 'string' },
      'mqtt-username': { type: 'string' },
      'mqtt-password-file': { type: 'string' },
      'modbus-idle-timeout-ms': { type: 'string' },
      'modbus-max-connections': { type: 'string' },
      'ephemeral-ports': { type: 'boolean', default: false },
      'test-routes': { type: 'boolean', default: false },
      'log-level': { type: 'string', default: 'info' },
    },
    strict: true,
  });
  const num = (name: string, raw: string, min: number, max: number): number => {
    const n = Number(raw);
    if (!Number.isFinite(n) || n < min || n > max)
      throw new Error(`--${name} must be a number in ${min}…${max}, got "${raw}"`);
    return n;
  };
  const int = (name: string, raw: string, min: number, max: number): number => {
    const n = num(name, raw, min, max);
    if (!Number.isInteger(n))
      throw new Error(`--${name} must be a whole number in ${min}…${max}, got "${raw}"`);
    return n;
  };
  if (values.profile !== 'daily' && values.profile !== 'constant') {
    throw new Error(`--profile must be daily or constant, got "${values.profile}"`);
  }
  // A password on the command line would sit in `ps` and shell history: only its file is taken.
  if ((values['mqtt-cert'] === undefined) !== (values['mqtt-key'] === undefined))
    throw new Error('--mqtt-cert and --mqtt-key go together');
  if ((values['mqtt-username'] === undefined) !== (values['mqtt-password-file'] === undefined))
    throw new Error('--mqtt-username and --mqtt-password-file go together');
  if (values['mqtt-ca'] !== undefined && values['mqtt-cert'] === undefined)
    throw new Error('--mqtt-ca needs --mqtt-cert and --mqtt-key');
  if (values['mqtt-url'] !== undefined && values['mqtt-cert'] !== undefined)
    throw new Error('--mqtt-cert is for the embedded broker, not with --mqtt-url');
  return {
    config: values.config,
    host: values.host,
    port: num('port', values.port, 0, 65_535),
    timeScale: num('time-scale', values['time-scale'], 0.01, 10_000),
    seed: num('seed', values.seed, 0, 2 ** 32 - 1),
    profile: values.profile as 'daily' | 'constant',
    mqttUrl: values['mqtt-url'],
    mqttPort: num('mqtt-port', values['mqtt-port'], 0, 65_535),
    mqttSecurity: {
      certFile: values['mqtt-cert'],
      keyFile: values['mqtt-key'],
      caFile: values['mqtt-ca'],
      username: values['mqtt-username'],
      passwordFile: values['mqtt-password-file'],
    },
    // Unset: the listener's defaults (firmware-sim/ahu/modbus-tcp-listener.ts).
    modbusTcp: {
      ...(values['modbus-idle-timeout-ms'] === undefined
        ? {}
        : {
            idleTimeoutMs: int('modbus-idle-timeout-ms', values['modbus-idle-timeout-ms'], 1_000, 3_600_000),
          }),
      ...(values['modbus-max-connections'] === undefined
        ? {}
        : { maxConnections: int('modbus-max-connections', values['modbus-max-connections'], 1, 10_000) }),
    },
    ephemeralPorts: values['ephemeral-ports'],
    testRoutes: values['test-routes'],
    logLevel: values['log-level'],
  };
}

main().then(
  (code) => {
    process.exitCode = code;
    // Everything was closed; if a stray handle still holds the loop, do not linger as a zombie service.
    setTimeout(() => process.exit(code), 3000).unref();
  },
  (err: unknown) => {
    process.stderr.write(`coolctl-sim: fatal: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
