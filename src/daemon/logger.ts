// The daemons' pino logger. Under systemd, stdout is a stream into the journal, which reads a
// `<N>` syslog level at the start of each line (SyslogLevelPrefix=yes, the default) and would
// otherwise file every line at the unit's default priority (info): each JSON line then starts with
// its level's prefix, so `journalctl -p err` finds the errors. Only when stdout really is that
// stream (JOURNAL_STREAM names its device and inode, as systemd sets it): a terminal, a pipe or a
// file gets plain JSON lines.
import { fstatSync } from 'node:fs';
import {
  type Bindings,
  type ChildLoggerOptions,
  type DestinationStream,
  type Logger,
  type LoggerOptions,
  pino,
} from 'pino';
import { redactSecrets } from '../config/link-secrets.ts';

/** pino level → syslog priority (RFC 5424): fatal crit, error err, warn warning, info, debug/trace debug. */
export function syslogPriority(pinoLevel: number): number {
  if (pinoLevel >= 60) return 2;
  if (pinoLevel >= 50) return 3;
  if (pinoLevel >= 40) return 4;
  if (pinoLevel >= 30) return 6;
  return 7;
}

/**
 * Whether file descriptor `fd` is the journal stream systemd connected: JOURNAL_STREAM is
 * `DEVICE:INODE` of that stream (systemd.exec(5)); a child process that inherited the variable but
 * not the descriptor (a shell redirect) does not match.
 */
export function isJournalStream(
  env: Readonly<Record<string, string | undefined>>,
  fd = 1,
  stat: (fd: number) => { dev: number | bigint; ino: number | bigint } = (f) =>
    fstatSync(f, { bigint: true }),
): boolean {
  const m = /^(\d+):(\d+)$/.exec(env['JOURNAL_STREAM'] ?? '');
  if (!m) return false;
  try {
    const st = stat(fd);
    return String(st.dev) === m[1] && String(st.ino) === m[2];
  } catch {
    return false;
  }
}

/** A destination that writes each line to `dest` behind its level's `<N>` prefix. */
export function syslogPrefixed(dest: { write(s: string): unknown }): DestinationStream {
  // pino hands a destination that asks for it the level of the line it is about to write.
  const stream = {
    [pino.symbols.needsMetadataGsym]: true,
    lastLevel: 30,
    write(s: string): void {
      dest.write(`<${syslogPriority(stream.lastLevel)}>${s}`);
    },
  };
  return stream as unknown as DestinationStream;
}

/** `logger`, whose children (and theirs: a child's methods are its parent's) redact their bindings. */
function withRedactedChildren(logger: Logger): Logger {
  type Child = (this: Logger, bindings: Bindings, options?: ChildLoggerOptions<string>) => Logger;
  const child = logger.child as unknown as Child;
  const redacting: Child = function (bindings, options) {
    return child.call(this, redactSecrets(bindings), options);
  };
  logger.child = redacting as unknown as Logger['child'];
  return logger;
}

/**
 * The daemon's logger: pino JSON lines on stdout (`dest`, for tests), each behind its syslog level
 * prefix when stdout is the journal. Link secrets never reach a line: each log object and the base
 * bindings pass through redactSecrets (src/config/link-secrets.ts), and withRedactedChildren covers
 * every child logger's bindings (pino applies `formatters.bindings` to the root's only).
 */
export function daemonLogger(
  opts: LoggerOptions,
  env: Readonly<Record<string, string | undefined>>,
  dest: DestinationStream = pino.destination(1),
  journal = isJournalStream(env),
): Logger {
  const options = {
    ...opts,
    formatters: { ...opts.formatters, log: redactSecrets, bindings: redactSecrets },
  };
  return withRedactedChildren(pino(options, journal ? syslogPrefixed(dest) : dest) as Logger);
}
