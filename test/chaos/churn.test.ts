// Chaos: churn and clocks, on real processes. Controllers restarted in a loop (kill -9 and
// SIGTERM) leave an even, stable placement; a leader's wall clock jumping an hour forward or back
// (libfaketime; monotonic time untouched) changes nothing unsafe. Invariants after every trial.
import { execFile } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import {
  Hall,
  RTU_UNITS,
  stablePlacement,
  trialClockJump,
  trialRestartLoop,
  VENDOR_UNITS,
} from '../support/hall.ts';
import { useChaosHall } from './chaos-hall.ts';

const chaos = useChaosHall({ name: 'chaos-churn', faketime: true, rtu: RTU_UNITS, vendor: VENDOR_UNITS });
const hall = chaos.hall;

/**
 * Runs the CLI without blocking this process: the hall's etcd proxies live in it, and a blocked
 * event loop (spawnSync) stalls every controller's etcd traffic — their leases lapse meanwhile.
 */
function cli(
  args: string[],
  timeoutMs: number,
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['src/cli.ts', ...args],
      {
        encoding: 'utf8',
        timeout: timeoutMs,
        env: { ...process.env, COOLCTL_TOKEN: hall().apiAdmin?.token ?? '' },
      },
      (err, stdout, stderr) => {
        const code = !err
          ? 0
          : typeof (err as { code?: unknown }).code === 'number'
            ? (err as { code: number }).code
            : null;
        resolve({ status: code, stdout, stderr });
      },
    );
  });
}

describe('chaos: churn and clocks', () => {
  it('placement is even and stable', async () => {
    const p = await stablePlacement(hall());
    expect(p.moves).toEqual([]);
    expect(p.even).toBe(true);
    const counts = Object.values(p.counts);
    expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
  }, 60_000);

  it('an operator sees the cluster with `coolctl status` and moves a group with `coolctl switchover`', async () => {
    // No rebalancing in flight: every group led, placement even and holding.
    const { leaders } = await stablePlacement(hall());
    const counts = Hall.placement(leaders, hall().nodes);
    const busiest = Object.entries(counts).sort((a, b) => b[1] - a[1])[0]![0];
    const target = Object.entries(counts).sort((a, b) => a[1] - b[1])[0]![0];
    const [group, from] = [...leaders].find(([, l]) => l.node === busiest)!;
    const api = hall().apiUrl(target); // any node's API will do; the CLI finds the leader
    const status = await cli(['status', '--api', api], 10_000);
    expect(status.status).toBe(0);
    expect(status.stdout).toMatch(new RegExp(`${group}\\s+${from.node}\\s+${from.epoch}`));
    const seq = await hall().lastSeq();
    const started = Date.now();
    const res = await cli(['switchover', group, '--to', target, '--api', api], 15_000);
    expect(res.stderr).toBe('');
    expect(res.status).toBe(0);
    expect(res.stdout).toMatch(new RegExp(`${group}: ${from.node} → ${target} in \\d+ ms`));
    const now = await hall().waitForLeaders();
    expect(now.get(group)?.node).toBe(target);
    // the new leader's first accepted write follows within a few hundred ms of the command
    const first = (await hall().journal(seq)).entries.find(
      (e) => e.accepted && e.epoch === now.get(group)!.epoch,
    );
    expect(first).toBeDefined();
    expect(first!.wallMs - started).toBeLessThan(1500);
    const bad = await cli(['switchover', 'no-such-group', '--to', target, '--api', api], 15_000);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/unknown group "no-such-group"/);
    expect((await hall().check()).violations).toEqual([]);
  }, 60_000);

  it('restarting controllers in a loop keeps the invariants and ends even and stable', async () => {
    await chaos.trial('restart-loop', (h) => trialRestartLoop(h, { count: 4 }));
  }, 120_000);

  it('a leader’s wall clock jumping +1 h and −1 h changes nothing unsafe', async () => {
    await chaos.trial('clock-jump', (h) => trialClockJump(h, { offsetS: 3600 }));
    await chaos.trial('clock-jump', (h) => trialClockJump(h, { offsetS: -3600 }));
  }, 60_000);
});
