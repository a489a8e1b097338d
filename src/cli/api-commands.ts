// The CLI's commands for the secure control plane: sign in (prints a session token to export as
// COOLCTL_TOKEN), users and API tokens (admin), and the cluster's audit trail (`history`).
// Passwords come from a file or standard input (a prompt without echo on a terminal), never from an
// argument. Every string of the server's a line prints is escaped (./printable.ts).
import { type Command, Option } from 'commander';
import { ROLES } from '../api/auth/roles.ts';
import { numberOption } from '../util/cli-args.ts';
import { jsonText, printable } from '../util/printable.ts';
import { type ApiOptions, apiCall, apiOptions } from './api-client.ts';
import { outputFormat } from './cli-config.ts';
import { readSecret } from './secret-input.ts';

function withApi(cmd: Command): Command {
  for (const o of apiOptions()) cmd.addOption(o);
  return cmd;
}

/** The password for `user`: --password-file, else a prompt on a terminal, else stdin's first line. */
function password(file: string | undefined, prompt: string, confirm = false): Promise<string> {
  return readSecret({ file, input: process.stdin, output: process.stderr, prompt, confirm });
}

/**
 * The API's bounds, which its schemas own (src/api/routes/auth.ts MAX_TOKEN_TTL_S, 366 days;
 * src/api/routes/audit.ts, limit ≤ 1000): checked here too, so a bad value never leaves the CLI.
 */
const MAX_TOKEN_TTL_DAYS = 366;
const MAX_HISTORY_ENTRIES = 1000;

const print = (s: string): void => {
  process.stdout.write(`${s}\n`);
};
const printJson = (v: unknown): void => print(jsonText(v));
/** A time of the server's (ms since the epoch); one no date can hold (1e300) is shown as the number. */
const when = (ms: unknown) =>
  typeof ms === 'number' && !Number.isNaN(new Date(ms).getTime())
    ? new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z')
    : printable(ms ?? '-');
/** A string of the server's, as a line may print it. */
const s = (x: unknown): string => printable(x ?? '-');

