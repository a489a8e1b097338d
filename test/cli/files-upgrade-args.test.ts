// `coolctl upgrade` and `rollback` arguments that name nothing: a --nodes list of no node would run
// an upgrade of zero nodes and report it done. Refused with exit 2 before a release is read or a
// node is touched.
import { describe, it } from 'vitest';
import { expectUsageRefusal, runCli } from './cli-process.ts';

describe('coolctl upgrade/rollback --nodes', () => {
  it('a list that names no node is refused before anything is read', async () => {
    for (const [verb, nodes] of [
      ['upgrade', ','],
      ['rollback', ' , '],
      ['upgrade', ''],
    ] as const) {
      const r = await runCli([
        verb,
        '1.2.3',
        '--nodes',
        nodes,
        '--root',
        '/nonexistent',
        '--api',
        'http://127.0.0.1:9',
      ]);
      expectUsageRefusal(
        r,
        /^coolctl: --nodes "[ ,]*": names no node; give a,b,c, or leave it out for every member$/,
      );
    }
  }, 60_000);
});
