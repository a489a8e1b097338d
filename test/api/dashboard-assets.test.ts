// The dashboard's script is ES modules the browser fetches from /ui/ one import at a time: every
// module the page reaches from index.html (its imports followed, transitively) must be served as
// JavaScript with the page's headers, or the page loads nothing. A module added to src/api/ui that
// the server does not serve, or a page that imports a file that is not there, fails here.
import { readdir } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { loadSite } from '../../src/config/load-site.ts';
import { FakeCluster, type FakeNode, fakeNode } from '../support/fake-cluster.ts';

const site = await loadSite('config/demo-site.yaml');
const open: FakeNode[] = [];
afterEach(async () => {
  for (const n of open.splice(0)) await n.close();
});

async function node(): Promise<FakeNode> {
  const cluster = new FakeCluster({ 'zone-1': ['node-a', 41] });
  cluster.members.push({ node: 'node-a', apiUrl: 'http://127.0.0.1:8101', startedAtMs: 1 });
  const a = await fakeNode(cluster, 'node-a', site, []);
  open.push(a);
  return a;
}

/** The specifiers of a module's static imports and re-exports (`import … from 'x'`, `import 'x'`). */
const importsOf = (source: string) =>
  [...source.matchAll(/^\s*(?:import|export)\s+(?:[^'";]*?\s+from\s+)?'([^']+)';/gm)].map((m) => m[1]!);

describe('dashboard assets', () => {
  it('serves every module the page imports, transitively, as JavaScript with the page’s headers', async () => {
    const a = await node();
    const page = await a.app.inject('/');
    expect(page.statusCode).toBe(200);
    const entries = [...page.body.matchAll(/<script type="module" src="\/ui\/([^"]+)"><\/script>/g)].map(
      (m) => m[1]!,
    );
    expect(entries).toEqual(['dashboard.js']);
    const reached = new Set<string>();
    const importsBy = new Map<string, string[]>();
    const queue = [...entries];
    // Bounded: each file is fetched once, and the folder holds a few dozen.
    while (queue.length > 0 && reached.size < 200) {
      const file = queue.shift()!;
      if (reached.has(file)) continue;
      reached.add(file);
      const r = await a.app.inject(`/ui/${file}`);
      expect(r.statusCode, file).toBe(200);
      expect(r.headers['content-type'], file).toBe('text/javascript; charset=utf-8');
      expect(r.headers['cache-control'], file).toBe('no-cache');
      expect(r.headers['x-content-type-options'], file).toBe('nosniff');
      expect(String(r.headers['content-security-policy']), file).toMatch(/script-src 'self'/);
      importsBy.set(file, []);
      for (const spec of importsOf(r.body)) {
        // Relative, with its extension: the browser resolves it under /ui/, with no bundler or map.
        expect(spec, `${file} imports ${spec}`).toMatch(/^\.\/[a-z0-9-]+\.js$/);
        queue.push(spec.slice(2));
        importsBy.get(file)!.push(spec.slice(2));
      }
    }
    expect(reached.size).toBeGreaterThan(1);
    // No module in the folder that the page never loads (dead code shipped in every bundle).
    const onDisk = (await readdir(new URL('../../src/api/ui/', import.meta.url))).filter((f) =>
      f.endsWith('.js'),
    );
    expect([...reached].sort()).toEqual(onDisk.sort());
    // Imports point one way (docs/dashboard.md): a cycle would make a module's top-level code
    // depend on the order the browser happens to evaluate them in.
    const cycles: string[] = [];
    const done = new Set<string>();
    const visit = (file: string, path: string[]) => {
      if (path.includes(file)) cycles.push([...path.slice(path.indexOf(file)), file].join(' → '));
      if (done.has(file) || path.includes(file)) return;
      for (const next of importsBy.get(file) ?? []) visit(next, [...path, file]);
      done.add(file);
    };
    visit('dashboard.js', []);
    expect(cycles).toEqual([]);
  });

  it('serves the style sheet as CSS, and refuses a name that is not one of the folder’s files', async () => {
    const a = await node();
    const css = await a.app.inject('/ui/dashboard.css');
    expect(css.statusCode).toBe(200);
    expect(css.headers['content-type']).toBe('text/css; charset=utf-8');
    for (const name of ['not-there.js', 'dashboard.ts', 'Dom.js', 'dom.js.map', '.dom.js', 'dom_x.js']) {
      const r = await a.app.inject(`/ui/${name}`);
      expect(r.statusCode, name).toBe(400);
      expect(r.json().error, name).toBe('COOLCTL_E_BAD_REQUEST');
    }
  });
});
