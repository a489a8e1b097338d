// A group's tuning runs as the file wrote it, or not at all: a written setting that the law would
// have to move into the range other settings make (a degraded floor under the fan floor, a blind
// speed under the safety floor, a threshold the fans or the inlet could never reach) is refused at load with its path and both values, as a reload
// would be; a default that a written range moves is run where the range puts it, and said as a
// warning at the setting that moved it. Through the loaders `coolctl run`, a reload and
// `coolctl config validate` use.
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { loadControllerConfig } from '../../src/config/controller-config.ts';
import { checkSite, parseSite } from '../../src/config/load-site.ts';
import type { ControlTuningInput } from '../../src/config/tuning-schema.ts';
import { groupControlConfig } from '../../src/control/law/group-controller.ts';
import { ConfigError, type ConfigProblem } from '../../src/errors.ts';

const AT = '/controlGroups/1/tuning';

async function siteWith(tuning: ControlTuningInput): Promise<string> {
  const doc = parseYaml(await readFile('config/demo-site.yaml', 'utf8')) as {
    controlGroups: Record<string, unknown>[];
  };
  doc.controlGroups[1]!.tuning = tuning;
  return stringifyYaml(doc);
}

async function refusal(tuning: ControlTuningInput): Promise<ConfigProblem[]> {
  const text = await siteWith(tuning);
  try {
    parseSite(text, 'site.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error(`accepted: ${JSON.stringify(tuning)}`);
}

async function siteFile(tuning: ControlTuningInput): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'coolctl-tuning-'));
  const file = join(dir, 'site.yaml');
  await writeFile(file, await siteWith(tuning));
  return file;
}

