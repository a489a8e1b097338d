// How a rolling upgrade checks, stops, re-points and starts one node. On a gateway: the release
// store under the node's root answers whether a release is installed and intact and where `current`
// and `previous` point, and switches them; `systemctl stop coolctl@NODE` (the unit's stop resigns
// every group first: the others take them within ~0.2 s) and `systemctl start coolctl@NODE` (its
// ExecStart runs /opt/coolctl/current/…). Each step can be a command instead (e.g. over ssh, one node
// per host), with {node}, {version} and {previous} filled in. Tests supply their own.
import { execFile } from 'node:child_process';
import { CoolctlError, ErrorCodes, InputRefusedError } from '../errors.ts';
import { NO_RELEASE, ReleaseStore } from './releases.ts';

/** Where a node's `current` and `previous` point (null: no such link). */
export interface ReleaseLinks {
  current: string | null;
  previous: string | null;
}

/** A release present and intact where the node starts from (and its links), or why it is not. */
export type ReleaseCheck = { installed: true; links: ReleaseLinks } | { installed: false; reason: string };

export interface NodeControl {
  /**
   * Whether `version` is installed and intact where the node starts from, with where its links
   * point. Resolves `installed: false` with the reason when the node's root lacks it or holds it
   * damaged; rejects when that cannot be found out (a host that does not answer).
   */
  hasRelease(node: string, version: string, signal: AbortSignal): Promise<ReleaseCheck>;
  /** Stops the node gracefully; resolves when it has exited. */
  stop(node: string, signal: AbortSignal): Promise<void>;
  /**
   * Points the node's `current` at an installed release (it starts on it next time) and its
   * `previous` at `previous` (null: none): both explicit, so a failed step puts them back as they were.
   */
  activate(node: string, version: string, previous: string | null, signal: AbortSignal): Promise<void>;
  /** Starts the node; resolves when it was started (readiness is the caller's to wait for). */
  start(node: string, signal: AbortSignal): Promise<void>;
}

export interface SystemdControlOptions {
  /** The release root on this host; `{node}` is replaced (default /opt/coolctl). */
  root?: string;
  /** Defaults: `systemctl stop coolctl@{node}`, `systemctl start coolctl@{node}`. */
  stopCommand?: string;
  startCommand?: string;
  /**
   * Instead of switching the links under `root` here, e.g. `ssh {node} coolctl release activate
   * {version} --previous {previous}`. Given with `showCommand`, and must pass `{previous}`.
   */
  activateCommand?: string;
  /**
   * Instead of reading the store under `root` here, e.g. `ssh {node} coolctl release show {version}
   * --output json`: exit 0 and that JSON (the release and the root's `links`) when the release is
   * installed and intact, exit 2 when it is not (the CLI's exit code for a release not installed).
   */
  showCommand?: string;
}

/** `{node}`, `{version}` and `{previous}` filled in, each value checked to be a plain name first. */
export function fillCommand(
  template: string,
  values: { node: string; version?: string; previous?: string | null },
): string {
  const previous = values.previous === null ? NO_RELEASE : values.previous;
  for (const [k, v] of Object.entries({ ...values, previous }))
    if (v !== undefined && !/^[0-9A-Za-z][0-9A-Za-z.+_@-]*$/.test(v))
      throw new InputRefusedError(ErrorCodes.UPGRADE_REFUSED, `${k} "${v}" cannot go into a command`);
  return template
    .replaceAll('{node}', values.node)
    .replaceAll('{version}', values.version ?? '')
    .replaceAll('{previous}', previous ?? '');
}

/** A command's failure: its exit code (null: it did not exit on its own) and what it said. */
class CommandFailed extends CoolctlError {
  readonly exitCode: number | null;
  constructor(command: string, exitCode: number | null, said: string, cause: unknown) {
    super(ErrorCodes.UPGRADE_FAILED, `\`${command}\` failed: ${said}`, { cause });
    this.exitCode = exitCode;
  }
}

function sh(command: string, signal: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      '/bin/sh',
      ['-c', command],
      { signal, encoding: 'utf8', maxBuffer: 1 << 20 },
      (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        const code = typeof err.code === 'number' ? err.code : null;
        reject(new CommandFailed(command, code, stderr.trim() || err.message, err));
      },
    );
  });
}

