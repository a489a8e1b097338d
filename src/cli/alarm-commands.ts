// `coolctl alarms`: the cluster's alarms as any node answers them (docs/alarms.md) — the active
// ones, or all that retention keeps — and the operator's acknowledge, shelve and unshelve.
import type { Command } from 'commander';
import type { Alarm } from '../alarms/alarm.ts';
import { parseDuration } from '../util/cli-args.ts';
import { jsonText, printable } from '../util/printable.ts';
import { type ApiOptions, ApiUsageError, apiCall, apiOptions } from './api-client.ts';
import { outputFormat } from './cli-config.ts';

/** `90`, `90s`, `15m`, `1h`, `1.5h` → seconds; anything else is a usage error. */
export function parseDurationS(text: string): number {
  const ms = parseDuration('--for', text, {
    bare: 's',
    units: ['s', 'm', 'h'],
    minMs: 60_000,
    maxMs: 86_400_000,
    example: '90s, 15m or 1h',
    range: 'a shelf lasts 1 minute to 24 hours',
  });
  return Math.round(ms / 1000);
}

/** A time of the server's (ISO 8601) without its fraction of a second, and escaped. */
const when = (iso: unknown) => printable(String(iso ?? '-').replace(/\.\d+Z$/, 'Z'));
const s = (x: unknown): string => printable(x ?? '-');

/** One line per alarm: what, where, since when, and who acknowledged or shelved it (the server's strings escaped). */
export function formatAlarms(alarms: readonly Alarm[]): string {
  if (alarms.length === 0) return 'no alarms';
  const lines = ['severity  state         raised                where                 message'];
  for (const a of alarms) {
    const where = s([a.group, a.subject].filter(Boolean).join('/') || '-');
    const notes = [
      a.ack ? `ack ${s(a.ack.user)} ${when(a.ack.at)}${a.ack.comment ? ` "${s(a.ack.comment)}"` : ''}` : '',
      a.shelvedUntil ? `shelved until ${when(a.shelvedUntil)}` : '',
      a.clearedAt ? `cleared ${when(a.clearedAt)}` : '',
    ].filter(Boolean);
    lines.push(
      `${s(a.severity).padEnd(9)} ${s(a.state).padEnd(13)} ${when(a.raisedAt).padEnd(21)} ${where.padEnd(21)} ${s(a.message)}`,
      `          id ${s(a.id)}${notes.length ? ` — ${notes.join('; ')}` : ''}`,
    );
  }
  return lines.join('\n');
}

/** What an acknowledge, shelve or unshelve answers: the alarm as it is now. */
const ONE = { records: ['alarm'] };

export function addAlarmCommands(program: Command): void {
  const cmd = program
    .command('alarms')
    .description('the cluster’s alarms (active, or --all); --ack, --shelve or --unshelve one (operator)')
    .option('--all', 'with the cleared alarms retention keeps')
    .option('--ack <id>', 'acknowledge an alarm')
    .option('--comment <text>', 'with --ack or --shelve: why')
    .option('--shelve <id>', 'shelve an alarm: no notifications until it clears or the shelf ends')
    .option('--for <duration>', 'with --shelve: how long (60s … 24h, e.g. 1h)')
    .option('--unshelve <id>', 'end a shelf now')
    .option('--json', 'print the raw JSON');
  for (const o of apiOptions()) cmd.addOption(o);
  cmd.action(
    async (
      o: ApiOptions & {
        all?: boolean;
        ack?: string;
        comment?: string;
        shelve?: string;
        for?: string;
        unshelve?: string;
        json?: boolean;
      },
    ) => {
      const print = (s: string) => process.stdout.write(`${s}\n`);
      const path = (id: string, action: string) => `/api/v1/alarms/${encodeURIComponent(id)}/${action}`;
      const acted = [o.ack, o.shelve, o.unshelve].filter((x) => x !== undefined).length;
      if (acted > 1) throw new ApiUsageError('alarms: give one of --ack, --shelve, --unshelve');
      if (o.for !== undefined && o.shelve === undefined)
        throw new ApiUsageError('alarms: --for goes with --shelve');
      const comment = o.comment !== undefined ? { comment: o.comment } : {};
      let one: Alarm | undefined;
      if (o.ack !== undefined)
        one = (await apiCall<{ alarm: Alarm }>(o, 'POST', path(o.ack, 'ack'), comment, ONE)).alarm;
      else if (o.shelve !== undefined) {
        if (o.for === undefined) throw new ApiUsageError('alarms --shelve: give --for, e.g. --for 1h');
        const durationS = parseDurationS(o.for);
        one = (
          await apiCall<{ alarm: Alarm }>(o, 'POST', path(o.shelve, 'shelve'), { durationS, ...comment }, ONE)
        ).alarm;
      } else if (o.unshelve !== undefined)
        one = (await apiCall<{ alarm: Alarm }>(o, 'POST', path(o.unshelve, 'unshelve'), {}, ONE)).alarm;
      if (one) {
        print(outputFormat(o) === 'json' ? jsonText({ alarm: one }) : formatAlarms([one]));
        return;
      }
      const r = await apiCall<{ alarms: Alarm[] }>(
        o,
        'GET',
        `/api/v1/alarms?state=${o.all ? 'all' : 'active'}`,
        undefined,
        { lists: ['alarms'] },
      );
      print(outputFormat(o) === 'json' ? jsonText(r) : formatAlarms(r.alarms));
    },
  );
}