describe('a written tuning setting the law would have to move', () => {
  it.each([
    [
      'a preferred setpoint under the default range',
      { setpoint: { preferredMinC: 15 } },
      'setpoint/preferredMinC',
      'setpoint.preferredMinC (15) is below setpoint.minC (16)',
    ],
    [
      'a preferred setpoint over a written top',
      { setpoint: { preferredMinC: 20, maxC: 19 } },
      'setpoint/preferredMinC',
      'setpoint.preferredMinC (20) is above setpoint.maxC (19)',
    ],
    [
      'a safety floor over the default law floor',
      { hardMinFanPct: 35 },
      'hardMinFanPct',
      'hardMinFanPct (35) is above fan.minPct (30)',
    ],
    [
      'a degraded floor under the law floor',
      { fan: { minPct: 30 }, degraded: { minFanPct: 20 } },
      'degraded/minFanPct',
      'degraded.minFanPct (20) is below fan.minPct (30)',
    ],
    [
      'a degraded floor over a written top',
      { fan: { maxPct: 90 }, degraded: { minFanPct: 95 } },
      'degraded/minFanPct',
      'degraded.minFanPct (95) is above fan.maxPct (90)',
    ],
    [
      'a blind speed under the default safety floor',
      { blindFanPct: 10 },
      'blindFanPct',
      'blindFanPct (10) is below hardMinFanPct (20)',
    ],
    // Thresholds the fans or the inlet could never reach: that part of the law would never act.
    [
      'a respond threshold over a written fan top (no colder air with the fans at their top)',
      { fan: { maxPct: 85 }, setpoint: { fanHighPct: 90 } },
      'setpoint/fanHighPct',
      'setpoint.fanHighPct (90) is above fan.maxPct (85)',
    ],
    [
      'a trim threshold under the default fan floor (no warmer air at the floor)',
      { setpoint: { fanLowPct: 25 } },
      'setpoint/fanLowPct',
      'setpoint.fanLowPct (25) is below fan.minPct (30)',
    ],
    [
      'help asked only from the fan top (never asked)',
      { help: { startPct: 100 } },
      'help/startPct',
      'help.startPct (100) is not under fan.maxPct (100)',
    ],
    [
      'a target at the default alarm (held as too hot to slow a fan)',
      { inletTargetC: 27 },
      'inletTargetC',
      'inletTargetC (27) is not under alarmInletC (27)',
    ],
    [
      'a target over a written alarm',
      { inletTargetC: 25, alarmInletC: 24 },
      'inletTargetC',
      'inletTargetC (25) is not under alarmInletC (24)',
    ],
  ])('%s is refused with its path and both values', async (_, tuning, key, message) => {
    expect(await refusal(tuning)).toEqual([
      expect.objectContaining({ path: `${AT}/${key}`, message, allowed: expect.stringMatching(/[≤<]/) }),
    ]);
  });

  it('a threshold the law can reach is run as written', async () => {
    for (const tuning of [
      { fan: { maxPct: 85 }, setpoint: { fanHighPct: 85 }, help: { startPct: 84 } },
      { setpoint: { fanLowPct: 30 } },
      { inletTargetC: 26.9 },
      { inletTargetC: 27, alarmInletC: 28 },
    ]) {
      const checked = await checkSite(await siteFile(tuning));
      expect(checked.problems, JSON.stringify(tuning)).toEqual([]);
      expect(checked.warnings, JSON.stringify(tuning)).toEqual([]);
    }
  });

  it('every one is listed at once, each with its line', async () => {
    const problems = await refusal({
      fan: { minPct: 30 },
      setpoint: { preferredMinC: 15 },
      degraded: { minFanPct: 20 },
      hardMinFanPct: 35,
      blindFanPct: 10,
    });
    expect(problems.map((p) => p.path).sort()).toEqual(
      [
        `${AT}/blindFanPct`,
        `${AT}/degraded/minFanPct`,
        `${AT}/hardMinFanPct`,
        `${AT}/setpoint/preferredMinC`,
      ].sort(),
    );
    for (const p of problems) expect(p.line).toEqual(expect.any(Number));
  });

  it('a crossed range names the end the file wrote, not the default it crossed', async () => {
    expect(await refusal({ setpoint: { minC: 25 } })).toEqual([
      expect.objectContaining({
        path: `${AT}/setpoint/minC`,
        message: 'setpoint minC (25) is above maxC (24)',
      }),
    ]);
  });

  it('a controller config whose site writes one is refused, as a start or a reload would be', async () => {
    const site = await siteFile({ fan: { minPct: 30 }, degraded: { minFanPct: 20 } });
    const controller = join(site, '..', 'controller.yaml');
    const base = await readFile('test/fixtures/cluster/controller.yaml', 'utf8');
    await writeFile(controller, base.replace(/^site: .*$/m, `site: ${site}`));
    const err = await loadControllerConfig(controller, 'node-a').then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems).toContainEqual(
      expect.objectContaining({ file: site, path: `${AT}/degraded/minFanPct`, line: expect.any(Number) }),
    );
  });
});

