// The CLI's commands for the secure control plane: sign in (prints a session token to export as
// COOLCTL_TOKEN), users and API tokens (admin), and the cluster's audit trail (`history`).
// Passwords come from a file or from stdin, never from an argument.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { CoolctlError, ErrorCodes } from '../errors.ts';
import { type ApiOptions, apiCall, apiOptions } from './api-client.ts';
import { outputFormat } from './cli-config.ts';

function withApi(cmd: Command): Command {
  for (const o of apiOptions()) cmd.addOption(o);
  return cmd;
}

function readSecret(file: string | undefined, what: string): string {
  const from = file ?? '/dev/stdin';
  try {
    const s = readFileSync(from, 'utf8').replace(/\r?\n$/, '');
    if (!s) throw new Error('empty');
    return s;
  } catch (err) {
    throw new CoolctlError(ErrorCodes.STARTUP, `${what} from ${from}: ${(err as Error).message}`);
  }
}

const print = (s: string): void => {
  process.stdout.write(`${s}\n`);
};
const when = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');

export function addApiCommands(program: Command): void {
  withApi(
    program
      .command('login')
      .description('sign in; prints a session token (export it as COOLCTL_TOKEN)')
      .requiredOption('--user <name>', 'user name')
      .option('--password-file <file>', 'file holding the password (default: stdin)'),
  ).action(async (o: ApiOptions & { user: string; passwordFile?: string }) => {
    const password = readSecret(o.passwordFile, 'password');
    const r = await apiCall<{ token: string; role: string; expiresAtMs: number }>(
      { ...o, tokenFile: undefined },
      'POST',
      '/api/v1/auth/sign-in',
      { name: o.user, password, as: 'token' },
    );
    if (outputFormat(o) === 'json') return print(JSON.stringify(r, null, 2));
    process.stderr.write(`signed in as ${o.user} (${r.role}) until ${when(r.expiresAtMs)}\n`);
    print(r.token);
  });

  const user = program.command('user').description('API users (admin)');
  withApi(
    user
      .command('add <name>')
      .description('add a user with a role; the password is read from --password-file or stdin')
      .requiredOption('--role <role>', 'viewer, operator or admin')
      .option('--password-file <file>', 'file holding the password (default: stdin)'),
  ).action(async (name: string, o: ApiOptions & { role: string; passwordFile?: string }) => {
    const password = readSecret(o.passwordFile, 'password');
    const u = await apiCall<{ name: string; role: string }>(o, 'POST', '/api/v1/users', {
      name,
      role: o.role,
      password,
    });
    print(outputFormat(o) === 'json' ? JSON.stringify(u, null, 2) : `user ${u.name} added (${u.role})`);
  });
  withApi(
    user.command('list').description('list users and roles').option('--json', 'print the raw JSON'),
  ).action(async (o: ApiOptions & { json?: boolean }) => {
    const r = await apiCall<{ users: { name: string; role: string; createdAtMs: number }[] }>(
      o,
      'GET',
      '/api/v1/users',
    );
    if (outputFormat(o) === 'json') return print(JSON.stringify(r, null, 2));
    print('user             role      since');
    for (const u of r.users) print(`${u.name.padEnd(16)} ${u.role.padEnd(9)} ${when(u.createdAtMs)}`);
  });
  withApi(user.command('remove <name>').description('remove a user and revoke their tokens')).action(
    async (name: string, o: ApiOptions) => {
      await apiCall(o, 'DELETE', `/api/v1/users/${encodeURIComponent(name)}`);
      print(
        outputFormat(o) === 'json'
          ? JSON.stringify({ user: name, removed: true })
          : `user ${name} removed; their tokens and sessions are revoked`,
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
      .option('--ttl-days <n>', 'expiry in days (default 90)', Number),
  ).action(async (o: ApiOptions & { label: string; user?: string; ttlDays?: number }) => {
    const r = await apiCall<{ token: string; id: string; user: string; expiresAtMs: number }>(
      o,
      'POST',
      '/api/v1/tokens',
      {
        label: o.label,
        ...(o.user ? { user: o.user } : {}),
        ...(o.ttlDays ? { ttlS: Math.round(o.ttlDays * 86_400) } : {}),
      },
    );
    if (outputFormat(o) === 'json') return print(JSON.stringify(r, null, 2));
    process.stderr.write(`token ${r.id} for ${r.user}, expires ${when(r.expiresAtMs)} (shown once)\n`);
    print(r.token);
  });
  withApi(
    token.command('list').description('list tokens and sessions').option('--json', 'print the raw JSON'),
  ).action(async (o: ApiOptions & { json?: boolean }) => {
    const r = await apiCall<{
      tokens: { id: string; user: string; kind: string; label: string; expiresAtMs: number }[];
    }>(o, 'GET', '/api/v1/tokens');
    if (outputFormat(o) === 'json') return print(JSON.stringify(r, null, 2));
    print('id               user             kind     expires               label');
    for (const t of r.tokens)
      print(`${t.id} ${t.user.padEnd(16)} ${t.kind.padEnd(8)} ${when(t.expiresAtMs)}  ${t.label}`);
  });
  withApi(token.command('revoke <id>').description('revoke a token or session on every node')).action(
    async (id: string, o: ApiOptions) => {
      await apiCall(o, 'DELETE', `/api/v1/tokens/${encodeURIComponent(id)}`);
      print(
        outputFormat(o) === 'json' ? JSON.stringify({ token: id, revoked: true }) : `token ${id} revoked`,
      );
    },
  );

  withApi(
    program
      .command('history')
      .description('the cluster’s audit trail: who did what, where, and the answer (newest last)')
      .option('--limit <n>', 'at most this many entries (the newest)', Number, 50)
      .option('--json', 'print the raw JSON'),
  ).action(async (o: ApiOptions & { limit: number; json?: boolean }) => {
    const r = await apiCall<{ entries: Record<string, unknown>[] }>(
      o,
      'GET',
      `/api/v1/audit?limit=${o.limit}`,
    );
    if (outputFormat(o) === 'json') return print(JSON.stringify(r, null, 2));
    for (const e of r.entries) {
      const at = when(e.atMs as number);
      if (e.kind === 'role') print(`${at} ${e.node} leads ${e.group} (epoch ${e.epoch}): ${e.reason}`);
      else
        print(
          `${at} ${e.user} (${e.role}) via ${e.node}: ${e.method} ${e.path}${e.params ? ` ${JSON.stringify(e.params)}` : ''} → ${e.status}${(e.error as { code?: string } | null)?.code ? ` ${(e.error as { code: string }).code}` : ''}`,
        );
    }
  });
}
