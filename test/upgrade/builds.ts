// Builds of coolctl for upgrade tests, as source trees a node can run from (`src/cli.ts`): this
// repository's src/ and device profiles copied into a folder, node_modules linked, and optionally
// src/version.ts restated (another release number and wire range) or the CLI made to fail at start.
import { cp, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO_ROOT } from '../support/repo.ts';

export interface BuildOptions {
  version?: string;
  wire?: { version: number; oldest: number };
  /** The CLI exits 3 before it starts anything (a release that cannot run on this host). */
  brokenStart?: boolean;
}

export async function makeBuild(dir: string, o: BuildOptions = {}): Promise<string> {
  await mkdir(join(dir, 'config'), { recursive: true });
  await cp(join(REPO_ROOT, 'src'), join(dir, 'src'), { recursive: true });
  await cp(join(REPO_ROOT, 'config/profiles'), join(dir, 'config/profiles'), { recursive: true });
  await cp(join(REPO_ROOT, 'package.json'), join(dir, 'package.json'));
  await symlink(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'));
  const versionFile = join(dir, 'src/version.ts');
  let text = await readFile(versionFile, 'utf8');
  if (o.version) {
    const next = text.replace(/export const VERSION = '[^']*';/, `export const VERSION = '${o.version}';`);
    if (next === text) throw new Error('src/version.ts: no VERSION line to restate');
    text = next;
  }
  if (o.wire) {
    const next = text.replace(
      /export const WIRE: WireRange = Object\.freeze\(\{[^}]*\}\);/,
      `export const WIRE: WireRange = Object.freeze({ version: ${o.wire.version}, oldest: ${o.wire.oldest} });`,
    );
    if (next === text) throw new Error('src/version.ts: no WIRE line to restate');
    text = next;
  }
  await writeFile(versionFile, text);
  if (o.brokenStart) {
    const cli = join(dir, 'src/cli.ts');
    await writeFile(
      cli,
      `process.stderr.write('this build cannot start\\n');\nprocess.exit(3);\n${await readFile(cli, 'utf8')}`,
    );
  }
  return dir;
}