describe('a default that a written range moves', () => {
  it.each([
    [
      'the safety floor under a lower law floor',
      { fan: { minPct: 10 } },
      'fan/minPct',
      'hardMinFanPct is not set: its default 20 is above fan.minPct (10), so the group runs hardMinFanPct 10',
      (t: ReturnType<typeof groupControlConfig>['tuning']) => t.hardMinFanPct,
      10,
    ],
    [
      'the degraded floor under a lower top',
      { fan: { maxPct: 50 } },
      'fan/maxPct',
      'degraded.minFanPct is not set: its default 60 is above fan.maxPct (50), so the group runs degraded.minFanPct 50',
      (t: ReturnType<typeof groupControlConfig>['tuning']) => t.degraded.minFanPct,
      50,
    ],
    [
      'the degraded floor under a higher law floor',
      { fan: { minPct: 70 } },
      'fan/minPct',
      'degraded.minFanPct is not set: its default 60 is below fan.minPct (70), so the group runs degraded.minFanPct 70',
      (t: ReturnType<typeof groupControlConfig>['tuning']) => t.degraded.minFanPct,
      70,
    ],
    [
      'the trim threshold under a higher law floor',
      { fan: { minPct: 40 } },
      'fan/minPct',
      'setpoint.fanLowPct is not set: its default 35 is below fan.minPct (40), so the group runs setpoint.fanLowPct 40',
      (t: ReturnType<typeof groupControlConfig>['tuning']) => t.setpoint.fanLowPct,
      40,
    ],
    [
      'the target at a lower alarm',
      { alarmInletC: 25 },
      'alarmInletC',
      'inletTargetC is not set: its default 25 is not under alarmInletC (25), so the group runs inletTargetC 24.5',
      (t: ReturnType<typeof groupControlConfig>['tuning']) => t.inletTargetC,
      24.5,
    ],
    [
      'the preferred setpoint under a higher bottom',
      { setpoint: { minC: 19 } },
      'setpoint/minC',
      'setpoint.preferredMinC is not set: its default 18 is below setpoint.minC (19), so the group runs setpoint.preferredMinC 19',
      (t: ReturnType<typeof groupControlConfig>['tuning']) => t.setpoint.preferredMinC,
      19,
    ],
  ])('%s is run where the range puts it, and said', async (_, tuning, key, message, ran, value) => {
    const checked = await checkSite(await siteFile(tuning));
    expect(checked.problems).toEqual([]);
    expect(checked.warnings).toContainEqual(
      expect.objectContaining({ path: `${AT}/${key}`, message, line: expect.any(Number) }),
    );
    // What the note says is what the group runs, from the site as loaded (its defaults filled in).
    const site = checked.value!;
    const g = site.controlGroups[1]!;
    expect(ran(groupControlConfig(site, g.id, g.tuning ? { tuning: g.tuning } : {}).tuning)).toBe(value);
  });

  it('a lower fan top moves each threshold it puts out of reach, each said once, all run as said', async () => {
    const checked = await checkSite(await siteFile({ fan: { maxPct: 50 } }));
    expect(checked.problems).toEqual([]);
    expect(checked.warnings.map((w) => w.message).sort()).toEqual(
      [
        'degraded.minFanPct is not set: its default 60 is above fan.maxPct (50), so the group runs degraded.minFanPct 50',
        'help.startPct is not set: its default 90 is not under fan.maxPct (50), so the group runs help.startPct 49',
        'setpoint.fanHighPct is not set: its default 90 is above fan.maxPct (50), so the group runs setpoint.fanHighPct 50',
      ].sort(),
    );
    const site = checked.value!;
    const g = site.controlGroups[1]!;
    const t = groupControlConfig(site, g.id, g.tuning ? { tuning: g.tuning } : {}).tuning;
    expect([t.degraded.minFanPct, t.help.startPct, t.setpoint.fanHighPct]).toEqual([50, 49, 50]);
  });

  it('nothing is said once the file sets the value itself, or leaves the range alone', async () => {
    for (const tuning of [{ fan: { minPct: 10 }, hardMinFanPct: 10, degraded: { minFanPct: 40 } }, {}])
      expect((await checkSite(await siteFile(tuning))).warnings).toEqual([]);
    expect((await checkSite(resolve('config/demo-site.yaml'))).warnings).toEqual([]);
  });

  it('the controller config carries the note as a warning: `config validate` prints it, the daemon logs it', async () => {
    const site = await siteFile({ fan: { minPct: 10 } });
    const controller = join(site, '..', 'controller.yaml');
    const base = await readFile('test/fixtures/cluster/controller.yaml', 'utf8');
    await writeFile(controller, base.replace(/^site: .*$/m, `site: ${site}`));
    const cfg = await loadControllerConfig(controller, 'node-a');
    expect(cfg.warnings).toContainEqual(
      expect.objectContaining({
        file: site,
        path: `${AT}/fan/minPct`,
        message: expect.stringMatching(/^hardMinFanPct is not set: its default 20 .* runs hardMinFanPct 10$/),
      }),
    );
  });
});
