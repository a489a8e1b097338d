// A config file saved while it is read: editors and deploy tools save by writing a new file and
// renaming it over the old one, so the name may lead to another file between the reader's stat
// and its open. The reader takes the file it opened, whole, never the old file's length of the
// new one (a cut YAML file can parse: a truncated site drops whatever its tail held).
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { readBoundedFile, readSecretFile } from '../../src/config/config-files.ts';
import { tmpDir } from '../cluster/harness.ts';

// `stat` runs through a stand-in a test can make do the editor's rename right after it looked.
const afterStat = vi.hoisted(() => ({ hook: undefined as ((path: string) => Promise<void>) | undefined }));
vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  const stat = (async (path: Parameters<typeof real.stat>[0], opts?: Parameters<typeof real.stat>[1]) => {
    const st = await real.stat(path, opts);
    const hook = afterStat.hook;
    afterStat.hook = undefined;
    await hook?.(String(path));
    return st;
  }) as typeof real.stat;
  return { ...real, default: { ...real, stat }, stat };
});

let root: { dir: string; cleanup: () => Promise<void> } | undefined;
beforeAll(async () => {
  root = await tmpDir('config-file-read');
});
afterAll(async () => {
  await root?.cleanup();
});

/** Writes `text` beside `file` and has the next stat of `file` be followed by renaming it over. */
async function saveByRenameAfterStat(file: string, text: string, mode = 0o644): Promise<void> {
  const tmp = `${file}.tmp`;
  await fsp.writeFile(tmp, text, { mode });
  afterStat.hook = async (path) => {
    if (path === file) await fsp.rename(tmp, file);
  };
}

describe('a config file saved (by rename) between stat and open', () => {
  it('is read whole as the new file, not cut at the old file’s length', async () => {
    const file = join(root!.dir, 'site.yaml');
    const old = 'controlGroups:\n  - id: zone-1\n  - id: zone-2\n';
    await fsp.writeFile(file, old);
    const saved = `racks:\n  - id: RA-01\n${old}`;
    await saveByRenameAfterStat(file, saved);
    const r = await readBoundedFile(file, 1024 * 1024, 'site file');
    expect(r.ok && r.value.toString('utf8')).toBe(saved);
  });

  it('a secret file is judged by the mode of the file read, not the one stat saw', async () => {
    const file = join(root!.dir, 'secret');
    await fsp.writeFile(file, 'old secret\n', { mode: 0o600 });
    await saveByRenameAfterStat(file, 'new secret, open to all\n', 0o644);
    const r = await readSecretFile(file);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.message).toMatch(/open to every user/);
  });

  it('a FIFO renamed in after stat is refused, never waited on', async () => {
    const file = join(root!.dir, 'fifo-site.yaml');
    await fsp.writeFile(file, 'a: 1\n');
    const { execFileSync } = await import('node:child_process');
    const fifo = join(root!.dir, 'a-fifo');
    execFileSync('mkfifo', [fifo]);
    afterStat.hook = async (path) => {
      if (path === file) await fsp.rename(fifo, file);
    };
    const r = await readBoundedFile(file, 1024 * 1024, 'site file');
    expect(r.ok).toBe(false);
    expect(!r.ok && r.message).toMatch(/is not a regular file/);
  });
});
