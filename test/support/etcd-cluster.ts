// The suite's etcd cluster: scripts/lib/etcd-cluster.ts with the suite's links as the default
// (links.ts: `COOLCTL_TEST_LINKS=secure` turns TLS and auth on); a test whose point is the plain
// path says `secure: false`.
import {
  type EtcdCluster,
  type EtcdClusterOptions,
  startEtcdCluster as startLoopbackEtcdCluster,
} from '../../scripts/lib/etcd-cluster.ts';
import { secureLinks } from './links.ts';

export * from '../../scripts/lib/etcd-cluster.ts';

export function startEtcdCluster(opts: EtcdClusterOptions = {}): Promise<EtcdCluster> {
  return startLoopbackEtcdCluster({ ...opts, secure: opts.secure ?? secureLinks() });
}
