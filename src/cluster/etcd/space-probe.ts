// Whether etcd takes writes, asked without writing: a transaction whose compare can never hold
// (a key's version below 0) and whose success branch is one small put. etcd's NOSPACE alarm refuses
// every request that carries a put, taken or not, so this one is refused exactly when real writes
// are; otherwise nothing is written (no revision, no db growth, one raft entry). Other failures say
// nothing about space (no quorum is etcd-quorum-lost's business): answered `null`, not a verdict.
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { ETCD_NO_SPACE_REMEDY, isEtcdNoSpace } from '../errors.ts';
import { etcdCall } from './etcd-client.ts';

/** How often the probe asks while etcd takes writes, ms; a refused write seen elsewhere asks sooner. */
export const SPACE_PROBE_EVERY_MS = 5_000;

/**
 * Asks etcd once whether it refuses writes for lack of space, writing nothing (the header's
 * transaction, on `prefix/space-probe/node`): true refused, false taken, null no verdict (etcd did
 * not answer, or failed for another reason). Used by the probe, the start path and a reload.
 */
export async function etcdRefusesWrites(
  client: Etcd3,
  at: { prefix: string; node: string },
  callTimeoutMs: number,
  signal?: AbortSignal,
): Promise<boolean | null> {
  const key = `${at.prefix}/space-probe/${at.node}`;
  try {
    await etcdCall('space probe', callTimeoutMs, signal, (options) =>
      client.if(key, 'Version', '<', 0).then(client.put(key).value('')).options(options).commit(),
    );
    return false;
  } catch (err) {
    return isEtcdNoSpace(err) ? true : null;
  }
}

export interface EtcdSpaceProbeOptions {
  client: Etcd3;
  prefix: string;
  node: string;
  callTimeoutMs: number;
  logger: Logger;
  registry: Registry;
  monoNow?: () => number;
}

export class EtcdSpaceProbe {
  private readonly opts: EtcdSpaceProbeOptions;
  private readonly log: Logger;
  private readonly monoNow: () => number;
  private readonly noSpaceGauge: Gauge;
  private readonly refusals: Counter;
  private lastAskedMs = Number.NEGATIVE_INFINITY;
  /** The last verdict: true while etcd refuses writes for lack of space. */
  private noSpace = false;

  constructor(opts: EtcdSpaceProbeOptions) {
    this.opts = opts;
    this.log = opts.logger.child({ component: 'etcd-space' });
    this.monoNow = opts.monoNow ?? (() => performance.now());
    for (const n of ['coolctl_etcd_no_space', 'coolctl_etcd_no_space_refusals_total'])
      opts.registry.removeSingleMetric(n);
    this.noSpaceGauge = new Gauge({
      name: 'coolctl_etcd_no_space',
      help: `1 while etcd refuses writes for lack of space (its NOSPACE alarm), as this node last asked; ${ETCD_NO_SPACE_REMEDY}`,
      registers: [opts.registry],
    });
    this.refusals = new Counter({
      name: 'coolctl_etcd_no_space_refusals_total',
      help: "this node's probes etcd refused for lack of space (one every few seconds while it lasts)",
      registers: [opts.registry],
    });
  }

  /** Whether etcd refuses writes for lack of space, asked at most every SPACE_PROBE_EVERY_MS; null: no answer. */
  async refusesWrites(): Promise<boolean | null> {
    const now = this.monoNow();
    if (now - this.lastAskedMs < SPACE_PROBE_EVERY_MS) return this.noSpace;
    this.lastAskedMs = now;
    const { client, prefix, node, callTimeoutMs } = this.opts;
    const refused = await etcdRefusesWrites(client, { prefix, node }, callTimeoutMs);
    if (refused === null) return null;
    if (refused) this.refusals.inc();
    if (refused !== this.noSpace) {
      this.noSpace = refused;
      this.noSpaceGauge.set(refused ? 1 : 0);
      if (refused)
        this.log.error(
          { remedy: ETCD_NO_SPACE_REMEDY },
          'etcd refuses writes: database space exceeded (NOSPACE alarm); leaders keep their leases, but no operator action, alarm, audit entry or new candidate can be written',
        );
      else this.log.info('etcd takes writes again');
    }
    return refused;
  }
}
