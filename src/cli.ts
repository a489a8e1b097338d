// The `coolctl` command, patronictl-like: `run` starts a controller node; `status`, `switchover`,
// `pause`/`resume`, `override`, `history` and `alarms` talk to a running cluster; `config validate`,
// `site import` and `profile check` check or build files; `completion` prints a shell's completion.
// The only module that touches `process`: arguments, signals, exit codes (one rule, exitCodeOf in
// ./util/cli-args.ts: 0 clean stop, 1 start-up, request or operation failure, 2 invalid config, usage or
// input, a request the server refused as bad input included; 130 a prompt cancelled with Ctrl-C).
// Each command imports what it runs when it runs: the controller (etcd, OPC-UA, fastify) costs
// seconds to load on a small gateway, and `--help`, `status` or `profile check` need none of it.
import { Argument, Command, CommanderError, Option } from 'commander';
import type { Logger } from 'pino';
import { addAlarmCommands } from './cli/alarm-commands.ts';
import {
  type ApiOptions,
  apiCall,
  apiOptions,
  apiRequest,
  DEFAULT_API,
  refusalError,
} from './cli/api-client.ts';
import { addApiCommands } from './cli/api-commands.ts';
import { emit, OUTPUT_FORMATS, outputFormat } from './cli/cli-config.ts';
import { addUpgradeCommands } from './cli/upgrade-commands.ts';
import { ClusterErrorCodes, isClusterError } from './cluster/errors.ts';
import { ConfigError, CoolctlError, ErrorCodes } from './errors.ts';
import { CancelledError, exitCodeOf, logLevelOption, parseNumber, UsageError } from './util/cli-args.ts';
import { jsonText, printable, printableText } from './util/printable.ts';
import { VERSION } from './version.ts';

const program = new Command('coolctl')
  .version(VERSION)
  .description('High-availability controller for datacenter cooling')
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) })
  .addHelpText(
    'after',
    `
Commands that call the API read, unless their options say otherwise:
  COOLCTL_API       any node's API address (default ${DEFAULT_API})
  COOLCTL_TOKEN     the API token (or --token-file FILE; never a command-line argument)
  COOLCTL_CA_FILE   the PEM CA that signed the API's certificate (or --ca-file FILE); without it an
                    https:// API must be signed by a CA of the system's store. A server the CA did
                    not sign is refused, never talked to unchecked.
  COOLCTL_OUTPUT    table or json (or --output on any command)
and then the CLI config file ($COOLCTL_CLI_CONFIG, else ~/.config/coolctl/cli.yaml, else
/etc/coolctl/cli.yaml): api, tokenFile, caFile, output (docs/cli.md).
Exit codes: 0 done; 1 failed: the API unreachable or failing (5xx), not signed in or not allowed
(401, 403), busy (408, 429), or the operation itself on a good input; 2 invalid config, usage or
input — an option, a CA or token file, a config, profile or release that is not what the command
needs, or a request the server refused as bad input (any other 4xx); 130 a password prompt cancelled.`,
  );

