// Junk cannot evict real entries (docs/security.md): a viewer who sends thousands of requests their
// role does not allow gets a 403 each, counted, and a log line per burst — no audit entry, no etcd
// write. A trail of 50 entries keeps the operator's real action through the flood.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type ApiNode, apiNode } from './api-node.ts';

const open: ApiNode[] = [];
afterEach(async () => {
  for (const n of open.splice(0)) await n.close();
});

describe('audit trail under a flood of refused requests', () => {
  it('keeps an operator’s entry through 2 000 forbidden requests: counted, logged per burst, never stored', async () => {
    const n = await apiNode({ audit: { maxEntries: 50, pruneEvery: 10 } });
    open.push(n);
    const real = await n.app.inject({
      method: 'POST',
      url: '/api/v1/groups/zone-1/pause',
      headers: n.as('operator'),
      payload: { reason: 'filter change' },
    });
    expect(real.statusCode, real.body).toBe(200);
    const puts = vi.spyOn(n.auth.kv, 'put');
    const linesBefore = n.lines.length;
    for (let i = 0; i < 2_000; i++) {
      const r = await n.app.inject({
        method: 'DELETE',
        url: '/api/v1/users/operator',
        headers: n.auth.as('viewer'),
      });
      expect(r.statusCode).toBe(403);
      expect(r.json().error).toBe('COOLCTL_E_FORBIDDEN');
    }
    // Nothing was written to the store for them, and the user is still there.
    expect(puts.mock.calls.filter(([key]) => key.includes('/audit/'))).toEqual([]);
    expect(n.auth.auth.hasUser('operator')).toBe(true);
    await n.audit.prune();
    const { entries } = await n.audit.list({ limit: 1000 });
    expect(entries).toEqual([
      expect.objectContaining({ kind: 'operator', action: 'pause', user: 'operator', status: 200 }),
    ]);
    // Counted, each one…
    expect(await n.count('coolctl_api_auth_failures_total', { reason: 'forbidden' })).toBe(2_000);
    expect(await n.count('coolctl_api_requests_refused_total', { route: '/api/v1/users/:name' })).toBe(2_000);
    // …logged per burst, not per request: the flood took well under the log period.
    const lines = n.lines.slice(linesBefore);
    const refused = lines.filter((l) => l.msg === 'request refused');
    expect(refused.length).toBeLessThanOrEqual(2);
    expect(refused[0]).toMatchObject({
      code: 'COOLCTL_E_FORBIDDEN',
      status: 403,
      route: '/api/v1/users/:name',
    });
    expect(lines.filter((l) => l.msg === 'operator action')).toEqual([]);
    // A real action after the flood is stored as ever.
    const next = await n.app.inject({
      method: 'POST',
      url: '/api/v1/groups/zone-1/resume',
      headers: n.auth.as('operator'),
    });
    expect(next.statusCode).toBe(200);
    expect((await n.audit.list()).entries.map((e) => ('action' in e ? e.action : e.kind))).toEqual([
      'pause',
      'resume',
    ]);
  });
});
