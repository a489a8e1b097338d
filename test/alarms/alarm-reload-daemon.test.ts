// Alarm settings reloaded on a running daemon (a real process, real etcd; the demo site without its
// simulator, so every group is blind): the site file's `alarms:` section and a group's own limits
// change, the reload is applied, the new sensor delay raises `sensors-blind` at once — and no loop
// was stopped or started again (no new term, so no bump).
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { Site } from '../../src/config/site-schema.ts';
import { useOneNodeDaemon, writeOneNodeConfig } from '../daemon/one-node.ts';
import { waitFor } from '../helpers.ts';

const fx = useOneNodeDaemon('alarm-reload');

interface Line {
  msg: string;
  group?: string;
  changedGroups?: string[];
  alarmsChanged?: boolean;
}

const lines = (): Line[] =>
  fx
    .log()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line);

async function metric(api: string, pattern: RegExp): Promise<number> {
  const text = await (await fetch(`${api}/metrics`)).text();
  return Number(pattern.exec(text)?.[1] ?? 0);
}

describe('alarm settings on reload', () => {
  it('apply live: the new delay raises its alarm, and no loop is restarted', async () => {
    const dir = fx.dir();
    const site = parse(await readFile('config/demo-site.yaml', 'utf8')) as Site;
    const sitePath = join(dir, 'site.yaml');
    // Blind from the start (no simulator), but an hour before that is an alarm.
    await writeFile(sitePath, stringify({ ...site, alarms: { delays: { sensorsS: 3600 } } }));
    const { config, api } = await writeOneNodeConfig({
      dir,
      etcd: fx.etcd().clientConfig(),
      prefix: '/coolctl/alarm-reload',
    });
    const doc = parse(await readFile(config, 'utf8')) as { site: string; api: Record<string, unknown> };
    doc.site = sitePath;
    doc.api = { ...doc.api, metricsAuth: 'none' };
    await writeFile(config, stringify(doc));
    const daemon = fx.run(config);
    const groups = site.controlGroups.map((g) => g.id);
    const driving = () => lines().filter((l) => l.msg.startsWith('driving the group'));
    await waitFor(
      'every group driven by the one node',
      () => groups.every((g) => driving().some((l) => l.group === g)),
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    const blindRaised = /coolctl_alarm_transitions_total\{kind="sensors-blind",transition="raised"\} (\d+)/;
    const applied = /coolctl_config_reloads_total\{result="applied"\} (\d+)/;
    expect(await metric(api, blindRaised)).toBe(0);
    const startsBefore = driving().length;

    // The site's delay and the first group's own limits change; the file watcher reloads them.
    const changed = {
      ...site,
      alarms: { delays: { sensorsS: 0 } },
      controlGroups: site.controlGroups.map((g, i) =>
        i === 0 ? { ...g, alarms: { inlet: { recommendedC: 25, delayS: 30 } } } : g,
      ),
    };
    await writeFile(sitePath, stringify(changed));
    await waitFor('the reload applied', async () => (await metric(api, applied)) >= 1, {
      timeoutMs: 20_000,
      intervalMs: 200,
    });
    await waitFor(
      'sensors-blind raised for every group',
      async () => (await metric(api, blindRaised)) >= groups.length,
      {
        timeoutMs: 20_000,
        intervalMs: 200,
      },
    );
    const reload = lines().find((l) => l.msg === 'config reloaded and applied');
    expect(reload).toMatchObject({ changedGroups: [], alarmsChanged: true });
    // No loop stopped, none started again.
    expect(driving()).toHaveLength(startsBefore);
    expect(lines().filter((l) => l.msg.startsWith('stopped driving'))).toEqual([]);
    expect(daemon.exitCode).toBe(null);
  }, 120_000);
});
