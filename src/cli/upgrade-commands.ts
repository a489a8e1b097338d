// `coolctl release install|list|show|activate` (this host's releases under /opt/coolctl) and `coolctl
// upgrade VERSION` / `coolctl rollback`: the rolling upgrade of the whole cluster, node by node
// (src/upgrade/rolling.ts, docs/upgrade.md "Rolling upgrade"). Each imports the upgrade modules only
// when it runs.
import type { Command } from 'commander';
import { logLevelOption, parseDuration } from '../util/cli-args.ts';
import { type ApiOptions, ApiUsageError, apiClient, apiOptions } from './api-client.ts';
import { emit, formatTable } from './cli-config.ts';

const DEFAULT_ROOT = '/opt/coolctl';

interface RollingCliOptions extends ApiOptions {
  root: string;
  nodes?: string;
  stopCmd?: string;
  startCmd?: string;
  activateCmd?: string;
  showCmd?: string;
  handoverTimeout: string;
  rejoinTimeout: string;
  logLevel: string;
  output?: string;
}

/** `500`, `500ms`, `10s`, `2m` → ms; anything else is a usage error. */
export function parseDurationMs(option: string, text: string): number {
  const ms = parseDuration(option, text, {
    bare: 'ms',
    units: ['ms', 's', 'm'],
    minMs: 100,
    maxMs: 3_600_000,
    example: '500ms, 10s or 2m',
    range: 'between 100ms and 60m',
  });
  return Math.round(ms);
}

async function runRolling(target: string | undefined, o: RollingCliOptions, verb: 'upgrade' | 'rollback') {
  const [
    { pino },
    { ReleaseStore },
    { SystemdNodeControl, fillCommand },
    { ClusterReader },
    { rollingUpgrade },
  ] = await Promise.all([
    import('pino'),
    import('../upgrade/releases.ts'),
    import('../upgrade/node-control.ts'),
    import('../upgrade/cluster-view.ts'),
    import('../upgrade/rolling.ts'),
  ]);
  const handoverTimeoutMs = parseDurationMs('--handover-timeout', o.handoverTimeout);
  const rejoinTimeoutMs = parseDurationMs('--rejoin-timeout', o.rejoinTimeout);
  const nodes = o.nodes
    ?.split(',')
    .map((n) => n.trim())
    .filter(Boolean);
  // An empty list would be an upgrade of no node that reports success.
  if (nodes?.length === 0)
    throw new ApiUsageError(
      `--nodes ${JSON.stringify(o.nodes)}: names no node; give a,b,c, or leave it out for every member`,
    );
  // The releases this host knows: their manifests give each release's wire range.
  const rootNode = nodes?.[0];
  if (o.root.includes('{node}') && !rootNode)
    throw new ApiUsageError(
      `--root ${o.root} names {node}: give --nodes (the first node's releases are read)`,
    );
  const store = new ReleaseStore(rootNode ? fillCommand(o.root, { node: rootNode }) : o.root);
  const version = target ?? (await store.linked('previous'));
  if (!version)
    throw new ApiUsageError(
      `${verb}: ${store.root} has no previous release; give the version (coolctl release list)`,
    );
  const release = await store.get(version);
  // Refuses commands that could not check a node or put its links back, before the cluster is read;
  // whether every node has the release is the rolling upgrade's to check (through `control`).
  const control = new SystemdNodeControl({
    root: o.root,
    ...(o.stopCmd ? { stopCommand: o.stopCmd } : {}),
    ...(o.startCmd ? { startCommand: o.startCmd } : {}),
    ...(o.activateCmd ? { activateCommand: o.activateCmd } : {}),
    ...(o.showCmd ? { showCommand: o.showCmd } : {}),
  });
  const logger = pino({ level: o.logLevel, base: { app: 'coolctl', command: verb } }, pino.destination(2));
  const report = await rollingUpgrade({
    reader: new ClusterReader(apiClient(o)),
    control,
    to: { version, wire: release.manifest.wire },
    wireOf: (v) =>
      store.get(v).then(
        (r) => r.manifest.wire,
        () => null,
      ),
    ...(nodes ? { nodes } : {}),
    logger,
    handoverTimeoutMs,
    rejoinTimeoutMs,
  });
  emit(o, report, () =>
    [
      `${verb} to ${report.to}: ${report.steps.length} nodes in ${(report.totalMs / 1000).toFixed(1)} s`,
      formatTable(
        ['node', 'from', 'to', 'handover ms', 'ready ms', 'leads again ms', 'leads', 'links (node@wire)'],
        report.steps.map((s) =>
          s.skipped
            ? [s.node, s.from, s.to, 'already there', '-', '-', '-', '-']
            : [
                s.node,
                s.from,
                s.to,
                s.handoverMs,
                s.readyMs,
                s.rejoinMs,
                s.ledAfter.join(',') || '-',
                s.links.map((l) => `${l.from}@${l.wire ?? '-'}`).join(' '),
              ],
        ),
      ),
    ].join('\n'),
  );
}

