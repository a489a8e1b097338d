// `coolctl completion bash|zsh`: the script is generated from the command tree, and bash really
// completes with it — commands, subcommands, options, an option's choices, file names — run in a
// real bash with COMP_WORDS set as readline would. Pure (no daemon).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), 'coolctl-completion-'));
let bashScript = '';
beforeAll(() => {
  const r = spawnSync(process.execPath, ['src/cli.ts', 'completion', 'bash'], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  expect(r.status, r.stderr).toBe(0);
  bashScript = join(dir, 'coolctl.bash');
  writeFileSync(bashScript, r.stdout);
  writeFileSync(join(dir, 'site.yaml'), 'site: {}\n');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** What bash offers after `line` (the last word is the one being completed). */
function complete(line: string): string[] {
  const words = line.split(' ');
  const program = `source ${JSON.stringify(bashScript)}
COMP_WORDS=(${words.map((w) => JSON.stringify(w)).join(' ')})
COMP_CWORD=${words.length - 1}
cd ${JSON.stringify(dir)}
_coolctl
printf '%s\\n' "\${COMPREPLY[@]}"`;
  const r = spawnSync('bash', ['--norc', '-c', program], { encoding: 'utf8', timeout: 10_000 });
  expect(r.stderr).toBe('');
  return r.stdout.split('\n').filter(Boolean).sort();
}

describe('bash completion', () => {
  it('completes commands and subcommands', () => {
    expect(complete('coolctl st')).toEqual(['status']);
    expect(complete('coolctl config ')).toEqual(['validate']);
    expect(complete('coolctl site ')).toEqual(['import']);
    expect(complete('coolctl completion ')).toEqual(['bash', 'zsh']);
  });

  it('completes options, their choices, and files where a file goes', () => {
    expect(complete('coolctl status --o')).toEqual(['--output']);
    expect(complete('coolctl status --output ')).toEqual(['json', 'table']);
    expect(complete('coolctl --api http://x:1 history --output j')).toEqual(['json']);
    expect(complete('coolctl config validate --kind ')).toEqual(['controller', 'site']);
    expect(complete('coolctl config validate si')).toEqual(['site.yaml']);
    expect(complete('coolctl status --ca-file si')).toEqual(['site.yaml']);
    expect(complete('coolctl pause --re')).toEqual(['--reason']);
    // Each once: commander lists the program's --version among its options too.
    expect(complete('coolctl --v')).toEqual(['--version']);
  });

  it('zsh gets the same through bashcompinit; another shell is a usage error', () => {
    const z = spawnSync(process.execPath, ['src/cli.ts', 'completion', 'zsh'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(z.status).toBe(0);
    expect(z.stdout).toMatch(/bashcompinit[\s\S]*complete -o filenames -F _coolctl coolctl/);
    const f = spawnSync(process.execPath, ['src/cli.ts', 'completion', 'fish'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(f.status).toBe(2);
    expect(f.stderr).toMatch(/Allowed choices are bash, zsh/);
  });
});
