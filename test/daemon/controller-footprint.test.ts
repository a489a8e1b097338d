// What a controller loads and never uses costs every gateway its memory. Node's bundled undici
// (WebSocket, fetch): an ES import of node:http loads it, through the module's lazy WebSocket
// getters, ~0.8 MB of source and its compiled code (src/util/node-http.ts). The `yaml` library:
// the CLI config's reader is on every command's path, `coolctl run` included.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { http } from '../../src/util/node-http.ts';

const ROOT = join(import.meta.dirname, '..', '..');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return p.endsWith('.ts') ? [p] : [];
  });
}

describe('what the controller loads', () => {
  it('gives the module itself', () => {
    expect(typeof http.request).toBe('function');
    expect(http.STATUS_CODES[503]).toBe('Service Unavailable');
  });

  it('no source file imports a value from node:http', () => {
    const offenders = sourceFiles(join(ROOT, 'src')).filter((f) =>
      /^import\s+(?!type\b)[^;]*from\s+'(node:)?http'/m.test(readFileSync(f, 'utf8')),
    );
    expect(offenders.map((f) => relative(ROOT, f))).toEqual([]);
  });

  it('neither undici nor the yaml library, with the CLI, the gateway and the notifier loaded too', () => {
    const modules = [
      // What src/cli.ts imports before it parses its arguments: every command's path, `run` included.
      'src/cli/alarm-commands.ts',
      'src/cli/api-commands.ts',
      'src/cli/cli-config.ts',
      'src/cli/upgrade-commands.ts',
      'src/daemon/controller.ts',
      'src/gateway/gateway.ts',
      'src/cli/api-client.ts',
      'src/alarms/notify.ts',
    ];
    const script = `import { registerHooks } from 'node:module';
      const urls = [];
      registerHooks({ load(url, context, next) { urls.push(url); return next(url, context); } });
      for (const m of ${JSON.stringify(modules)}) await import(new URL(m, 'file://${ROOT}/').href);
      console.log(JSON.stringify({
        undici: process.moduleLoadList.filter((m) => /undici/.test(m)),
        yaml: urls.filter((u) => u.includes('/node_modules/yaml/')),
        loaded: urls.length,
      }));`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 60_000,
    });
    const r = JSON.parse(out.trim().split('\n').at(-1)!) as {
      undici: string[];
      yaml: string[];
      loaded: number;
    };
    expect(r.loaded).toBeGreaterThan(100);
    expect(r.undici).toEqual([]);
    expect(r.yaml).toEqual([]);
  });
});
