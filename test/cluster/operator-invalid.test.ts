// Operator state on a real etcd: a garbage value put over a pause (etcdctl) keeps the group paused
// on the nodes that saw the pause, a node that starts then pauses it too (it knows no valid state),
// both say what is wrong (operatorProblem, the counter), and an operator's next change repairs it.
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import type { EtcdLeadership } from '../../src/cluster/etcd/etcd-leadership.ts';
import { waitFor } from '../helpers.ts';
import { makeNode, useEtcdFixture } from './harness.ts';

const fx = useEtcdFixture('operator-invalid');
let nodes: EtcdLeadership[] = [];

afterEach(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
  nodes = [];
});

describe('an invalid stored operator state', () => {
  it('fails safe: the last valid state stays in force, a new node pauses, and it is shown until fixed', async () => {
    const prefix = '/coolctl-test/operator-invalid';
    const base = { etcd: fx.etcd.clientOptions(), prefix, groups: ['g1'], dataRoot: `${fx.root.dir}/1` };
    const registry = new Registry();
    const n1 = makeNode('n1', base, { registry });
    nodes = [n1];
    await n1.start();
    await waitFor('n1 leads', () => n1.fence('g1'));
    await n1.updateOperator('g1', (cur) => ({ ...cur, paused: true, by: 'ops', reason: 'maintenance' }));
    await waitFor('paused in force', () => n1.operator('g1').paused);

    await fx.etcd.ctl(['put', `${prefix}/operator/g1`, '{"paused": tru'], { asUser: true });
    await waitFor('the bad value seen', () => n1.operatorProblem('g1'));
    expect(n1.operator('g1')).toMatchObject({ paused: true, reason: 'maintenance' });
    expect(n1.operatorProblem('g1')).toMatchObject({ keptLastValid: true, key: `${prefix}/operator/g1` });
    expect(await registry.metrics()).toMatch(/coolctl_operator_state_invalid_total\{group="g1"\} 1/);

    // A node that starts now never saw a valid state: it pauses the group.
    const n2 = makeNode('n2', base);
    nodes.push(n2);
    await n2.start();
    await waitFor('n2 read the store', () => n2.operatorProblem('g1'));
    expect(n2.operator('g1').paused).toBe(true);
    expect(n2.operatorProblem('g1')).toMatchObject({ keptLastValid: false });

    // The operator resumes: stored valid again, in force everywhere, nothing to show.
    await n2.updateOperator('g1', (cur) => ({ ...cur, paused: false, by: 'ops', reason: 'done' }));
    await waitFor('resumed everywhere', () => nodes.every((n) => !n.operator('g1').paused));
    expect(nodes.map((n) => n.operatorProblem('g1'))).toEqual([null, null]);
  });
});
