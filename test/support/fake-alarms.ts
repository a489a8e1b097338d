// The cluster's alarms without etcd, for API and dashboard tests over the fake cluster
// (./fake-cluster.ts): one shared record map stands for `<prefix>/alarms/`, and every action goes
// through the same pure functions the engine uses (src/alarms/alarm.ts), so an acknowledgement on
// one fake node reads the same on the others. The real store and engine are tested against etcd in
// test/alarms/.
import {
  type Alarm,
  type AlarmApi,
  type AlarmKind,
  acknowledged,
  clearedAlarm,
  listAlarms,
  type NotificationStatus,
  raisedAlarm,
  type StoredAlarm,
  shelvedFor,
  toApiAlarm,
  unshelved,
} from '../../src/alarms/alarm.ts';
import { unknownAlarm } from '../../src/alarms/alarm-store.ts';

export class FakeAlarms implements AlarmApi {
  readonly records = new Map<string, StoredAlarm>();

  /** Raises an alarm as a group's leader would; its id. */
  raise(
    kind: AlarmKind,
    group: string | null,
    subject: string | null,
    message: string,
    opts: { atMs?: number; value?: number | null; by?: string } = {},
  ): string {
    const a = raisedAlarm(
      { kind, group, subject, message, value: opts.value ?? null },
      opts.by ?? 'node-a',
      opts.atMs ?? Date.now(),
    );
    this.records.set(a.id, a);
    return a.id;
  }

  clear(id: string, reason = 'back in range'): void {
    const a = this.records.get(id);
    if (a) this.records.set(id, clearedAlarm(a, { atMs: Date.now(), by: a.raisedBy, reason }));
  }

  async list(which: 'active' | 'all'): Promise<Alarm[]> {
    return listAlarms(this.records.values(), which, Date.now());
  }

  private act(id: string, fn: (cur: StoredAlarm) => StoredAlarm): Alarm {
    const cur = this.records.get(id);
    if (!cur) throw unknownAlarm(id);
    const next = fn(cur);
    this.records.set(id, next);
    return toApiAlarm(next, Date.now());
  }

  async acknowledge(id: string, user: string, comment: string): Promise<Alarm> {
    return this.act(id, (cur) => acknowledged(cur, user, comment, Date.now()));
  }

  async shelve(id: string, user: string, durationS: number, comment: string): Promise<Alarm> {
    return this.act(id, (cur) => shelvedFor(cur, user, durationS, comment, Date.now()));
  }

  async unshelve(id: string, _user: string): Promise<Alarm> {
    return this.act(id, unshelved);
  }

  notifications(): NotificationStatus {
    return { sinks: [], failures: [] };
  }
}