program
  .command('run')
  .description('run one controller node')
  .requiredOption('--config <file>', 'controller config file (YAML)')
  .requiredOption('--node <name>', 'this node’s name, one of the config’s nodes')
  .addOption(logLevelOption('pino log level'))
  .action(async (o: { config: string; node: string; logLevel: string }) => {
    // Signals are ours from the first moment: by default a SIGHUP (a reload sent while the node
    // starts) would kill it.
    const signals = runSignals();
    const [{ daemonLogger }, { loadControllerConfig }, { ConfigWatcher }, { Controller }, { SdNotify }] =
      await Promise.all([
        import('./daemon/logger.ts'),
        import('./config/controller-config.ts'),
        import('./daemon/config-watch.ts'),
        import('./daemon/controller.ts'),
        import('./daemon/sd-notify.ts'),
      ]);
    // Each line behind its syslog level when stdout is the journal (`journalctl -p err`).
    const logger = daemonLogger({ level: o.logLevel, base: { app: 'coolctl', node: o.node } }, process.env);
    const cfg = await loadControllerConfig(o.config, o.node);
    const controller = new Controller(cfg, { logger, ...testCrashHook(logger) });
    const systemd = new SdNotify(process.env, process.pid, logger);
    let started = false;
    let stopped: Promise<void> | undefined;
    let reloadAsked: string | undefined;
    let lastReload: Promise<unknown> | undefined;
    // Hot reload on SIGHUP (systemctl reload) or when the config or site file changes; one asked
    // for while the node starts runs once it has started.
    const reload = (why: string): void => {
      if (stopped) return;
      if (!started) {
        reloadAsked = why;
        return;
      }
      const p = controller.reload(why);
      if (p === lastReload) return; // joined the reload already queued
      lastReload = p;
      void systemd.reloading();
      p.then(() => systemd.ready(`node ${cfg.node}: config reloaded`)).catch((err: unknown) => {
        // A refused file (or a reload etcd's lack of space refused) was logged with its reason;
        // anything else is a bug worth a line.
        const refused = err instanceof ConfigError || isClusterError(err, ClusterErrorCodes.ETCD_NO_SPACE);
        if (!refused) logger.error({ err }, 'config reload failed while applying');
        return systemd.ready(`node ${cfg.node}: config reload refused, running config kept`);
      });
    };
    const watcher = new ConfigWatcher(
      [cfg.file, cfg.sitePath],
      () => reload('config file changed'),
      logger,
      undefined,
      { registry: controller.registry },
    );
    const stop = (signal: string): void => {
      if (stopped) {
        // A second SIGTERM (an impatient script) must not cut the handover short: systemd's
        // TimeoutStopSec, and its SIGKILL, bound the stop.
        logger.warn({ signal }, 'already stopping: the groups are being handed over');
        return;
      }
      logger.info({ signal }, 'stopping: resigning every group');
      watcher.close();
      void systemd.stopping();
      stopped = controller
        .stop()
        .catch((err: unknown) => logger.error({ err }, 'stop failed'))
        .then(() => {
          process.exitCode = 0;
          // Everything is closed; a stray handle must not keep a stopped service alive.
          setTimeout(() => process.exit(0), 2000).unref();
        });
    };
    signals.on({ stop, reload: () => reload('SIGHUP') });
    try {
      await controller.start();
    } catch (err) {
      // Stopped while it started (SIGTERM before etcd answered): a clean stop, not a failure.
      if (!controller.stoppedDuringStart(err)) {
        watcher.close();
        throw err;
      }
      logger.info('stopped during start-up, as asked');
      return;
    }
    started = true;
    process.stdout.write(`coolctl: node ${cfg.node} running, API ${controller.url}\n`);
    await systemd.ready(`node ${cfg.node}: ${cfg.site.controlGroups.length} groups, API ${controller.url}`);
    systemd.startWatchdog(() => controller.health());
    if (reloadAsked) reload(reloadAsked);
  });

/**
 * `run`'s signal handlers, installed before anything loads: SIGTERM and SIGINT stop the node (one
 * that comes before the node exists ends the process, nothing having started), SIGHUP reloads.
 * Until `on` hands in the daemon's handlers, a SIGHUP is remembered and handed on then.
 */
function runSignals(): { on(h: { stop: (signal: string) => void; reload: () => void }): void } {
  let handlers: { stop: (signal: string) => void; reload: () => void } | undefined;
  let hupBeforeStart = false;
  const onStop = (signal: NodeJS.Signals): void => {
    if (handlers) {
      handlers.stop(signal);
      return;
    }
    process.stderr.write(`coolctl: ${signal} before the node started: nothing to hand over, exiting\n`);
    process.exit(0);
  };
  process.on('SIGTERM', onStop);
  process.on('SIGINT', onStop);
  process.on('SIGHUP', () => {
    if (handlers) handlers.reload();
    else hupBeforeStart = true;
  });
  return {
    on(h) {
      handlers = h;
      if (hupBeforeStart) h.reload();
    },
  };
}

program
  .command('gateway')
  .description('run a fencing gateway: Modbus TCP for controllers in front of units that cannot check epochs')
  .requiredOption('--config <file>', 'gateway config file (YAML, docs/fencing-gateway.md)')
  .addOption(logLevelOption('pino log level'))
  .action(async (o: { config: string; logLevel: string }) => {
    // Its own module and entry (the systemd unit runs src/gateway/main.ts, without the controller).
    const { runGateway } = await import('./gateway/main.ts');
    await runGateway(o);
  });

program
  .command('status')
  .description(
    'the cluster: members and their configs, and per group its leader, epoch, mode, pause, overrides, sensors and whether it is driven',
  )
  .option('--json', 'the same as --output json')
  .action(async (o: ApiOptions & { json?: boolean; output?: string }) => {
    const { gatherStatus, formatStatus } = await import('./cli/status.ts');
    const r = await gatherStatus(o);
    emit(o, r, () => formatStatus(r));
  });

