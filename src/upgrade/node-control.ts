// How a rolling upgrade stops, re-points and starts one node. On a gateway: `systemctl stop
// coolctl@NODE` (the unit's stop resigns every group first: the others take them within ~0.2 s),
// `current` switched in the node's release root, `systemctl start coolctl@NODE` (its ExecStart
// runs /opt/coolctl/current/…). Each step can be a command instead (e.g. over ssh, one node per
// host), with {node} and {version} filled in. Tests supply their own (kill and spawn a process).
import { execFile } from 'node:child_process';
import { CoolctlError, ErrorCodes, InputRefusedError } from '../errors.ts';
import { ReleaseStore } from './releases.ts';

export interface NodeControl {
  /** Stops the node gracefully; resolves when it has exited. */
  stop(node: string, signal: AbortSignal): Promise<void>;
  /** Points the node at an installed release (it starts on it next time). */
  activate(node: string, version: string, signal: AbortSignal): Promise<void>;
  /** Starts the node; resolves when it was started (readiness is the caller's to wait for). */
  start(node: string, signal: AbortSignal): Promise<void>;
}

export interface SystemdControlOptions {
  /** The release root on this host; `{node}` is replaced (default /opt/coolctl). */
  root?: string;
  /** Defaults: `systemctl stop coolctl@{node}`, `systemctl start coolctl@{node}`. */
  stopCommand?: string;
  startCommand?: string;
  /** Instead of switching `current` under `root` here (e.g. `ssh {node} coolctl release activate {version}`). */
  activateCommand?: string;
}

/** `{node}` and `{version}` filled in, each value checked to be a plain name first. */
export function fillCommand(template: string, values: { node: string; version?: string }): string {
  for (const [k, v] of Object.entries(values))
    if (v !== undefined && !/^[0-9A-Za-z][0-9A-Za-z.+_@-]*$/.test(v))
      throw new InputRefusedError(ErrorCodes.UPGRADE_REFUSED, `${k} "${v}" cannot go into a command`);
  return template.replaceAll('{node}', values.node).replaceAll('{version}', values.version ?? '');
}

function sh(command: string, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('/bin/sh', ['-c', command], { signal, encoding: 'utf8' }, (err, _out, stderr) => {
      if (!err) return resolve();
      reject(
        new CoolctlError(
          ErrorCodes.UPGRADE_FAILED,
          `\`${command}\` failed: ${stderr.trim() || (err as Error).message}`,
          { cause: err },
        ),
      );
    });
  });
}

export class SystemdNodeControl implements NodeControl {
  private readonly o: Required<Omit<SystemdControlOptions, 'activateCommand'>> & { activateCommand?: string };

  constructor(o: SystemdControlOptions = {}) {
    this.o = {
      root: o.root ?? '/opt/coolctl',
      stopCommand: o.stopCommand ?? 'systemctl stop coolctl@{node}',
      startCommand: o.startCommand ?? 'systemctl start coolctl@{node}',
      ...(o.activateCommand ? { activateCommand: o.activateCommand } : {}),
    };
  }

  /** The release store of a node on this host. */
  store(node: string): ReleaseStore {
    return new ReleaseStore(fillCommand(this.o.root, { node }));
  }

  stop(node: string, signal: AbortSignal): Promise<void> {
    return sh(fillCommand(this.o.stopCommand, { node }), signal);
  }

  async activate(node: string, version: string, signal: AbortSignal): Promise<void> {
    if (this.o.activateCommand) return sh(fillCommand(this.o.activateCommand, { node, version }), signal);
    await this.store(node).activate(version);
  }

  start(node: string, signal: AbortSignal): Promise<void> {
    return sh(fillCommand(this.o.startCommand, { node }), signal);
  }
}
