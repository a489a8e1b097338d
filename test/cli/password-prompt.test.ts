// `login` and `user add` without --password-file: on a terminal the CLI prompts and reads one line
// with echo off (raw mode), puts the terminal back as it was on every way out, and Ctrl-C cancels
// with nothing sent (exit 130); from a pipe it takes the first line. On a real pseudo-terminal
// (util-linux `script`, the CLI and then `stty -a` in its shell, so the terminal's mode after the
// CLI is seen), and the reader itself on a stand-in terminal for the ways out a person cannot type
// on cue (the deadline, the terminal closing).
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSecret, type SecretInput } from '../../src/cli/secret-input.ts';
import { CancelledError, UsageError } from '../../src/util/cli-args.ts';
import { TEST_PASSWORD } from '../support/api-auth.ts';
import { expectUsageRefusal, type FakeApi, fakeApi, runCli, type StubApi, stubApi } from './cli-process.ts';

let api: FakeApi;
let stub: StubApi;
beforeAll(async () => {
  api = await fakeApi();
  stub = await stubApi(() => ({ status: 200, body: { token: 'cct_0_x', role: 'admin', expiresAtMs: 0 } }));
});
afterAll(async () => {
  await api?.node.close();
  await stub?.close();
});

/** A stand-in terminal: a stream with isTTY and a raw mode that records every switch. */
function fakeTty(): {
  input: SecretInput & PassThrough;
  modes: boolean[];
  output: PassThrough;
  shown: () => string;
} {
  const input = new PassThrough() as SecretInput & PassThrough;
  const modes: boolean[] = [];
  input.isTTY = true;
  input.isRaw = false;
  input.setRawMode = (raw: boolean) => {
    modes.push(raw);
    input.isRaw = raw;
    return input;
  };
  const output = new PassThrough();
  let shown = '';
  output.on('data', (c: Buffer) => {
    shown += c;
  });
  return { input, modes, output, shown: () => shown };
}

describe('the reader on a stand-in terminal', () => {
  it('Enter: the line typed (erase, Ctrl-U and arrow keys edit, nothing echoed); the mode put back', async () => {
    const t = fakeTty();
    const p = readSecret({ input: t.input, output: t.output, prompt: 'password: ' });
    t.input.write('wrong\u0015s3cret');
    t.input.write('\u001b[A');
    t.input.write('xx\u007f\u007f pass\r');
    expect(await p).toBe('s3cret pass');
    expect(t.modes).toEqual([true, false]);
    expect(t.shown()).toBe('password: \n');
  });

  it('Ctrl-C, Ctrl-D on an empty line, the terminal closing: cancelled, the mode put back', async () => {
    for (const [typed, why] of [
      ['abc\u0003', /Ctrl-C/],
      ['\u0004', /Ctrl-D/],
    ] as const) {
      const t = fakeTty();
      const p = readSecret({ input: t.input, output: t.output, prompt: 'password: ' });
      t.input.write(typed);
      await expect(p).rejects.toThrow(why);
      await expect(p).rejects.toBeInstanceOf(CancelledError);
      expect(t.modes).toEqual([true, false]);
    }
    const t = fakeTty();
    const p = readSecret({ input: t.input, output: t.output, prompt: 'password: ' });
    t.input.end();
    await expect(p).rejects.toBeInstanceOf(CancelledError);
    expect(t.modes).toEqual([true, false]);
  });

  it('the deadline: refused, the mode put back', async () => {
    const t = fakeTty();
    const p = readSecret({ input: t.input, output: t.output, prompt: 'password: ', timeoutMs: 50 });
    await expect(p).rejects.toBeInstanceOf(UsageError);
    expect(t.modes).toEqual([true, false]);
  });

  it('a new user’s password is asked twice; two different answers are refused', async () => {
    const t = fakeTty();
    const p = readSecret({ input: t.input, output: t.output, prompt: 'password: ', confirm: true });
    t.input.write('first one\r');
    // The second prompt reads what is typed after it.
    await new Promise((r) => setTimeout(r, 10));
    t.input.write('second one\r');
    await expect(p).rejects.toThrow('the two passwords differ; nothing was sent');
    expect(t.modes).toEqual([true, false, true, false]);
  });
});

