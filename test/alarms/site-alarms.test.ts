// The site file's `alarms:` section as the daemon takes it: validated with the rest of the site
// (limits in the wrong order refused with their path), and its notifications built from it — the
// webhook's header read from its file beside the site file and sent, never logged; a reload that
// changes the section rebuilds the sinks; an unreadable header file fails the send, saying why.

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { StoredAlarm } from '../../src/alarms/alarm.ts';
import { NotifierHolder } from '../../src/alarms/wiring.ts';
import { loadSite } from '../../src/config/load-site.ts';
import type { Site } from '../../src/config/site-schema.ts';
import { ConfigError } from '../../src/errors.ts';
import { waitFor } from '../helpers.ts';
import { storedAlarm } from '../support/stored-alarm.ts';

let dir: string;
let server: Server;
let url: string;
const got: IncomingHttpHeaders[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coolctl-site-alarms-'));
  server = createServer((req, res) => {
    got.push(req.headers);
    req.resume();
    req.on('end', () => res.writeHead(200).end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v2/alerts`;
});
afterAll(async () => {
  await new Promise((r) => server?.close(r));
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function siteWith(alarms: unknown, groupAlarms?: unknown): Promise<string> {
  const doc = parse(await readFile('config/demo-site.yaml', 'utf8')) as Record<string, unknown> & {
    controlGroups: Record<string, unknown>[];
  };
  doc.alarms = alarms;
  if (groupAlarms) doc.controlGroups[0]!.alarms = groupAlarms;
  const file = join(dir, `site-${Math.random().toString(16).slice(2)}.yaml`);
  await writeFile(file, stringify(doc));
  return file;
}

const alarm: StoredAlarm = storedAlarm({
  id: 'node-down~-~n3~m1',
  kind: 'node-down',
  severity: 'minor',
  group: null,
  subject: 'n3',
  message: 'node n3 is not a member of the cluster',
  raisedAtMs: Date.now(),
});

describe('the site file’s alarms section', () => {
  it('loads with limits, delays and notifications; refuses limits in the wrong order', async () => {
    const ok = await loadSite(
      await siteWith(
        {
          inlet: { recommendedC: 26, delayS: 30 },
          delays: { nodeDownS: 60 },
          notifications: { webhook: { url } },
        },
        { inlet: { allowableC: 30 } },
      ),
    );
    expect(ok.alarms?.inlet?.recommendedC).toBe(26);
    expect(ok.controlGroups[0]!.alarms?.inlet?.allowableC).toBe(30);
    const bad = await siteWith(
      { inlet: { recommendedC: 30, allowableC: 28 } },
      { dewPoint: { minC: 5, maxC: 5 } },
    );
    const err = await loadSite(bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems.map((p) => p.path)).toEqual(
      expect.arrayContaining(['/alarms/inlet/allowableC', '/controlGroups/0/alarms/dewPoint/maxC']),
    );
    const typo = await loadSite(await siteWith({ inlet: { recomendedC: 26 } })).catch((e: unknown) => e);
    expect(typo).toBeInstanceOf(ConfigError);
    const credentials = await loadSite(
      await siteWith({ notifications: { webhook: { url: 'http://user:pw@127.0.0.1/x' } } }),
    ).catch((e: unknown) => e);
    expect(credentials).toBeInstanceOf(ConfigError);
  });

  it('the webhook’s header comes from its file beside the site file; a changed section rebuilds the sinks', async () => {
    await writeFile(join(dir, 'am.header'), 'Bearer from-the-file\n', { mode: 0o600 });
    const sitePath = await siteWith({
      notifications: { webhook: { url, headerName: 'Authorization', headerFile: 'am.header' } },
    });
    let site: Site = await loadSite(sitePath);
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (s: string) => lines.push(s) });
    const holder = new NotifierHolder({
      node: 'n1',
      config: () => ({ site, sitePath, nodes: ['n1'], mqtt: undefined }),
      apiUrl: 'http://127.0.0.1:8101',
      logger,
      registry: new Registry(),
    });
    const first = holder.get()!;
    expect(holder.get()).toBe(first); // the same section: the same sinks
    first.notify(alarm, 'raised');
    await waitFor('the alert with its header', () => got.length === 1);
    expect(got[0]!.authorization).toBe('Bearer from-the-file');

    // A reload with another header file that cannot be read: new sinks; the send fails saying why
    // (never a request without its header), and goes out with it once the file is there.
    site = {
      ...site,
      alarms: { notifications: { webhook: { url, headerFile: join(dir, 'missing.header') } } },
    };
    const second = holder.get()!;
    expect(second).not.toBe(first);
    second.notify(alarm, 'raised');
    await waitFor('the failure says why', () =>
      lines.some((l) => l.includes('retrying') && l.includes('headerFile: cannot read')),
    );
    expect(got).toHaveLength(1);
    await writeFile(join(dir, 'missing.header'), 'Bearer written-later\n', { mode: 0o600 });
    await waitFor('the alert with the new header', () => got.length === 2, { timeoutMs: 15_000 });
    expect(got[1]!.authorization).toBe('Bearer written-later');
    expect(lines.join('\n')).not.toMatch(/from-the-file|written-later/);
    // No section: no sinks.
    site = { ...site, alarms: {} };
    expect(holder.get()).toBeUndefined();
    await holder.stop();
  });
});
