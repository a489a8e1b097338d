// Text from the server reaches an operator's terminal only escaped: a pause reason, an alarm's
// message and comment, user and node names, token labels, the audit trail, the API's refusals —
// control characters (ESC sequences that clear the screen or retitle the window, CR, BEL, C1) and
// bidi overrides are printed as `\x1b`, `\u202e`… (src/util/printable.ts), in tables, warnings and
// lines; JSON output stays the same JSON values with every such character escaped too. Through the
// real API of a fake node (the operator state and alarms put in as a rogue writer would, past any
// check the server makes), and a recording server for the rest.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonText, printable, printableText } from '../../src/util/printable.ts';
import { type FakeApi, fakeApi, runCli, type StubApi, stubApi } from './cli-process.ts';

/** Clears the screen, retitles the terminal, rings the bell, rewrites the line, flips the text. */
const EVIL = 'filter\u001b[2J\u001b]0;owned\u0007\rdone\u009b31m\u202eroloc\u2066x\u2069\nzone-9 is fine';

/** The first character a terminal would act on, or null. */
function firstUnsafe(text: string, keepNewlines = true): string | null {
  for (const c of text) {
    const code = c.codePointAt(0)!;
    if (c === '\n' && keepNewlines) continue;
    if (
      code < 0x20 ||
      (code >= 0x7f && code <= 0x9f) ||
      [0x061c, 0x200e, 0x200f, 0x2028, 0x2029].includes(code) ||
      (code >= 0x202a && code <= 0x202e) ||
      (code >= 0x2066 && code <= 0x2069)
    )
      return `U+${code.toString(16).padStart(4, '0')}`;
  }
  return null;
}

let api: FakeApi;
let stub: StubApi;

beforeAll(async () => {
  api = await fakeApi();
  // A rogue writer of the cluster's state (or an API that let it through): the CLI must cope.
  api.cluster.operators.set('zone-1', {
    paused: true,
    overrides: { [`AHU-01${EVIL}`]: { fanPct: 40 } },
    by: 'eve',
    atMs: Date.now(),
    reason: EVIL,
  });
  const id = api.cluster.alarms.raise('unit-tripped', 'zone-1', 'AHU-01', `tripped ${EVIL}`);
  await api.cluster.alarms.acknowledge(id, `eve${EVIL}`, `comment ${EVIL}`);
  stub = await stubApi((r) => {
    if (r.url === '/api/v1/users')
      return { status: 200, body: { users: [{ name: `eve${EVIL}`, role: 'admin', createdAtMs: 1 }] } };
    if (r.url === '/api/v1/tokens')
      return {
        status: 200,
        body: {
          tokens: [{ id: '0123456789abcdef', user: 'eve', kind: 'token', label: EVIL, expiresAtMs: 2 }],
        },
      };
    if (r.url.startsWith('/api/v1/audit'))
      return {
        status: 200,
        body: {
          entries: [
            { kind: 'role', atMs: 1, node: `n1${EVIL}`, group: 'zone-1', epoch: 3, reason: EVIL },
            {
              kind: 'operator',
              atMs: 2,
              user: 'eve',
              role: 'operator',
              node: 'n1',
              method: 'POST',
              path: '/api/v1/groups/zone-1/pause',
              params: { reason: EVIL },
              status: 200,
              error: null,
            },
          ],
        },
      };
    return { status: 400, body: { message: `refused ${EVIL}`, details: [EVIL] } };
  });
});
afterAll(async () => {
  await api?.node.close();
  await stub?.close();
});

const as = (role: 'viewer' | 'operator' | 'admin') => ({ COOLCTL_TOKEN: api.node.auth.tokens[role] });

describe('the shared escape', () => {
  it('escapes C0, DEL, C1, line separators and bidi controls; leaves other text alone', () => {
    expect(printable(EVIL)).toBe(
      'filter\\x1b[2J\\x1b]0;owned\\x07\\rdone\\x9b31m\\u202eroloc\\u2066x\\u2069\\nzone-9 is fine',
    );
    expect(printable('zone-1 fan 40% — 18 °C, Zürich, 東京')).toBe('zone-1 fan 40% — 18 °C, Zürich, 東京');
    expect(printableText('a\u001b[2J\nb\n')).toBe('a\\x1b[2J\nb\n');
    const json = jsonText({ reason: EVIL });
    expect(firstUnsafe(json)).toBeNull();
    expect(JSON.parse(json)).toEqual({ reason: EVIL });
  });
});

describe('every command that prints the server’s strings', () => {
  it('status: the pause reason and the overrides, in the table and the warnings', async () => {
    const r = await runCli(['status', '--api', api.url], { env: as('viewer') });
    expect(r.status, r.stderr).toBe(0);
    expect(firstUnsafe(r.stdout)).toBeNull();
    expect(r.stdout).toContain('! zone-1 is paused (filter\\x1b[2J\\x1b]0;owned\\x07\\rdone');
    // The injected line end did not make a line of its own.
    expect(r.stdout).not.toMatch(/^zone-9 is fine/m);
    expect(r.stdout).toMatch(/^zone-1 .*AHU-01filter\\x1b\[2J/m);
    const json = await runCli(['status', '--api', api.url, '--output', 'json'], { env: as('viewer') });
    expect(json.status, json.stderr).toBe(0);
    expect(firstUnsafe(json.stdout)).toBeNull();
    const report = JSON.parse(json.stdout) as { groups: { id: string; pauseReason: string | null }[] };
    expect(report.groups.find((g) => g.id === 'zone-1')?.pauseReason).toBe(EVIL);
  }, 30_000);

  it('alarms: the message, who acknowledged and the comment', async () => {
    const r = await runCli(['alarms', '--api', api.url], { env: as('viewer') });
    expect(r.status, r.stderr).toBe(0);
    expect(firstUnsafe(r.stdout)).toBeNull();
    expect(r.stdout).toContain('tripped filter\\x1b[2J');
    expect(r.stdout).toContain('ack evefilter\\x1b[2J');
  }, 30_000);

  it('user list, token list, history, and a refusal’s message', async () => {
    const env = { COOLCTL_TOKEN: 'cct_0123456789abcdef_x' };
    const [users, tokens, history, refused] = await Promise.all([
      runCli(['user', 'list', '--api', stub.url], { env }),
      runCli(['token', 'list', '--api', stub.url], { env }),
      runCli(['history', '--api', stub.url], { env }),
      runCli(['token', 'revoke', 'x', '--api', stub.url], { env }),
    ]);
    for (const r of [users, tokens, history]) {
      expect(r.status, r.stderr).toBe(0);
      expect(firstUnsafe(r.stdout), r.stdout).toBeNull();
      expect(r.stdout).toContain('filter\\x1b[2J\\x1b]0;owned\\x07');
    }
    // Each entry one line, whatever its strings held.
    expect(history.stdout.trimEnd().split('\n')).toHaveLength(2);
    expect(refused.status).toBe(2);
    expect(firstUnsafe(refused.stderr)).toBeNull();
    expect(refused.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(refused.stderr).toContain('coolctl: refused filter\\x1b[2J');
  }, 30_000);
});
