// The folders of src/ are layers (docs/architecture.md): a module imports its own folder and the
// layers below it, never one above, and no set of modules imports itself round in a circle. Read
// from the source with TypeScript's own pre-processor (static imports, re-exports, type imports and
// `import('…')` with a literal), so an import added anywhere against the order fails here, named.
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, normalize, relative } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/** Bottom to top; a module may import its own layer's files and any layer listed before its own. */
const LAYERS: readonly (readonly string[])[] = [
  ['util', 'errors.ts', 'version.ts', 'unit-contract.ts'],
  ['metrics', 'client'],
  ['cluster', 'upgrade'],
  ['cache', 'config'],
  ['devices'],
  ['sensors'],
  ['control'],
  ['alarms'],
  ['api'],
  ['daemon'],
  ['gateway'],
  ['cli', 'cli.ts'],
];

/**
 * The imports that run up a layer on purpose, each with why. Checking a site loads the vendor
 * profiles its units name, which the device layer reads and compiles; the RTU baud rates are the
 * Modbus serial line's, owned with its framing.
 */
const UPWARD: Readonly<Record<string, string>> = {
  'config/site-profiles.ts -> devices/profile/load.ts': 'a unit’s profile checked against its protocol',
  'config/site-profiles.ts -> devices/create-device.ts': 'the profiles folder',
  'config/controller-config.ts -> devices/create-device.ts': 'the lease rule counts a profile’s requests',
  'config/site-schema.ts -> devices/modbus/rtu-frame.ts': 'the baud rates an RTU line may run at',
};

/** Packages and folders control must not reach (STYLE.md: it works through DeviceIo, SensorView, Leadership). */
const CONTROL_NEVER = [
  /^etcd3$/,
  /^modbus-serial$/,
  /^node-opcua/,
  /^devices\/(modbus|opcua)\//,
  /^cluster\/etcd\//,
];

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await sourceFiles(path)));
    else if (/\.(ts|js)$/.test(e.name)) out.push(path);
  }
  return out;
}

interface ImportEdge {
  from: string;
  /** Path under src/ for a module of ours; the bare specifier for a package. */
  to: string;
  ours: boolean;
}

async function importGraph(): Promise<ImportEdge[]> {
  const edges: ImportEdge[] = [];
  for (const file of await sourceFiles('src')) {
    const from = relative('src', file);
    const info = ts.preProcessFile(await readFile(file, 'utf8'), true, true);
    for (const { fileName } of info.importedFiles) {
      if (fileName.startsWith('.'))
        edges.push({ from, to: normalize(join(dirname(from), fileName)), ours: true });
      else if (!fileName.startsWith('node:')) edges.push({ from, to: fileName, ours: false });
    }
  }
  return edges;
}

const folderOf = (path: string) => path.split('/')[0]!;
const layerOf = (path: string) => LAYERS.findIndex((l) => l.includes(folderOf(path)));

/** Every set of modules that import each other round (Tarjan's strongly connected components). */
function circles(edges: readonly ImportEdge[]): string[][] {
  const next = new Map<string, string[]>();
  for (const e of edges) if (e.ours) next.set(e.from, [...(next.get(e.from) ?? []), e.to]);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string) => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const members: string[] = [];
    for (let w = stack.pop()!; ; w = stack.pop()!) {
      onStack.delete(w);
      members.push(w);
      if (w === v) break;
    }
    if (members.length > 1) found.push(members.sort());
  };
  for (const v of next.keys()) if (!index.has(v)) visit(v);
  return found;
}

describe('import layers', () => {
  it('every folder of src/ has a layer', async () => {
    const folders = new Set((await importGraph()).map((e) => folderOf(e.from)));
    expect([...folders].filter((f) => layerOf(f) < 0)).toEqual([]);
  });

  it('no module imports a layer above its own, but for the named exceptions', async () => {
    const edges = await importGraph();
    const upward = edges
      .filter((e) => e.ours && layerOf(e.to) > layerOf(e.from))
      .map((e) => `${e.from} -> ${e.to}`);
    expect(upward.filter((e) => !(e in UPWARD))).toEqual([]);
    // An exception whose import is gone is taken off the list, so it cannot excuse a new one.
    expect(Object.keys(UPWARD).filter((e) => !upward.includes(e))).toEqual([]);
  });

  it('no modules import each other round in a circle', async () => {
    expect(circles(await importGraph())).toEqual([]);
  });

  it('control reaches units, sensors and etcd only through their interfaces', async () => {
    const reached = (await importGraph())
      .filter((e) => folderOf(e.from) === 'control' && CONTROL_NEVER.some((p) => p.test(e.to)))
      .map((e) => `${e.from} -> ${e.to}`);
    expect(reached).toEqual([]);
  });
});
