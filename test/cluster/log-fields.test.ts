// Leadership's log lines name each field once: nodes whose loggers are made as the daemon makes
// them (`node` bound at the root) write no second `node`, and its parts (etcd session, expired-lease
// revoker) no second `component`. Real 3-member etcd; the raw line text is read, since JSON.parse
// would keep one of two equal keys and hide the other.
import { afterEach, describe, expect, it } from 'vitest';
import type { EtcdLeadership } from '../../src/cluster/etcd/etcd-leadership.ts';
import { waitFor } from '../helpers.ts';
import { captureLogs, linesWithDuplicateKeys } from '../support/log-lines.ts';
import { balanced, makeNode, useEtcdFixture, writers } from './harness.ts';

const GROUPS = ['g1', 'g2'];
const NAMES = ['n1', 'n2'];

const fx = useEtcdFixture('log-fields');
let nodes: EtcdLeadership[] = [];

afterEach(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
  nodes = [];
});

describe('leadership log fields', () => {
  it('a run of two nodes, one stopping, writes no line with a key twice', async () => {
    const logs = NAMES.map((n) => captureLogs({ app: 'coolctl', node: n }));
    const b = {
      etcd: fx.etcd.clientOptions(),
      prefix: '/coolctl-test/log-fields',
      groups: GROUPS,
      dataRoot: `${fx.root.dir}/run`,
    };
    nodes = NAMES.map((n, i) => makeNode(n, b, { logger: logs[i]!.logger }));
    await Promise.all(nodes.map((n) => n.start()));
    await waitFor('an even placement', () => balanced(writers(nodes, GROUPS), NAMES), { timeoutMs: 15_000 });
    await nodes[1]!.stop();
    await waitFor('n1 leads both groups', () => GROUPS.every((g) => nodes[0]!.fence(g) !== null), {
      timeoutMs: 10_000,
    });
    for (const l of logs) {
      const components = new Set(l.parsed().map((x) => x.component));
      expect(components).toContain('leadership');
      expect(components).toContain('etcd-session');
      expect(linesWithDuplicateKeys(l.lines)).toEqual([]);
    }
  }, 60_000);
});
