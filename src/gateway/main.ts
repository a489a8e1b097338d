// The gateway's entry point: `coolctl gateway --config FILE` (src/cli.ts hands over here) and, for
// the systemd unit, `node src/gateway/main.ts --config FILE` — its own entry so the service does not
// load the controller (etcd, OPC-UA: ~60 MB of a Pi's memory it never uses). The only gateway module
// that touches `process`: signals, sd_notify, exit codes (0 clean stop, 1 start-up failure, 2 config).
import { Command, CommanderError } from 'commander';
import { daemonLogger } from '../daemon/logger.ts';
import { SdNotify } from '../daemon/sd-notify.ts';
import { ConfigError, CoolctlError } from '../errors.ts';
import { logLevelOption } from '../util/cli-args.ts';
import { loadGatewayConfig } from './config.ts';
import { GatewayService } from './service.ts';

/** Runs the gateway until SIGTERM/SIGINT; rejects (ConfigError, CoolctlError) when it cannot start. */
export async function runGateway(o: { config: string; logLevel: string }): Promise<void> {
  const cfg = await loadGatewayConfig(o.config);
  // Each line behind its syslog level when stdout is the journal (`journalctl -p err`).
  const logger = daemonLogger(
    { level: o.logLevel, base: { app: 'coolctl-gateway', gateway: cfg.name } },
    process.env,
  );
  const service = new GatewayService(cfg, { logger });
  const systemd = new SdNotify(process.env, process.pid, logger);
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    void systemd.stopping();
    void service.stop().then(() => {
      process.exitCode = 0;
      // Everything is closed; a stray handle must not keep a stopped service alive.
      setTimeout(() => process.exit(0), 2000).unref();
    });
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  // A half-started gateway (a line open, the port taken) must not keep the process alive.
  await service.start().catch(async (err: unknown) => {
    await service.stop();
    throw err;
  });
  process.stdout.write(
    `coolctl gateway ${cfg.name}: modbus ${service.modbus.host}:${service.modbus.port}, http ${service.httpUrl}\n`,
  );
  await systemd.ready(`gateway ${cfg.name}: ${cfg.units.length} units, modbus port ${service.modbus.port}`);
  // Only a wedged line withholds the ping: a line that is down (a unit unplugged) is the world's
  // doing, which /healthz reports and a restart would not mend.
  systemd.startWatchdog(() => {
    const why = service.wedged();
    return why ? { ok: false, problems: [why] } : { ok: true, problems: [] };
  });
}

/** Exit code and message for an error that stopped the start, as `coolctl` words them. */
export function reportStartFailure(err: unknown): number {
  if (err instanceof ConfigError) {
    process.stderr.write(`coolctl: the configuration is not valid — nothing was started.\n${err.message}\n`);
    return 2;
  }
  if (err instanceof CoolctlError) {
    process.stderr.write(`coolctl: ${err.message}\n`);
    return 1;
  }
  process.stderr.write(`coolctl: fatal: ${(err as Error)?.stack ?? String(err)}\n`);
  return 1;
}

if (import.meta.main) {
  const program = new Command('coolctl-gateway')
    .description('fencing gateway: Modbus TCP for controllers in front of units that cannot check epochs')
    .requiredOption('--config <file>', 'gateway config file (YAML, docs/fencing-gateway.md)')
    .addOption(logLevelOption('pino log level'))
    .exitOverride()
    .action((o: { config: string; logLevel: string }) => runGateway(o));
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    process.exitCode = err instanceof CommanderError ? (err.exitCode === 0 ? 0 : 2) : reportStartFailure(err);
  }
}