export function addUpgradeCommands(program: Command): void {
  const rootOption = (c: Command) =>
    c.option(
      '--root <dir>',
      `the release root (releases/VERSION, current, previous); {node} is the node's name`,
      DEFAULT_ROOT,
    );

  const release = program
    .command('release')
    .description(`this host's installed releases (${DEFAULT_ROOT}/releases)`);
  rootOption(
    release
      .command('install <bundle>')
      .description(
        'install a release folder or bundle (.tar.gz) beside the others; changes nothing that runs',
      ),
  ).action(async (bundle: string, o: { root: string; output?: string }) => {
    const { ReleaseStore } = await import('../upgrade/releases.ts');
    const r = await new ReleaseStore(o.root).install(bundle);
    emit(
      o,
      { ...r.release, installed: r.installed },
      () =>
        `${r.release.version} (wire ${r.release.manifest.wire.oldest}..${r.release.manifest.wire.version}) ${r.installed ? 'installed in' : 'already installed in'} ${r.release.dir}`,
    );
  });
  rootOption(
    release.command('list').description('installed releases, and which is current and previous'),
  ).action(async (o: { root: string; output?: string }) => {
    const { ReleaseStore } = await import('../upgrade/releases.ts');
    const list = await new ReleaseStore(o.root).list();
    emit(o, list, () =>
      formatTable(
        ['version', 'wire', 'current', 'previous', 'dir'],
        list.map((r) => [
          r.version,
          `${r.manifest.wire.oldest}..${r.manifest.wire.version}`,
          r.current ? 'yes' : '',
          r.previous ? 'yes' : '',
          r.dir,
        ]),
      ),
    );
  });
  rootOption(
    release
      .command('show <version>')
      .description(
        'an installed release, checked intact, and where current and previous point (exit 2: not installed or damaged)',
      ),
  ).action(async (version: string, o: { root: string; output?: string }) => {
    const { ReleaseStore } = await import('../upgrade/releases.ts');
    const store = new ReleaseStore(o.root);
    const r = await store.check(version);
    const [current, previous] = await Promise.all([store.linked('current'), store.linked('previous')]);
    emit(
      o,
      { ...r, links: { current, previous } },
      () =>
        `${r.version} (wire ${r.manifest.wire.oldest}..${r.manifest.wire.version}) intact in ${r.dir}; current: ${current ?? 'none'}, previous: ${previous ?? 'none'}`,
    );
  });
  rootOption(
    release
      .command('activate <version>')
      .description('point current at an installed release (this node starts on it next time; no restart)')
      .option(
        '--previous <version>',
        'point previous at this release (none: no previous) instead of at what current was; how a failed upgrade step puts a node back',
      ),
  ).action(async (version: string, o: { root: string; previous?: string; output?: string }) => {
    const { ReleaseStore, NO_RELEASE } = await import('../upgrade/releases.ts');
    const previous =
      o.previous === undefined ? {} : { previous: o.previous === NO_RELEASE ? null : o.previous };
    const r = await new ReleaseStore(o.root).activate(version, previous);
    emit(o, r, () => `current: ${r.from ?? 'none'} → ${r.to}, previous: ${r.previous ?? 'none'}`);
  });

  const rolling = (c: Command) => {
    rootOption(c)
      .option('--nodes <a,b,c>', 'the nodes, in order (default: every member, by name)')
      .option('--stop-cmd <cmd>', 'stops a node gracefully (default: systemctl stop coolctl@{node})')
      .option('--start-cmd <cmd>', 'starts a node (default: systemctl start coolctl@{node})')
      .option(
        '--activate-cmd <cmd>',
        'points a node at {version} and its previous at {previous} (default: switch the links under --root on this host), e.g. ssh {node} coolctl release activate {version} --previous {previous}',
      )
      .option(
        '--show-cmd <cmd>',
        'with --activate-cmd: exit 0 and the JSON of release show when a node has {version} intact, exit 2 when not, e.g. ssh {node} coolctl release show {version} --output json',
      )
      .option('--handover-timeout <duration>', 'stop → every group driven by the others', '10s')
      .option('--rejoin-timeout <duration>', 'start → ready, leading again, every group driven', '2m')
      .addOption(logLevelOption('progress log on stderr (pino JSON)'));
    for (const opt of apiOptions()) c.addOption(opt);
    return c;
  };
  rolling(
    program
      .command('upgrade <version>')
      .description(
        'rolling upgrade to an installed release: node by node, hand its groups over, restart it on the release, wait until it leads again',
      ),
  ).action((version: string, o: RollingCliOptions) => runRolling(version, o, 'upgrade'));
  rolling(
    program
      .command('rollback [version]')
      .description('the rolling upgrade back to the previous release (or VERSION), the same way'),
  ).action((version: string | undefined, o: RollingCliOptions) => runRolling(version, o, 'rollback'));
}
