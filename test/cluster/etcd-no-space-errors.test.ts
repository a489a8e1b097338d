// etcd out of space has one owner in the error catalog: whichever way the refusal comes (the etcd3
// client's typed error, its words alone, wrapped in ours), it is COOLCTL_E_ETCD_NO_SPACE, retryable,
// with the remedy, and never taken for an answer too large for one message (which shares gRPC's
// RESOURCE_EXHAUSTED but is cured by smaller pages).
import { GRPCResourceExhastedError } from 'etcd3';
import { describe, expect, it } from 'vitest';
import { ClusterErrorCodes, etcdUnavailable, isEtcdNoSpace } from '../../src/cluster/errors.ts';
import { isTooLarge, toClusterError } from '../../src/cluster/etcd/etcd-client.ts';

const NO_SPACE = '8 RESOURCE_EXHAUSTED: etcdserver: mvcc: database space exceeded';
const TOO_LARGE = '8 RESOURCE_EXHAUSTED: Received message larger than max (4194400 vs. 4194304)';

describe('etcd out of space in the error catalog', () => {
  it('maps etcd refusing a write for lack of space to its own code, retryable, with the remedy', () => {
    for (const raw of [new GRPCResourceExhastedError(NO_SPACE), new Error(NO_SPACE)]) {
      const err = toClusterError('election enqueue', 5000, raw);
      expect(err.code).toBe(ClusterErrorCodes.ETCD_NO_SPACE);
      expect(err.retryable).toBe(true);
      expect(err.message).toMatch(/^etcd election enqueue: database space exceeded/);
      expect(err.message).toMatch(/etcdctl compact .*etcdctl defrag .*etcdctl alarm disarm/);
      expect(err.cause).toBe(raw);
      expect(isEtcdNoSpace(err)).toBe(true);
      expect(isTooLarge(err)).toBe(false);
    }
  });

  it('is recognised inside our wrappers, and keeps other RESOURCE_EXHAUSTED answers as they were', () => {
    expect(isEtcdNoSpace(etcdUnavailable('audit append', 'failed', new Error(NO_SPACE)))).toBe(true);
    const tooLarge = new GRPCResourceExhastedError(TOO_LARGE);
    expect(isTooLarge(tooLarge)).toBe(true);
    expect(isEtcdNoSpace(tooLarge)).toBe(false);
    expect(toClusterError('list', 5000, tooLarge).code).toBe(ClusterErrorCodes.ETCD_UNAVAILABLE);
  });
});
