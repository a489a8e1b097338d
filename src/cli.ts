// The `coolctl` command, patronictl-like: `run` starts a controller node; `status`, `switchover`,
// `pause`/`resume`, `override` and `config validate` talk to a running cluster or check a file.
// The only module that touches `process`: arguments, signals, exit codes (0 clean stop, 1 start-up
// or request failure, 2 invalid config or usage).
// Each command imports what it runs when it runs: the controller (etcd, OPC-UA, fastify) costs
// seconds to load on a small gateway, and `--help`, `status` or `profile check` need none of it.
import { Command, CommanderError } from 'commander';
import type { Logger } from 'pino';
import { addAlarmCommands } from './cli/alarm-commands.ts';
import {
  type ApiOptions,
  ApiUsageError,
  apiCall,
  apiOptions,
  apiRequest,
  DEFAULT_API,
} from './cli/api-client.ts';
import { addApiCommands } from './cli/api-commands.ts';
import { ConfigError, CoolctlError, ErrorCodes } from './errors.ts';
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
Exit codes: 0 done, 1 failed, or refused by or refusing the server; 2 invalid config or usage
(a missing or unreadable CA file included).`,
  );

program
  .command('run')
  .description('run one controller node')
  .requiredOption('--config <file>', 'controller config file (YAML)')
  .requiredOption('--node <name>', 'this node’s name, one of the config’s nodes')
  .option('--log-level <level>', 'pino log level', 'info')
  .action(async (o: { config: string; node: string; logLevel: string }) => {
    const [
      { daemonLogger },
      { loadControllerConfig },
      { LOG_REDACT_PATHS },
      { ConfigWatcher },
      { Controller },
      { SdNotify },
    ] = await Promise.all([
      import('./daemon/logger.ts'),
      import('./config/controller-config.ts'),
      import('./config/link-secrets.ts'),
      import('./daemon/config-watch.ts'),
      import('./daemon/controller.ts'),
      import('./daemon/sd-notify.ts'),
    ]);
    // Each line behind its syslog level when stdout is the journal (`journalctl -p err`).
    const logger = daemonLogger(
      { level: o.logLevel, base: { app: 'coolctl', node: o.node }, redact: LOG_REDACT_PATHS },
      process.env,
    );
    const cfg = await loadControllerConfig(o.config, o.node);
    const controller = new Controller(cfg, { logger, ...testCrashHook(logger) });
    const systemd = new SdNotify(process.env, process.pid, logger);
    let stopping = false;
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'stopping: resigning every group');
      void systemd.stopping();
      controller.stop().then(() => {
        process.exitCode = 0;
        // Everything is closed; a stray handle must not keep a stopped service alive.
        setTimeout(() => process.exit(0), 2000).unref();
      });
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    await controller.start();
    process.stdout.write(`coolctl: node ${cfg.node} running, API ${controller.url}\n`);
    await systemd.ready(`node ${cfg.node}: ${cfg.site.controlGroups.length} groups, API ${controller.url}`);
    systemd.startWatchdog(() => controller.loopHealth());
    // Hot reload on SIGHUP (systemctl reload) or when the config or site file changes.
    const reload = (why: string): void => {
      if (stopping) return;
      logger.info({ why }, 'reloading the config');
      void systemd.reloading();
      controller
        .reload()
        .then(() => systemd.ready(`node ${cfg.node}: config reloaded`))
        .catch((err: unknown) => {
          // A refused file was logged with its problems; anything else is a bug worth a line.
          if (!(err instanceof ConfigError)) logger.error({ err }, 'config reload failed while applying');
          return systemd.ready(`node ${cfg.node}: config reload refused, running config kept`);
        });
    };
    process.on('SIGHUP', () => reload('SIGHUP'));
    const watcher = new ConfigWatcher([cfg.file, cfg.sitePath], () => reload('config file changed'), logger);
    process.once('exit', () => watcher.close());
  });

program
  .command('gateway')
  .description('run a fencing gateway: Modbus TCP for controllers in front of units that cannot check epochs')
  .requiredOption('--config <file>', 'gateway config file (YAML, docs/fencing-gateway.md)')
  .option('--log-level <level>', 'pino log level', 'info')
  .action(async (o: { config: string; logLevel: string }) => {
    // Its own module and entry (the systemd unit runs src/gateway/main.ts, without the controller).
    const { runGateway } = await import('./gateway/main.ts');
    await runGateway(o);
  });

program
  .command('status')
  .description('show the cluster: members, and per group its leader and epoch')
  .option('--json', 'print the raw JSON')
  .action(async (o: ApiOptions & { json?: boolean }) => {
    const c = (await apiCall(o, 'GET', '/api/v1/cluster')) as {
      node: string;
      members: { node: string; apiUrl: string }[];
      groups: { id: string; leader: string | null; epoch: number | null }[];
    };
    if (o.json) {
      process.stdout.write(`${JSON.stringify(c, null, 2)}\n`);
      return;
    }
    const lines = [
      `members: ${c.members.map((m) => `${m.node} (${m.apiUrl})`).join(', ') || '(none)'}`,
      '',
      'group        leader       epoch',
    ];
    for (const g of c.groups)
      lines.push(`${g.id.padEnd(12)} ${(g.leader ?? '-').padEnd(12)} ${g.epoch ?? '-'}`);
    process.stdout.write(`${lines.join('\n')}\n`);
  });

program
  .command('switchover <group>')
  .description('hand a control group to another node, gracefully')
  .requiredOption('--to <node>', 'the node that should lead the group')
  .action(async (group: string, o: ApiOptions & { to: string }) => {
    // The leader can change between reading the cluster and asking it (rebalancing, a failover,
    // a node that has just won and not yet proven its lease, a leader briefly fenced): ask again,
    // every 0.5 s, for up to 10 s.
    for (let attempt = 1; ; attempt++) {
      const c = (await apiCall(o, 'GET', '/api/v1/cluster')) as {
        members: { node: string; apiUrl: string }[];
        groups: { id: string; leader: string | null }[];
      };
      const g = c.groups.find((x) => x.id === group);
      if (!g)
        throw new UsageError(`unknown group "${group}"; groups: ${c.groups.map((x) => x.id).join(', ')}`);
      const leader = c.members.find((m) => m.node === g.leader);
      if (leader) {
        const res = await apiRequest<{ message?: string; tookMs?: number }>(
          o,
          'POST',
          `${leader.apiUrl}/api/v1/groups/${encodeURIComponent(group)}/switchover`,
          { to: o.to },
          15_000,
        );
        const body = res.body;
        if (res.status < 300) {
          process.stdout.write(`${group}: ${g.leader} → ${o.to} in ${body.tookMs} ms\n`);
          return;
        }
        if (res.status !== 409 || attempt >= 20) {
          throw new CoolctlError(
            ErrorCodes.BAD_REQUEST,
            `switchover refused (${res.status}): ${body.message}`,
          );
        }
      } else if (attempt >= 20) {
        throw new CoolctlError(ErrorCodes.NOT_LEADER, `group ${group} has no leader right now; try again`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  });

program
  .command('config')
  .description('configuration tools')
  .command('validate <file>')
  .description('check a controller config (and its site file) and list every problem')
  .option('--node <name>', 'check it for this node (default: the first node)')
  .action(async (file: string, o: { node?: string }) => {
    const { loadControllerConfig } = await import('./config/controller-config.ts');
    const node = o.node ?? (await firstNode(file));
    const cfg = await loadControllerConfig(file, node);
    process.stdout.write(
      `${file}: valid — ${cfg.site.controlGroups.length} groups, ${cfg.site.airHandlers.length} air handlers, ` +
        `${Object.keys(cfg.nodes).length} nodes, lease TTL ${cfg.cluster.leaseTtlS} s\n`,
    );
  });

const profileCommand = program.command('profile').description('device profiles (config/profiles/*.yaml)');
profileCommand
  .command('check <file>')
  .description('check a device profile: its read plan and writes, or every problem with its line (exit 1)')
  .option('--firmware <version>', "the unit's firmware, for points with sinceFirmware")
  .action(async (file: string, o: { firmware?: string }) => {
    const { profileCheck } = await import('./cli/profile-check.ts');
    const r = await profileCheck(file, o.firmware !== undefined ? { firmware: o.firmware } : {});
    (r.exitCode === 0 ? process.stdout : process.stderr).write(r.text);
    process.exitCode = r.exitCode;
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
  .action(async (o: { unit: string; config: string; profiles?: string; pki?: string }) => {
    const { profileRead } = await import('./cli/profile-read.ts');
    const r = await profileRead({
      unit: o.unit,
      config: o.config,
      ...(o.profiles !== undefined ? { profilesDir: o.profiles } : {}),
      ...(o.pki !== undefined ? { pkiDir: o.pki } : {}),
    });
    (r.exitCode === 0 ? process.stdout : process.stderr).write(r.text);
    process.exitCode = r.exitCode;
  });

program
  .command('pause <group>')
  .description(
    'maintenance: the cluster stops writing the group and hands its units to local control (kept in etcd)',
  )
  .option('--reason <text>', 'why (shown in the audit log and the API)')
  .action(async (group: string, o: ApiOptions & { reason?: string }) => {
    await apiCall(
      o,
      'POST',
      `/api/v1/groups/${encodeURIComponent(group)}/pause`,
      o.reason ? { reason: o.reason } : {},
    );
    process.stdout.write(
      `${group}: paused — its units run on their local control until: coolctl resume ${group}\n`,
    );
  });

program
  .command('resume <group>')
  .description('end a pause: the group’s leader takes its units back under control')
  .action(async (group: string, o: ApiOptions) => {
    await apiCall(o, 'POST', `/api/v1/groups/${encodeURIComponent(group)}/resume`);
    process.stdout.write(`${group}: resumed\n`);
  });

program
  .command('override <group> <ahu>')
  .description(
    'an operator override for one unit (kept in etcd): fixed fan %/setpoint, or local control; --clear removes it',
  )
  .option('--fan <pct>', 'fan speed, %', Number)
  .option('--setpoint <c>', 'supply-air setpoint, °C', Number)
  .option('--local', 'hand the unit to its local control')
  .option('--clear', 'remove the override: the control law takes the unit back')
  .action(
    async (
      group: string,
      ahu: string,
      o: ApiOptions & { fan?: number; setpoint?: number; local?: boolean; clear?: boolean },
    ) => {
      const path = `/api/v1/groups/${encodeURIComponent(group)}/overrides/${encodeURIComponent(ahu)}`;
      if (o.clear) {
        await apiCall(o, 'DELETE', path);
        process.stdout.write(`${group}/${ahu}: override removed\n`);
        return;
      }
      const body = {
        ...(o.fan !== undefined ? { fanPct: o.fan } : {}),
        ...(o.setpoint !== undefined ? { supplySetpointC: o.setpoint } : {}),
        ...(o.local ? { toLocal: true } : {}),
      };
      if (Object.keys(body).length === 0)
        throw new UsageError('override: give --fan, --setpoint, --local or --clear');
      await apiCall(o, 'PUT', path, body);
      process.stdout.write(`${group}/${ahu}: override ${JSON.stringify(body)}\n`);
    },
  );

class UsageError extends Error {}

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

async function firstNode(file: string): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  const { parse } = await import('yaml');
  try {
    const doc = parse(await readFile(file, 'utf8')) as { nodes?: Record<string, unknown> };
    return Object.keys(doc?.nodes ?? {})[0] ?? '(none)';
  } catch {
    return '(none)'; // the loader reports the real problem
  }
}

addApiCommands(program);
addAlarmCommands(program);
// Every command that calls the API takes --api, --token-file and --ca-file (src/cli/api-client.ts).
for (const name of ['status', 'switchover', 'pause', 'resume', 'override'])
  for (const opt of apiOptions()) program.commands.find((c) => c.name() === name)?.addOption(opt);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode === 0 ? 0 : 2;
  } else if (err instanceof ConfigError) {
    process.stderr.write(`coolctl: the configuration is not valid — nothing was started.\n${err.message}\n`);
    process.exitCode = 2;
  } else if (err instanceof UsageError || err instanceof ApiUsageError) {
    process.stderr.write(`coolctl: ${err.message}\n`);
    process.exitCode = 2;
  } else if (err instanceof CoolctlError) {
    process.stderr.write(`coolctl: ${err.message}\n`);
    process.exitCode = 1;
  } else {
    process.stderr.write(`coolctl: fatal: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  }
}
