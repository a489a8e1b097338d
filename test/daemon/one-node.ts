// A one-node controller config for daemon tests: the demo site (no simulator needed: its units stay
// unreachable, the loops still run), the test's etcd cluster (its `clientConfig()`: plain or secured
// as the suite runs), a free API port, and the first admin's bootstrap file (mode 600).
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import type { EtcdSettings } from '../../src/config/link-secrets.ts';
import { freePort } from '../support/etcd-cluster.ts';

export async function writeOneNodeConfig(opts: {
  dir: string;
  etcd: EtcdSettings;
  prefix: string;
  periodMs?: number;
}): Promise<{ config: string; api: string; admin: { name: string; password: string; file: string } }> {
  const port = await freePort();
  const config = join(opts.dir, 'controller.yaml');
  const admin = { name: 'admin', password: 'one-node admin password', file: join(opts.dir, 'admin.yaml') };
  await writeFile(admin.file, stringify({ name: admin.name, password: admin.password }), { mode: 0o600 });
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
      api: { bootstrapAdminFile: admin.file },
      ...(opts.periodMs ? { control: { periodMs: opts.periodMs } } : {}),
    }),
  );
  return { config, api: `http://127.0.0.1:${port}`, admin };
}
