// The churn of bench/soak.ts: one event at a time, each bounded and each undone before it returns,
// so the hall is back where it was and only what leaked stays. A failed event is counted and
// logged, never fatal: the soak measures drift, and a flaky step must not end the run early.
import { type Hall, settle } from '../../test/support/hall.ts';
import { delay } from './stats.ts';

export type ChurnKind = 'switchover' | 'trip-ack-clear' | 'sensor-dead-clear' | 'peer-restart';
export const CHURN_KINDS: readonly ChurnKind[] = [
  'switchover',
  'trip-ack-clear',
  'sensor-dead-clear',
  'peer-restart',
];

interface AlarmView {
  id: string;
  kind: string;
  subject: string | null;
  state: string;
  ack: unknown;
}

/** Polls `fn` every 200 ms until it returns something; null after `ms`. */
async function within<T>(ms: number, fn: () => Promise<T | null | undefined>): Promise<T | null> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const v = await fn().catch(() => null);
    if (v !== null && v !== undefined) return v;
    await delay(200);
  }
  return null;
}

export class Churn {
  /** Events run, by kind, and the ones that did not complete (with why). */
  readonly done = new Map<ChurnKind, number>();
  readonly failures: string[] = [];
  private n = 0;
  private readonly hall: Hall;
  /** The node SIGTERMed and restarted by `peer-restart` (the others run the whole soak). */
  private readonly restartNode: string;
  private readonly sensorNodes: readonly string[];
  private readonly say: (s: string) => void;

  constructor(hall: Hall, restartNode: string, sensorNodes: readonly string[], say: (s: string) => void) {
    this.hall = hall;
    this.restartNode = restartNode;
    this.sensorNodes = sensorNodes;
    this.say = say;
  }

  /** Runs the next event of the rotation; bounded by `boundMs` (an event still running then is a failure). */
  async next(boundMs: number): Promise<ChurnKind> {
    const kind = CHURN_KINDS[this.n % CHURN_KINDS.length]!;
    const i = Math.floor(this.n / CHURN_KINDS.length);
    this.n++;
    const t0 = Date.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      const note = await Promise.race([
        this.run(kind, i),
        new Promise<never>((_, rej) => {
          timer = setTimeout(() => rej(new Error(`still running after ${boundMs} ms`)), boundMs);
        }),
      ]);
      this.done.set(kind, (this.done.get(kind) ?? 0) + 1);
      this.say(`churn ${this.n} ${kind}: ${note} (${Date.now() - t0} ms)`);
    } catch (err) {
      this.failures.push(`${kind} #${i}: ${(err as Error).message}`);
      this.say(`churn ${this.n} ${kind} FAILED: ${(err as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
    return kind;
  }

  private run(kind: ChurnKind, i: number): Promise<string> {
    switch (kind) {
      case 'switchover':
        return this.switchover(i);
      case 'trip-ack-clear':
        return this.tripAckClear(i);
      case 'sensor-dead-clear':
        return this.sensorDeadClear(i);
      case 'peer-restart':
        return this.peerRestart();
    }
  }

  private async switchover(i: number): Promise<string> {
    const groups = Object.keys(this.hall.groups);
    const group = groups[i % groups.length]!;
    const leaders = await this.hall.waitForLeaders({ timeoutMs: 10_000 });
    const from = leaders.get(group)!;
    const to = this.hall.live().find((n) => n !== from.node);
    if (!to) throw new Error('no other live node');
    await this.hall.operator(from.node, 'POST', `/api/v1/groups/${group}/switchover`, { to });
    await this.hall.waitForLeaders({ where: (l) => l.get(group)?.node === to, timeoutMs: 10_000 });
    return `${group} ${from.node} → ${to}`;
  }

  /** Trips a unit, acknowledges its unit-tripped alarm through the API, clears the trip. */
  private async tripAckClear(i: number): Promise<string> {
    const units = Object.values(this.hall.groups).flat();
    const ahu = units[i % units.length]!;
    const api = this.hall.live()[0]!;
    await this.hall.simFault({ fault: 'ahu-trip', ahu });
    let acked = 'no alarm seen';
    try {
      const alarm = await within(10_000, async () => {
        const r = (await this.hall.operator(api, 'GET', '/api/v1/alarms')) as { alarms: AlarmView[] };
        return r.alarms.find((a) => a.kind === 'unit-tripped' && a.subject === ahu && a.state !== 'cleared');
      });
      if (alarm) {
        await this.hall.operator(api, 'POST', `/api/v1/alarms/${encodeURIComponent(alarm.id)}/ack`, {
          comment: 'soak',
        });
        acked = `acknowledged ${alarm.id}`;
      }
    } finally {
      await this.hall.simFault({ fault: 'ahu-trip', ahu, clear: true });
    }
    return `${ahu} tripped, ${acked}, cleared`;
  }

  private async sensorDeadClear(i: number): Promise<string> {
    const node = this.sensorNodes[i % this.sensorNodes.length]!;
    await this.hall.simFault({ fault: 'sensor-dead', node });
    try {
      await delay(8000);
    } finally {
      await this.hall.simFault({ fault: 'sensor-dead', node, clear: true });
    }
    return `${node} dead 8 s, cleared`;
  }

  /** SIGTERM of one controller (it resigns; its peers drop its peer-cache connection), then a restart. */
  private async peerRestart(): Promise<string> {
    const node = this.restartNode;
    await this.hall.kill(node, 'SIGTERM');
    const code = await this.hall.exitCode(node);
    await this.hall.start(node);
    await settle(this.hall, { timeoutMs: 20_000 });
    return `${node} exited ${code}, restarted`;
  }
}