program
  .command('switchover <group>')
  .description('hand a control group to another node, gracefully')
  .requiredOption('--to <node>', 'the node that should lead the group')
  .action(async (group: string, o: ApiOptions & { to: string; output?: string }) => {
    // The leader can change between reading the cluster and asking it (rebalancing, a failover,
    // a node that has just won and not yet proven its lease, a leader briefly fenced): ask again,
    // every 0.5 s, for up to 10 s.
    const { readCluster } = await import('./cli/status.ts');
    for (let attempt = 1; ; attempt++) {
      const c = await readCluster(o);
      const g = c.groups.find((x) => x.id === group);
      if (!g)
        throw new UsageError(
          `unknown group "${printable(group)}"; groups: ${c.groups.map((x) => printable(x.id)).join(', ')}`,
        );
      const leader = c.members.find((m) => m.node === g.leader);
      if (leader) {
        // The request carries the operator's token: only to an origin (src/util/api-origin.ts).
        if ('why' in leader.api)
          throw new CoolctlError(
            ErrorCodes.BAD_REQUEST,
            `${printable(leader.node)} leads ${printable(group)}, but the API address of its member record ${leader.api.why}: not asked (fix that node's nodes.<name>.api, or ask it with --api)`,
          );
        const res = await apiRequest<{ message?: string; tookMs?: number }>(
          o,
          'POST',
          `${leader.api.origin}/api/v1/groups/${encodeURIComponent(group)}/switchover`,
          { to: o.to },
          15_000,
        );
        const body = res.body;
        if (res.status >= 200 && res.status < 300) {
          const done = { group, from: g.leader, to: o.to, tookMs: body.tookMs };
          const took =
            typeof body.tookMs === 'number' && Number.isFinite(body.tookMs) ? ` in ${body.tookMs} ms` : '';
          emit(o, done, () => `${group}: ${printable(g.leader)} → ${o.to}${took}`);
          return;
        }
        // 409: the leader changed meanwhile; ask again. Any other answer by the one rule.
        if (res.status !== 409 || attempt >= 20)
          throw refusalError(res.status, body, 'switchover refused', res.retryAfter);
      } else if (attempt >= 20) {
        throw new CoolctlError(ErrorCodes.NOT_LEADER, `group ${group} has no leader right now; try again`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  });

const configCommand = program.command('config').description('configuration tools');
configCommand
  .command('validate <file>')
  .description(
    'check a controller config (and its site file) or a site file — told apart by what it holds — and list every problem',
  )
  .option('--node <name>', 'a controller config: check it for this node (default: the first node)')
  .addOption(
    new Option('--kind <kind>', 'what the file is, instead of the guess').choices(['site', 'controller']),
  )
  .action(async (file: string, o: { node?: string; kind?: string; output?: string }) => {
    const { validateConfigFile, formatValidation } = await import('./cli/config-validate.ts');
    const r = await validateConfigFile(file, o);
    if (outputFormat(o) === 'json') process.stdout.write(`${jsonText(r)}\n`);
    else if (r.valid) process.stdout.write(`${formatValidation(r)}\n`);
    else if (r.kind === 'controller') {
      // As `run` says it: the daemon's own words for the same file.
      const { ConfigError } = await import('./errors.ts');
      throw new ConfigError(file, r.problems);
    } else process.stderr.write(`${formatValidation(r)}\n`);
    if (!r.valid) process.exitCode = 2;
  });

const siteCommand = program.command('site').description('site files');
siteCommand
  .command('import')
  .description(
    'build a site file from CSV inventories (racks, units, sensor nodes, groups); every problem listed with its file and line',
  )
  .requiredOption('--site-id <id>', 'the site’s id')
  .requiredOption('--site-name <name>', 'the site’s name')
  .requiredOption('--rooms <csv>', 'rooms: id,name,widthM,depthM,heightM')
  .requiredOption('--racks <csv>', 'racks: id,room,row,xM,yM,itLoadKw[,airflowM3s]')
  .requiredOption(
    '--units <csv>',
    'air handlers: id,room,xM,yM,capacityKw,maxAirflowM3s,fanMaxKw,endpoint[,unitId,profile,…]',
  )
  .requiredOption('--sensors <csv>', 'sensor nodes: id,rack,gateway,sensors[,hops,reportIntervalS,unitId]')
  .requiredOption('--groups <csv>', 'control groups: id,airHandlers,sensorNodes')
  .option(
    '--gateways <csv>',
    'sensor gateways: id,transport,topicPrefix,host,port (default: the mqtt gateways the sensor nodes name)',
  )
  .option('--out <file>', 'write the site file here (default: stdout)')
  .action(async (o: Record<string, string | undefined>) => {
    const { importSite } = await import('./cli/site-import.ts');
    const r = await importSite({
      siteId: o.siteId!,
      siteName: o.siteName!,
      rooms: o.rooms!,
      racks: o.racks!,
      units: o.units!,
      sensors: o.sensors!,
      groups: o.groups!,
      ...(o.gateways ? { gateways: o.gateways } : {}),
    });
    if (outputFormat(o) === 'json') {
      const count = r.checkingStopped ? { checkingStopped: true } : {};
      process.stdout.write(
        `${jsonText({ ok: r.ok, problems: r.problems, problemCount: r.problemCount, ...count, site: r.site })}\n`,
      );
    } else if (r.ok) {
      if (o.out) {
        // Whole or not at all, never through a link: a daemon may be watching the file.
        await (await import('./cli/site-import.ts')).writeSiteFile(o.out, r.yaml);
        process.stderr.write(`${o.out}: ${r.summary}\n`);
      } else process.stdout.write(r.yaml);
    } else {
      process.stderr.write(`site import: ${r.problemWords}\n${r.problems.map((p) => `  ${p}`).join('\n')}\n`);
    }
    if (!r.ok) process.exitCode = 2;
  });

program
  .command('completion')
  .description(
    'print the shell completion script: bash or zsh (e.g. coolctl completion bash > /etc/bash_completion.d/coolctl)',
  )
  .addArgument(new Argument('<shell>', 'bash or zsh').choices(['bash', 'zsh']))
  .action(async (shell: string) => {
    const { completionScript } = await import('./cli/completion.ts');
    process.stdout.write(completionScript(program, shell));
  });

const profileCommand = program.command('profile').description('device profiles (config/profiles/*.yaml)');
profileCommand
  .command('check <file>')
  .description('check a device profile: its read plan and writes, or every problem with its line (exit 2)')
  .option('--firmware <version>', "the unit's firmware, for points with sinceFirmware")
  .action(async (file: string, o: { firmware?: string; output?: string }) => {
    const { profileCheck } = await import('./cli/profile-check.ts');
    const r = await profileCheck(file, o.firmware !== undefined ? { firmware: o.firmware } : {});
    printOutcome(o, r);
  });
profileCommand
  .command('read')
  .description(
    'commissioning: read every point of a unit once, as its profile maps it (name, raw, value, unit); writes nothing',
  )
  .requiredOption('--unit <id>', 'the air handler, as the site file names it')
  .option(
    '--config <file>',
    'the site file, or a controller config whose site file to use',
    '/etc/coolctl/controller.yaml',
  )
  .option(
    '--profiles <dir>',
    'where profile NAME.yaml files are (default: config/profiles of this installation)',
  )
  .option(
    '--pki <dir>',
    "OPC-UA units: the client's certificate store; a unit is trusted when its certificate is in <dir>/trusted/certs (default: var/opcua-client-pki)",
  )
  .action(async (o: { unit: string; config: string; profiles?: string; pki?: string; output?: string }) => {
    const { profileRead } = await import('./cli/profile-read.ts');
    const r = await profileRead({
      unit: o.unit,
      config: o.config,
      ...(o.profiles !== undefined ? { profilesDir: o.profiles } : {}),
      ...(o.pki !== undefined ? { pkiDir: o.pki } : {}),
    });
    printOutcome(o, r);
  });

program
  .command('pause <group>')
  .description(
    'maintenance: the cluster stops writing the group and hands its units to local control (kept in etcd)',
  )
  .option('--reason <text>', 'why (shown in the audit log and the API)')
  .action(async (group: string, o: ApiOptions & { reason?: string; output?: string }) => {
    const r = await apiCall(
      o,
      'POST',
      `/api/v1/groups/${encodeURIComponent(group)}/pause`,
      o.reason ? { reason: o.reason } : {},
    );
    emit(
      o,
      r,
      () => `${group}: paused — its units run on their local control until: coolctl resume ${group}`,
    );
  });

program
  .command('resume <group>')
  .description('end a pause: the group’s leader takes its units back under control')
  .action(async (group: string, o: ApiOptions & { output?: string }) => {
    const r = await apiCall(o, 'POST', `/api/v1/groups/${encodeURIComponent(group)}/resume`);
    emit(o, r, () => `${group}: resumed`);
  });

program
  .command('override <group> <ahu>')
  .description(
    'an operator override for one unit (kept in etcd): fixed fan %/setpoint, or local control; --clear removes it',
  )
  .option('--fan <pct>', 'fan speed, %')
  .option('--setpoint <c>', 'supply-air setpoint, °C')
  .option('--local', 'hand the unit to its local control')
  .option('--clear', 'remove the override: the control law takes the unit back')
  .action(
    async (
      group: string,
      ahu: string,
      o: ApiOptions & { fan?: string; setpoint?: string; local?: boolean; clear?: boolean; output?: string },
    ) => {
      const path = `/api/v1/groups/${encodeURIComponent(group)}/overrides/${encodeURIComponent(ahu)}`;
      // The ranges are the device contract's (its one owner), loaded only by the command that needs them.
      const { POINT_RANGES } = await import('./unit-contract.ts');
      const point = (option: string, text: string, name: 'fanPct' | 'supplySetpointC', unit: string) =>
        parseNumber(option, text, { ...POINT_RANGES[name], what: `${name}, ${unit}` });
      const body = {
        ...(o.fan !== undefined ? { fanPct: point('--fan', o.fan, 'fanPct', '%') } : {}),
        ...(o.setpoint !== undefined
          ? { supplySetpointC: point('--setpoint', o.setpoint, 'supplySetpointC', '°C') }
          : {}),
        ...(o.local ? { toLocal: true } : {}),
      };
      if (o.clear) {
        if (Object.keys(body).length > 0)
          throw new UsageError('override: --clear goes alone (not with --fan, --setpoint or --local)');
        const r = await apiCall(o, 'DELETE', path);
        emit(o, r, () => `${group}/${ahu}: override removed`);
        return;
      }
      if (Object.keys(body).length === 0)
        throw new UsageError('override: give --fan, --setpoint, --local or --clear');
      const r = await apiCall(o, 'PUT', path, body);
      emit(o, r, () => `${group}/${ahu}: override ${JSON.stringify(body)}`);
    },
  );

/** A text outcome (profile check/read): its text on stdout or stderr, or as JSON with whether it passed. */
function printOutcome(o: { output?: string }, r: { exitCode: number; text: string }): void {
  if (outputFormat(o) === 'json')
    process.stdout.write(`${jsonText({ ok: r.exitCode === 0, exitCode: r.exitCode, text: r.text })}\n`);
  // A unit's strings (OPC-UA values, a profile's texts) go to a terminal: escaped.
  else (r.exitCode === 0 ? process.stdout : process.stderr).write(printableText(r.text));
  process.exitCode = r.exitCode;
}

/**
 * Tests only: `COOLCTL_TEST_CRASH_GROUP=<group>` arms a fault — each SIGUSR2 makes that group's next
 * control step throw, so a test can crash one loop of a real process and watch it restart alone
 * (test/control/daemon-modes.test.ts). Nothing in the real path of a step throws on bad input, so
 * the crash has to be injected; unset (production), nothing is installed.
 */
function testCrashHook(logger: Logger): { beforeStep?: (group: string) => void } {
  const group = process.env.COOLCTL_TEST_CRASH_GROUP;
  if (!group) return {};
  let pending = 0;
  process.on('SIGUSR2', () => {
    pending++;
  });
  logger.warn({ group }, 'test hook armed: SIGUSR2 crashes this group’s next control step');
  return {
    beforeStep: (g) => {
      if (g !== group || pending === 0) return;
      pending--;
      throw new Error(`injected crash of ${g}'s step (COOLCTL_TEST_CRASH_GROUP, SIGUSR2)`);
    },
  };
}

addApiCommands(program);
addAlarmCommands(program);
addUpgradeCommands(program);
// Every command that calls the API takes --api, --token-file and --ca-file (src/cli/api-client.ts).
for (const name of ['status', 'switchover', 'pause', 'resume', 'override'])
  for (const opt of apiOptions()) program.commands.find((c) => c.name() === name)?.addOption(opt);
// --output on every command that prints a result (run and gateway print logs; completion a script).
const NO_OUTPUT = new Set(['run', 'gateway', 'completion']);
const withOutput = (cmd: Command): void => {
  for (const sub of cmd.commands) {
    if (sub.commands.length > 0) withOutput(sub);
    else if (!NO_OUTPUT.has(sub.name()))
      sub.addOption(
        new Option(
          '--output <format>',
          'table or json (default: $COOLCTL_OUTPUT, the CLI config, else table)',
        ).choices(OUTPUT_FORMATS),
      );
  }
};
withOutput(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  // Commander has printed its own refusal; a bug gets its stack.
  if (err instanceof ConfigError)
    process.stderr.write(`coolctl: the configuration is not valid — nothing was started.\n${err.message}\n`);
  else if (err instanceof UsageError || err instanceof CancelledError || err instanceof CoolctlError)
    process.stderr.write(`coolctl: ${printableText(err.message)}\n`);
  else if (!(err instanceof CommanderError))
    process.stderr.write(`coolctl: fatal: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exitCode = exitCodeOf(err);
}