const LINK_NAME = /^[0-9A-Za-z][0-9A-Za-z.+_-]*$/;

/** The `links` of `coolctl release show --output json`, or an error saying what the output lacked. */
function parseShown(command: string, stdout: string): ReleaseLinks {
  let links: unknown;
  try {
    links = (JSON.parse(stdout) as { links?: unknown }).links;
  } catch {
    links = undefined;
  }
  const l = links as { current?: unknown; previous?: unknown } | undefined;
  const ok = (v: unknown) => v === null || (typeof v === 'string' && LINK_NAME.test(v));
  if (typeof l !== 'object' || l === null || !ok(l.current) || !ok(l.previous))
    throw new CoolctlError(
      ErrorCodes.UPGRADE_REFUSED,
      `\`${command}\` did not print what \`coolctl release show VERSION --output json\` prints (the release and its root's links): give --output json`,
    );
  return { current: l.current as string | null, previous: l.previous as string | null };
}

export class SystemdNodeControl implements NodeControl {
  private readonly o: Required<Omit<SystemdControlOptions, 'activateCommand' | 'showCommand'>> & {
    activateCommand?: string;
    showCommand?: string;
  };

  /** Refuses (InputRefusedError) commands that cannot check a node or put its links back. */
  constructor(o: SystemdControlOptions = {}) {
    if (Boolean(o.activateCommand) !== Boolean(o.showCommand))
      throw new InputRefusedError(
        ErrorCodes.UPGRADE_REFUSED,
        `${o.activateCommand ? 'an activate command' : 'a show command'} needs ${o.activateCommand ? 'a show command' : 'an activate command'} beside it (--activate-cmd 'ssh {node} coolctl release activate {version} --previous {previous}' --show-cmd 'ssh {node} coolctl release show {version} --output json'): the releases a node starts from are then on its host, checked and switched there`,
      );
    if (o.activateCommand && !o.activateCommand.includes('{previous}'))
      throw new InputRefusedError(
        ErrorCodes.UPGRADE_REFUSED,
        `the activate command \`${o.activateCommand}\` does not pass {previous} (… coolctl release activate {version} --previous {previous}): a node that fails on the new release could not be put back with its previous release as it was`,
      );
    this.o = {
      root: o.root ?? '/opt/coolctl',
      stopCommand: o.stopCommand ?? 'systemctl stop coolctl@{node}',
      startCommand: o.startCommand ?? 'systemctl start coolctl@{node}',
      ...(o.activateCommand ? { activateCommand: o.activateCommand } : {}),
      ...(o.showCommand ? { showCommand: o.showCommand } : {}),
    };
  }

  /** The release store of a node on this host. */
  store(node: string): ReleaseStore {
    return new ReleaseStore(fillCommand(this.o.root, { node }));
  }

  async hasRelease(node: string, version: string, signal: AbortSignal): Promise<ReleaseCheck> {
    if (this.o.showCommand) {
      const command = fillCommand(this.o.showCommand, { node, version });
      try {
        return { installed: true, links: parseShown(command, await sh(command, signal)) };
      } catch (err) {
        // 2: the CLI refused the version given (not installed, damaged); anything else says nothing.
        if (err instanceof CommandFailed && err.exitCode === 2)
          return { installed: false, reason: err.message };
        throw err;
      }
    }
    const store = this.store(node);
    try {
      await store.check(version);
    } catch (err) {
      if (err instanceof InputRefusedError) return { installed: false, reason: err.message };
      throw err;
    }
    const [current, previous] = await Promise.all([store.linked('current'), store.linked('previous')]);
    return { installed: true, links: { current, previous } };
  }

  stop(node: string, signal: AbortSignal): Promise<void> {
    return sh(fillCommand(this.o.stopCommand, { node }), signal).then(() => {});
  }

  async activate(node: string, version: string, previous: string | null, signal: AbortSignal): Promise<void> {
    if (this.o.activateCommand) {
      await sh(fillCommand(this.o.activateCommand, { node, version, previous }), signal);
      return;
    }
    signal.throwIfAborted();
    await this.store(node).activate(version, { previous });
  }

  start(node: string, signal: AbortSignal): Promise<void> {
    return sh(fillCommand(this.o.startCommand, { node }), signal).then(() => {});
  }
}