export function addApiCommands(program: Command): void {
  withApi(
    program
      .command('login')
      .description('sign in; prints a session token (export it as COOLCTL_TOKEN)')
      .requiredOption('--user <name>', 'user name')
      .option('--password-file <file>', 'file holding the password (default: stdin)'),
  ).action(async (o: ApiOptions & { user: string; passwordFile?: string }) => {
    const pw = await password(o.passwordFile, `password for ${printable(o.user)}: `);
    const r = await apiCall<{ token: string; role: string; expiresAtMs: number }>(
      // No token: signing in is how one gets it (`coolctl login … > token` empties the file first).
      { ...o, withoutToken: true },
      'POST',
      '/api/v1/auth/sign-in',
      { name: o.user, password: pw, as: 'token' },
      // Printed into a token file: an answer without one must not leave "-" there.
      { strings: ['token'] },
    );
    if (outputFormat(o) === 'json') return printJson(r);
    process.stderr.write(`signed in as ${s(o.user)} (${s(r.role)}) until ${when(r.expiresAtMs)}\n`);
    print(s(r.token));
  });

  const user = program.command('user').description('API users (admin)');
  withApi(
    user
      .command('add <name>')
      .description(
        'add a user with a role; the password from --password-file, else asked for on a terminal (twice, not shown), else the first line of stdin',
      )
      .addOption(new Option('--role <role>', 'what the user may do').choices(ROLES).makeOptionMandatory())
      .option('--password-file <file>', 'file holding the password (default: a prompt, or stdin)'),
  ).action(async (name: string, o: ApiOptions & { role: string; passwordFile?: string }) => {
    const pw = await password(o.passwordFile, `password for the new user ${printable(name)}: `, true);
    const u = await apiCall<{ name: string; role: string }>(o, 'POST', '/api/v1/users', {
      name,
      role: o.role,
      password: pw,
    });
    if (outputFormat(o) === 'json') return printJson(u);
    print(`user ${s(u.name)} added (${s(u.role)})`);
  });
  withApi(
    user.command('list').description('list users and roles').option('--json', 'print the raw JSON'),
  ).action(async (o: ApiOptions & { json?: boolean }) => {
    const r = await apiCall<{ users: { name: string; role: string; createdAtMs: number }[] }>(
      o,
      'GET',
      '/api/v1/users',
      undefined,
      { lists: ['users'] },
    );
    if (outputFormat(o) === 'json') return printJson(r);
    print('user             role      since');
    for (const u of r.users) print(`${s(u.name).padEnd(16)} ${s(u.role).padEnd(9)} ${when(u.createdAtMs)}`);
  });
  withApi(user.command('remove <name>').description('remove a user and revoke their tokens')).action(
    async (name: string, o: ApiOptions) => {
      await apiCall(o, 'DELETE', `/api/v1/users/${encodeURIComponent(name)}`);
      print(
        outputFormat(o) === 'json'
          ? jsonText({ user: name, removed: true }, 0)
          : `user ${s(name)} removed; their tokens and sessions are revoked`,
      );
    },
  );

  const token = program.command('token').description('API tokens (admin)');
  withApi(
    token
      .command('create')
      .description('create an API token; it is printed once, keep it in a file readable only by its user')
      .requiredOption('--label <text>', 'what it is for, e.g. grafana')
      .option('--user <name>', 'whose role it acts with (default: you)')
      .addOption(
        numberOption('--ttl-days <n>', `expiry in days, 0.01 to ${MAX_TOKEN_TTL_DAYS} (default 90)`, {
          min: 0.01,
          max: MAX_TOKEN_TTL_DAYS,
          what: 'days',
        }),
      ),
  ).action(async (o: ApiOptions & { label: string; user?: string; ttlDays?: number }) => {
    const r = await apiCall<{ token: string; id: string; user: string; expiresAtMs: number }>(
      o,
      'POST',
      '/api/v1/tokens',
      {
        label: o.label,
        ...(o.user ? { user: o.user } : {}),
        ...(o.ttlDays !== undefined ? { ttlS: Math.round(o.ttlDays * 86_400) } : {}),
      },
      { strings: ['token', 'id'] },
    );
    if (outputFormat(o) === 'json') return printJson(r);
    process.stderr.write(`token ${s(r.id)} for ${s(r.user)}, expires ${when(r.expiresAtMs)} (shown once)\n`);
    print(s(r.token));
  });
  withApi(
    token.command('list').description('list tokens and sessions').option('--json', 'print the raw JSON'),
  ).action(async (o: ApiOptions & { json?: boolean }) => {
    const r = await apiCall<{
      tokens: { id: string; user: string; kind: string; label: string; expiresAtMs: number }[];
    }>(o, 'GET', '/api/v1/tokens', undefined, { lists: ['tokens'] });
    if (outputFormat(o) === 'json') return printJson(r);
    print('id               user             kind     expires               label');
    for (const t of r.tokens)
      print(
        `${s(t.id)} ${s(t.user).padEnd(16)} ${s(t.kind).padEnd(8)} ${when(t.expiresAtMs)}  ${s(t.label)}`,
      );
  });
  withApi(token.command('revoke <id>').description('revoke a token or session on every node')).action(
    async (id: string, o: ApiOptions) => {
      await apiCall(o, 'DELETE', `/api/v1/tokens/${encodeURIComponent(id)}`);
      print(
        outputFormat(o) === 'json' ? jsonText({ token: id, revoked: true }, 0) : `token ${s(id)} revoked`,
      );
    },
  );

  withApi(
    program
      .command('history')
      .description('the cluster’s audit trail: who did what, where, and the answer (newest last)')
      .addOption(
        numberOption('--limit <n>', `at most this many entries (the newest), 1 to ${MAX_HISTORY_ENTRIES}`, {
          min: 1,
          max: MAX_HISTORY_ENTRIES,
          integer: true,
        }).default(50),
      )
      .option('--json', 'print the raw JSON'),
  ).action(async (o: ApiOptions & { limit: number; json?: boolean }) => {
    const r = await apiCall<{ entries: Record<string, unknown>[] }>(
      o,
      'GET',
      `/api/v1/audit?limit=${o.limit}`,
      undefined,
      { lists: ['entries'] },
    );
    if (outputFormat(o) === 'json') return printJson(r);
    for (const e of r.entries) {
      const at = when(e.atMs);
      if (e.kind === 'role')
        print(`${at} ${s(e.node)} leads ${s(e.group)} (epoch ${s(e.epoch)}): ${s(e.reason)}`);
      else if (e.kind === 'failed-sign-in')
        print(
          `${at} ${s(e.name)} @ ${s(e.clientIp)} via ${s(e.node)}: sign-in failed ×${s(e.count)} (${s(e.reason)})`,
        );
      else {
        const code = (e.error as { code?: unknown } | null)?.code;
        // A request without a body is kept as `{}` by newer nodes, as null by older ones: neither says anything.
        const params =
          e.params && !(typeof e.params === 'object' && Object.keys(e.params).length === 0)
            ? ` ${jsonText(e.params, 0)}`
            : '';
        print(
          `${at} ${s(e.user)} (${s(e.role)}) via ${s(e.node)}: ${s(e.method)} ${s(e.path)}${params} → ${s(e.status)}${code ? ` ${s(code)}` : ''}`,
        );
      }
    }
  });
}
