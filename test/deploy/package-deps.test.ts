// What goes into a bundle, pure and on small trees: the imports read from compiled files, the
// closure over a lock as Node resolves names (nested copies first, platform-only optional packages
// for their platform), native prebuilds kept for the target only, and the ELF check that catches a
// binary of another architecture.
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { copyPackages, foreignBinaries } from '../../scripts/package/bundle.ts';
import { closure, importedPackages, type Lock, packageOf } from '../../scripts/package/deps.ts';

const dir = mkdtempSync(join(tmpdir(), 'coolctl-package-deps-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function write(path: string, text: string | Buffer): void {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, text);
}

describe('imports read from compiled files', () => {
  it('names packages, not paths or builtins', () => {
    expect(packageOf('@fastify/cors')).toBe('@fastify/cors');
    expect(packageOf('pino/file')).toBe('pino');
    expect(packageOf('@grpc/grpc-js/build/src/x.js')).toBe('@grpc/grpc-js');
    expect(packageOf('node:fs')).toBeNull();
    expect(packageOf('fs')).toBeNull();
    expect(packageOf('./x.js')).toBeNull();
    expect(packageOf('the file')).toBeNull();
  });

  it('finds static, dynamic and createRequire imports, and follows relative ones only', () => {
    const root = join(dir, 'imports');
    write(
      join(root, 'src/main.js'),
      [
        "import { a } from 'alpha';",
        "export { b } from '@scope/beta/sub';",
        "import 'gamma';",
        "const d = await import('delta');",
        "const y = createRequire(import.meta.url)('yaml');",
        "import { x } from './lib/x.js';",
        "import { readFile } from 'node:fs/promises';",
        "log.info('read from \\'the file\\'');",
      ].join('\n'),
    );
    write(join(root, 'src/lib/x.js'), "import e from 'epsilon';\n");
    // Not reached from main.js: its import is not the entry's.
    write(join(root, 'src/other.js'), "import z from 'zeta';\n");
    const r = importedPackages([join(root, 'src/main.js')]);
    expect([...r.packages.keys()].sort()).toEqual([
      '@scope/beta',
      'alpha',
      'delta',
      'epsilon',
      'gamma',
      'yaml',
    ]);
    expect([...r.files].map((f) => f.slice(root.length)).sort()).toEqual(['/src/lib/x.js', '/src/main.js']);
    expect([...importedPackages([join(root, 'src')]).packages.keys()]).toContain('zeta');
  });
});

describe('the closure over package-lock.json', () => {
  const lock: Lock = {
    packages: {
      '': {},
      'node_modules/app-dep': {
        version: '1.0.0',
        dependencies: { shared: '^2' },
        optionalDependencies: { 'native-arm64': '1', 'native-x64': '1' },
      },
      'node_modules/app-dep/node_modules/shared': { version: '2.0.0' },
      'node_modules/shared': { version: '1.0.0' },
      'node_modules/other': { version: '1.0.0', dependencies: { shared: '^1' } },
      'node_modules/native-arm64': { version: '1.0.0', optional: true, os: ['linux'], cpu: ['arm64'] },
      'node_modules/native-x64': { version: '1.0.0', optional: true, os: ['linux'], cpu: ['x64'] },
      'node_modules/x64-only': { version: '1.0.0', cpu: ['x64'] },
    },
  };

  it('takes the nearest copy of a name, as Node resolves it, and optional packages that fit', () => {
    expect(closure(lock, ['app-dep', 'other'], { os: 'linux', cpu: 'arm64' })).toEqual([
      'node_modules/app-dep',
      'node_modules/app-dep/node_modules/shared',
      'node_modules/native-arm64',
      'node_modules/other',
      'node_modules/shared',
    ]);
    expect(closure(lock, ['app-dep'], { os: 'linux', cpu: 'x64' })).toEqual([
      'node_modules/app-dep',
      'node_modules/app-dep/node_modules/shared',
      'node_modules/native-x64',
    ]);
  });

  it('refuses a required package that is missing or does not run on the target', () => {
    expect(() => closure(lock, ['nowhere'], { os: 'linux', cpu: 'arm64' })).toThrow(/has no nowhere/);
    expect(() => closure(lock, ['x64-only'], { os: 'linux', cpu: 'arm64' })).toThrow(
      /does not run on linux-arm64/,
    );
  });
});

describe('native code in a bundle', () => {
  /** A minimal ELF header of machine `m` (x86-64 0x3e, AArch64 0xb7). */
  const elf = (m: number) => {
    const b = Buffer.alloc(64);
    b.writeUInt32BE(0x7f454c46, 0);
    b.writeUInt16LE(m, 18);
    return b;
  };

  it('keeps the target prebuilds, drops the others, the nested node_modules and type files', () => {
    const repo = join(dir, 'repo');
    const pkg = join(repo, 'node_modules/addon');
    write(join(pkg, 'package.json'), '{}');
    write(join(pkg, 'index.js'), '');
    write(join(pkg, 'index.d.ts'), '');
    write(join(pkg, 'prebuilds/linux-arm64/addon.armv8.glibc.node'), elf(0xb7));
    write(join(pkg, 'prebuilds/linux-x64/addon.glibc.node'), elf(0x3e));
    write(join(pkg, 'prebuilds/darwin-x64+arm64/addon.node'), 'mach-o');
    write(join(pkg, 'node_modules/helper/index.js'), '');
    const out = join(dir, 'bundle-arm64');
    copyPackages(repo, ['node_modules/addon'], out, { os: 'linux', cpu: 'arm64' });
    const copied = readdirSync(join(out, 'node_modules/addon'), { recursive: true }).map(String).sort();
    expect(copied).toEqual([
      'index.js',
      'package.json',
      'prebuilds',
      'prebuilds/linux-arm64',
      'prebuilds/linux-arm64/addon.armv8.glibc.node',
    ]);
    expect(foreignBinaries(out, 'arm64')).toEqual([]);
  });

  it('names every ELF file of another architecture', () => {
    const b = join(dir, 'mixed');
    write(join(b, 'node/bin/node'), elf(0xb7));
    write(join(b, 'node_modules/a/x.node'), elf(0x3e));
    write(join(b, 'README.md'), 'text');
    expect(foreignBinaries(b, 'arm64')).toEqual(['node_modules/a/x.node']);
    expect(foreignBinaries(b, 'x64')).toEqual(['node/bin/node']);
  });
});
