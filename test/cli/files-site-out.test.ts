// Where `coolctl site import --out FILE` writes: a file a running daemon watches, so the new site
// replaces the old one whole (never half a site for a reload to read), a symbolic link or a
// directory is refused instead of written through, and a path that cannot be written says so with
// exit 2 (UsageError), never a stack.
import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeSiteFile } from '../../src/cli/site-import.ts';
import { UsageError } from '../../src/util/cli-args.ts';

const dir = mkdtempSync(join(tmpdir(), 'coolctl-out-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('writeSiteFile (site import --out)', () => {
  it('replaces an existing site file whole, keeping its mode, and leaves no temporary file', async () => {
    const out = join(dir, 'site.yaml');
    writeFileSync(out, 'old: site\n', { mode: 0o640 });
    await writeSiteFile(out, 'site: new\n');
    expect(readFileSync(out, 'utf8')).toBe('site: new\n');
    expect(statSync(out).mode & 0o777).toBe(0o640);
    expect(readdirSync(dir)).toEqual(['site.yaml']);
  });

  it('refuses a symbolic link, a directory or a missing folder, and writes nothing', async () => {
    const target = join(dir, 'passwd');
    writeFileSync(target, 'root:x:0:0\n');
    const link = join(dir, 'link.yaml');
    symlinkSync(target, link);
    await expect(writeSiteFile(link, 'site: x\n')).rejects.toThrow(
      new UsageError(`--out ${link}: a symbolic link; give the file it points to, not the link`),
    );
    expect(readFileSync(target, 'utf8')).toBe('root:x:0:0\n');
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    const folder = join(dir, 'folder');
    mkdirSync(folder);
    await expect(writeSiteFile(folder, 'site: x\n')).rejects.toThrow(/not a regular file/);
    await expect(writeSiteFile(join(dir, 'no', 'such', 'site.yaml'), 'x')).rejects.toThrow(
      /cannot write it \(ENOENT\); nothing was written/,
    );
  });
});