describe('from a pipe or a file', () => {
  it('a pipe: the first line, without its line end; login sends and reads no token', async () => {
    // The documented first sign-in: `coolctl login --user NAME > token` with `tokenFile: token` in
    // cli.yaml — the shell has emptied the token file before the CLI reads anything.
    const dir = await mkdtemp(join(tmpdir(), 'coolctl-cli-login-'));
    await writeFile(join(dir, 'token'), '');
    await writeFile(join(dir, 'cli.yaml'), 'tokenFile: token\n');
    try {
      const r = await runCli(['login', '--user', 'admin', '--api', stub.url], {
        stdin: 'pipe password 1\r\nsecond line\n',
        env: { COOLCTL_CLI_CONFIG: join(dir, 'cli.yaml') },
      });
      expect(r.status, r.stderr).toBe(0);
      const sent = stub.requests.at(-1)!;
      expect(JSON.parse(sent.body)).toMatchObject({ name: 'admin', password: 'pipe password 1' });
      expect(sent.headers.authorization).toBeUndefined();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 30_000);

  it('an empty pipe, or a password file that cannot be read: exit 2, nothing sent', async () => {
    const before = stub.requests.length;
    const [empty, missing] = await Promise.all([
      runCli(['login', '--user', 'admin', '--api', stub.url], { stdin: '' }),
      runCli([
        'user',
        'add',
        'bob',
        '--role',
        'viewer',
        '--password-file',
        '/nonexistent/pw',
        '--api',
        stub.url,
      ]),
    ]);
    expectUsageRefusal(empty, /^coolctl: standard input: no password in it$/);
    expectUsageRefusal(
      missing,
      /^coolctl: --password-file \/nonexistent\/pw: cannot read the file \(ENOENT\)$/,
    );
    expect(stub.requests.length).toBe(before);
  }, 30_000);
});

/**
 * `coolctl ARGS` on a pseudo-terminal, then `stty -a` in the same terminal; `keys` is typed once the
 * prompt shows. Returns everything the terminal showed, and the CLI's exit code.
 */
function onTerminal(args: string[], keys: string): Promise<{ screen: string; status: number }> {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const command = `${q(process.execPath)} src/cli.ts ${args.map(q).join(' ')}; echo "exit=$?"; stty -a`;
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['-q', '-e', '-c', command, '/dev/null'], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: {
        ...process.env,
        COOLCTL_TOKEN: undefined,
        COOLCTL_API: undefined,
        COOLCTL_CLI_CONFIG: undefined,
      },
    });
    let screen = '';
    let typed = false;
    child.stdout.on('data', (c: Buffer) => {
      screen += c;
      if (!typed && /password[^\n]*: $/.test(screen)) {
        typed = true;
        child.stdin.write(keys);
      }
    });
    child.stderr.on('data', (c: Buffer) => {
      screen += c;
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no end on the terminal in 30 s: ${screen}`));
    }, 30_000);
    child.on('error', reject);
    child.on('close', () => {
      clearTimeout(timer);
      child.stdin.end();
      resolve({ screen, status: Number(/exit=(\d+)/.exec(screen)?.[1] ?? -1) });
    });
  });
}

/** `stty -a` says the terminal echoes and reads lines again (not left in raw mode). */
const expectTerminalRestored = (screen: string) => {
  expect(screen).toMatch(/(^|\s)icanon(\s|$)/m);
  expect(screen).toMatch(/(^|\s)echo(\s|$)/m);
  expect(screen).toMatch(/(^|\s)isig(\s|$)/m);
};

describe('on a terminal', () => {
  it('login prompts, reads the password unseen, signs in, and leaves the terminal as it was', async () => {
    const t = await onTerminal(['login', '--user', 'admin', '--api', api.url], `${TEST_PASSWORD}\r`);
    expect(t.status, t.screen).toBe(0);
    expect(t.screen).toContain('password for admin: ');
    expect(t.screen).not.toContain(TEST_PASSWORD);
    expect(t.screen).toMatch(/signed in as admin \(admin\)/);
    expect(t.screen).toMatch(/^cct_[0-9a-f]{16}_\S+\r?$/m);
    expectTerminalRestored(t.screen);
  }, 40_000);

  it('Ctrl-C cancels: exit 130, nothing sent, the terminal as it was', async () => {
    const before = api.received();
    const t = await onTerminal(['login', '--user', 'admin', '--api', api.url], 'half a passw\u0003');
    expect(t.status, t.screen).toBe(130);
    expect(t.screen).toContain('coolctl: cancelled (Ctrl-C); nothing was sent');
    expect(t.screen).not.toContain('half a passw');
    expect(api.received()).toBe(before);
    expectTerminalRestored(t.screen);
  }, 40_000);
});
