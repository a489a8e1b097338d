// Error lines reach journald at priority err: when stdout is the journal stream systemd connected
// (JOURNAL_STREAM names its device:inode), every pino line starts with its syslog level prefix
// (<3> error, <4> warn, <6> info, <7> debug, <2> fatal), which journald reads (SyslogLevelPrefix=yes)
// so `journalctl -p err` finds them; anywhere else the lines stay plain JSON. The units name their
// lines (SyslogIdentifier). A real child process with its stdout on a file stands in for the journal
// stream (no journald in the test machine): the inode check is the one systemd's variable asks for.
import { spawnSync } from 'node:child_process';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { daemonLogger, isJournalStream, syslogPrefixed } from '../../src/daemon/logger.ts';
import { REPO_ROOT } from '../support/repo.ts';

const NODE = join(REPO_ROOT, 'node_modules/.bin/node');
const CHILD = join(REPO_ROOT, 'test/daemon/fixtures/journal-child.ts');
let dir: string | undefined;
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Runs the child with stdout on a fresh file; JOURNAL_STREAM from `journal(dev, ino)` of that file. */
async function runChild(journal: (dev: bigint, ino: bigint) => string | undefined): Promise<string[]> {
  dir ??= await mkdtemp(join(tmpdir(), 'coolctl-journal-'));
  const file = join(dir, `out-${Math.random().toString(16).slice(2)}.log`);
  const fh = await open(file, 'w');
  try {
    const st = await fh.stat({ bigint: true });
    const js = journal(st.dev, st.ino);
    const { JOURNAL_STREAM: _drop, ...env } = process.env;
    const r = spawnSync(NODE, [CHILD], {
      env: js === undefined ? env : { ...env, JOURNAL_STREAM: js },
      stdio: ['ignore', fh.fd, 'pipe'],
      timeout: 20_000,
    });
    expect(r.status, r.stderr.toString()).toBe(0);
  } finally {
    await fh.close();
  }
  return (await readFile(file, 'utf8')).split('\n').filter(Boolean);
}

describe('logs to journald', () => {
  it('prefixes each line with its syslog level when stdout is the journal stream', async () => {
    const lines = await runChild((dev, ino) => `${dev}:${ino}`);
    // In any order: stdout is written asynchronously, and the fatal line's synchronous flush may
    // overtake a write still in flight (seen: the debug line last, 5 runs in 40).
    expect(lines.map((l) => [l.slice(0, 3), JSON.parse(l.slice(3)).msg]).sort()).toEqual(
      [
        ['<7>', 'a debug line'],
        ['<6>', 'an info line'],
        ['<4>', 'a warn line'],
        ['<3>', 'an error line'],
        ['<2>', 'a fatal line'],
      ].sort(),
    );
  });

  it('writes plain JSON lines when stdout is not the journal (unset, or another stream’s inode)', async () => {
    for (const journal of [() => undefined, (dev: bigint, ino: bigint) => `${dev}:${ino + 1n}`]) {
      const lines = await runChild(journal);
      expect(lines).toHaveLength(5);
      for (const l of lines) expect(l.startsWith('{')).toBe(true);
      const error = lines.map((l) => JSON.parse(l)).find((j) => j.msg === 'an error line');
      expect(error).toMatchObject({ level: 50, component: 'x' });
    }
  });

  it('reads JOURNAL_STREAM as DEVICE:INODE and nothing else', () => {
    const stat = () => ({ dev: 12n, ino: 345n });
    expect(isJournalStream({ JOURNAL_STREAM: '12:345' }, 1, stat)).toBe(true);
    expect(isJournalStream({ JOURNAL_STREAM: '12:346' }, 1, stat)).toBe(false);
    expect(isJournalStream({ JOURNAL_STREAM: 'garbage' }, 1, stat)).toBe(false);
    expect(isJournalStream({}, 1, stat)).toBe(false);
    expect(
      isJournalStream({ JOURNAL_STREAM: '12:345' }, 1, () => {
        throw new Error('EBADF');
      }),
    ).toBe(false);
  });

  it('keeps the level prefix for child loggers and a logger handed the prefixed stream', () => {
    const out: string[] = [];
    const log = daemonLogger({ level: 'info' }, {}, syslogPrefixed({ write: (s) => out.push(s) }), false);
    log.child({ group: 'g1' }).error('x');
    log.info('y');
    expect(out.map((l) => l.slice(0, 3))).toEqual(['<3>', '<6>']);
  });

  it('names the units’ lines in the journal', async () => {
    const unit = (name: string) => readFile(join(REPO_ROOT, 'deploy/systemd', name), 'utf8');
    expect(await unit('coolctl@.service')).toMatch(/^SyslogIdentifier=coolctl$/m);
    expect(await unit('coolctl-gateway@.service')).toMatch(/^SyslogIdentifier=coolctl-gateway$/m);
    // The journal reads the prefixes only with SyslogLevelPrefix on (the default): nobody turns it off.
    expect(await unit('coolctl@.service')).not.toMatch(/SyslogLevelPrefix=(no|false|0)/);
  });
});
