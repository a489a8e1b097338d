// A one-node controller config for daemon tests: the demo site (no simulator needed: its units stay
// unreachable, the loops still run), the test's etcd cluster, a free API port.
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { freePort } from '../support/etcd-cluster.ts';

export async function writeOneNodeConfig(opts: {
  dir: string;
  etcd: string[];
  prefix: string;
  periodMs?: number;
}): Promise<{ config: string; api: string }> {
  const port = await freePort();
  const config = join(opts.dir, 'controller.yaml');
  await writeFile(
    config,
    stringify({
      site: resolve('config/demo-site.yaml'),
      cluster: {
        etcd: opts.etcd,
        prefix: opts.prefix,
        leaseTtlS: 2,
        keepaliveIntervalMs: 300,
        safetyMarginMs: 400,
        etcdCallTimeoutMs: 500,
      },
      nodes: { n1: { api: `127.0.0.1:${port}` } },
      dataDir: join(opts.dir, 'var'),
      ...(opts.periodMs ? { control: { periodMs: opts.periodMs } } : {}),
    }),
  );
  return { config, api: `http://127.0.0.1:${port}` };
}
