// A burst of reload asks (SIGHUPs from a deploy script, a file written in steps) is one reload
// after the one running, not one each: the queued one reads the files after every ask. In process,
// on a controller that was never started (a reload needs only the files).
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadControllerConfig } from '../../src/config/controller-config.ts';
import { Controller } from '../../src/daemon/controller.ts';
import { tmpDir } from '../cluster/harness.ts';
import { waitFor } from '../helpers.ts';
import { writeOneNodeConfig } from './one-node.ts';

let root: { dir: string; cleanup: () => Promise<void> } | undefined;
beforeAll(async () => {
  root = await tmpDir('reload-burst');
});
afterAll(async () => {
  await root?.cleanup();
});

describe('reload burst', () => {
  it('twenty asks, one running: two reloads, the running one and one queued behind it', async () => {
    const { config } = await writeOneNodeConfig({
      dir: root!.dir,
      etcd: { hosts: ['http://127.0.0.1:1'] }, // never contacted: the controller is not started
      prefix: '/coolctl/reload-burst',
    });
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (s: string) => lines.push(s) });
    const controller = new Controller(await loadControllerConfig(config, 'n1'), { logger });
    const reloading = () => lines.filter((l) => l.includes('"msg":"reloading the config"')).length;
    const first = controller.reload('SIGHUP');
    await waitFor('the first reload running', () => reloading() === 1);
    const asks = Array.from({ length: 19 }, () => controller.reload('SIGHUP'));
    expect(new Set(asks).size).toBe(1);
    expect(asks[0]).not.toBe(first);
    await Promise.all([first, ...asks]);
    const unchanged = (
      await controller.registry.getSingleMetric('coolctl_config_reloads_total')?.get()
    )?.values
      .filter((v) => v.labels['result'] === 'unchanged')
      .reduce((n, v) => n + v.value, 0);
    expect(unchanged).toBe(2);
    const msgs = lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
    expect(msgs.filter((m) => m === 'reloading the config')).toHaveLength(2);
    // An ask after the burst is a reload of its own.
    await controller.reload('SIGHUP');
    expect(msgs.length).toBeLessThan(lines.length);
  });
});
