// What the CLI sends and prints of its credentials. An API address with user:password@ — from
// --api, COOLCTL_API or the CLI config's `api:` — is refused (exit 2) without printing it and
// without dialling (Node would send it as Basic auth); a member address with credentials from the
// server is neither dialled nor printed. A token that is not one line of token characters, a
// missing token file or a directory: exit 2, naming the file or variable, never the token. A
// recording server shows what reaches the wire.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { expectUsageRefusal, runCli, type StubApi, stubApi } from './cli-process.ts';

const SECRET = 'Sup3rSecret';
const TOKEN = 'cct_0123456789abcdef_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde';
let stub: StubApi;
let dir: string;
/** The member record the stub's cluster answer gives for n2 (a test may put credentials in it). */
let n2Url = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coolctl-cli-credentials-'));
  stub = await stubApi((r, self) => {
    if (r.url === '/api/v1/cluster')
      return {
        status: 200,
        body: {
          node: 'n1',
          members: [
            { node: 'n1', apiUrl: self, startedAtMs: 1 },
            { node: 'n2', apiUrl: n2Url, startedAtMs: 1 },
          ],
          groups: [
            { id: 'zone-1', leader: 'n1', epoch: 3 },
            { id: 'zone-2', leader: 'n2', epoch: 4 },
          ],
        },
      };
    if (r.url.startsWith('/api/v1/groups/'))
      return {
        status: 200,
        body: {
          id: 'zone-1',
          leader: 'n1',
          epoch: 3,
          driving: true,
          mode: 'normal',
          operator: null,
          sensors: null,
        },
      };
    return { status: 404, body: { message: 'no such route' } };
  });
});
afterAll(async () => {
  await stub?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  stub.requests.length = 0;
  n2Url = stub.url;
});

/** The stub's address with a user and password in it. */
const withPassword = () => stub.url.replace('http://', `http://admin:${SECRET}@`);

describe('an API address with a user name or password', () => {
  it('from --api, COOLCTL_API or the CLI config: exit 2, not printed, nothing dialled', async () => {
    const cliYaml = join(dir, 'cli.yaml');
    await writeFile(cliYaml, `api: ${withPassword()}\n`);
    const runs = await Promise.all([
      runCli(['status', '--api', withPassword()], { env: { COOLCTL_TOKEN: TOKEN } }),
      runCli(['history'], { env: { COOLCTL_API: withPassword(), COOLCTL_TOKEN: TOKEN } }),
      runCli(['status'], { env: { COOLCTL_CLI_CONFIG: cliYaml, COOLCTL_TOKEN: TOKEN } }),
      // A password with a "/" does not even parse as user info: still refused, still not shown.
      runCli(['status', '--api', stub.url.replace('http://', 'http://admin:pa/ss@')]),
    ]);
    const from = ['--api', 'COOLCTL_API', `api in ${cliYaml}`, '--api'];
    runs.forEach((r, i) => {
      expectUsageRefusal(
        r,
        new RegExp(`^coolctl: ${from[i]!.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: the address holds "@"`),
      );
      expect(r.stderr).not.toContain(SECRET);
      expect(r.stderr).not.toContain('pa/ss');
      expect(r.stderr).not.toContain('admin:');
    });
    expect(stub.requests).toEqual([]);
  }, 60_000);

  it('a member address with credentials from the server: never dialled, never printed', async () => {
    n2Url = withPassword();
    const table = await runCli(['status', '--api', stub.url], { env: { COOLCTL_TOKEN: TOKEN } });
    expect(table.status, table.stderr).toBe(0);
    const json = await runCli(['status', '--api', stub.url, '--output', 'json'], {
      env: { COOLCTL_TOKEN: TOKEN },
    });
    expect(json.status, json.stderr).toBe(0);
    for (const out of [table.stdout + table.stderr, json.stdout + json.stderr]) {
      expect(out).not.toContain(SECRET);
      expect(out).not.toContain('admin:');
    }
    // The leader's row comes from the node asked, with the reason in a warning.
    expect(table.stdout).toMatch(
      /zone-2: its leader n2 could not be asked \(not asked: the API address of n2's member record carries credentials\)/,
    );
    expect(stub.requests.length).toBeGreaterThan(0);
    for (const r of stub.requests) expect(r.headers.authorization).toBe(`Bearer ${TOKEN}`);
  }, 60_000);
});

describe('the token', () => {
  it('not one line of token characters: exit 2 naming the file or variable, never the token; nothing sent', async () => {
    const twoLines = join(dir, 'two-lines');
    await writeFile(twoLines, `${TOKEN}\nsecond-line-${SECRET}\n`);
    const spaced = join(dir, 'spaced');
    await writeFile(spaced, `Bearer ${TOKEN}\n`);
    const empty = join(dir, 'empty');
    await writeFile(empty, '\n');
    const api = ['--api', stub.url];
    const runs = await Promise.all([
      runCli(['status', ...api, '--token-file', twoLines]),
      runCli(['status', ...api], { env: { COOLCTL_TOKEN: `abc\n${SECRET}` } }),
      runCli(['status', ...api, '--token-file', spaced]),
      runCli(['status', ...api], { env: { COOLCTL_TOKEN: `${SECRET}\u001b[2J` } }),
      runCli(['status', ...api, '--token-file', empty]),
    ]);
    expectUsageRefusal(runs[0]!, new RegExp(`^coolctl: --token-file ${twoLines}: holds more than one line`));
    expectUsageRefusal(runs[1]!, /^coolctl: COOLCTL_TOKEN: holds more than one line/);
    expectUsageRefusal(
      runs[2]!,
      new RegExp(`^coolctl: --token-file ${spaced}: holds characters no token has`),
    );
    expectUsageRefusal(runs[3]!, /^coolctl: COOLCTL_TOKEN: holds characters no token has/);
    expectUsageRefusal(runs[4]!, new RegExp(`^coolctl: --token-file ${empty}: no token in it`));
    for (const r of runs) {
      expect(r.stderr).not.toContain(SECRET);
      expect(r.stderr).not.toContain(TOKEN);
    }
    expect(stub.requests).toEqual([]);
  }, 60_000);

  it('a token file that cannot be read (missing, a directory): exit 2, as a CA file', async () => {
    const missing = join(dir, 'no-such-token');
    const runs = await Promise.all([
      runCli(['status', '--api', stub.url, '--token-file', missing]),
      runCli(['status', '--api', stub.url, '--token-file', dir]),
    ]);
    expectUsageRefusal(
      runs[0]!,
      new RegExp(`^coolctl: --token-file ${missing}: cannot read the token file \\(ENOENT\\)$`),
    );
    expectUsageRefusal(
      runs[1]!,
      new RegExp(`^coolctl: --token-file ${dir}: cannot read the token file \\(EISDIR\\)$`),
    );
    expect(stub.requests).toEqual([]);
  }, 30_000);

  it('one line of token characters, with its line end: sent as the bearer token', async () => {
    const file = join(dir, 'token');
    await writeFile(file, `  ${TOKEN}\r\n`);
    const r = await runCli(['status', '--api', stub.url, '--token-file', file]);
    expect(r.status, r.stderr).toBe(0);
    expect(stub.requests[0]?.headers.authorization).toBe(`Bearer ${TOKEN}`);
  }, 30_000);
});
