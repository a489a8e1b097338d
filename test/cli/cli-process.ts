// What the CLI tests share: `coolctl` as a process of its own, as an operator runs it (its exit
// code and both streams, killed at its deadline), in an environment that says nothing of the API
// unless the test does; a recording HTTP server that answers as a test tells it (a proxy, a node
// with strange data); and the fake cluster's API on loopback with a token per role.
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { loadSite } from '../../src/config/load-site.ts';
import { FakeCluster, type FakeNode, fakeNode } from '../support/fake-cluster.ts';

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** An empty XDG config home: no operator's cli.yaml on this machine can change a test. */
const noCliConfig = mkdtempSync(join(tmpdir(), 'coolctl-cli-noconfig-'));

export function runCli(
  args: readonly string[],
  {
    env = {},
    stdin,
    timeoutMs = 20_000,
  }: { env?: Record<string, string | undefined>; stdin?: string; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['src/cli.ts', ...args], {
      env: {
        ...process.env,
        COOLCTL_API: undefined,
        COOLCTL_TOKEN: undefined,
        COOLCTL_CA_FILE: undefined,
        COOLCTL_OUTPUT: undefined,
        COOLCTL_CLI_CONFIG: undefined,
        XDG_CONFIG_HOME: noCliConfig,
        ...env,
      },
      stdio: [stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (c: Buffer) => {
      stdout += c;
    });
    child.stderr?.on('data', (c: Buffer) => {
      stderr += c;
    });
    if (stdin !== undefined) child.stdin?.end(stdin);
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`coolctl ${args.join(' ')} did not end in ${timeoutMs} ms: ${stdout}${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

/** A usage refusal as the CLI must say it: exit 2, one line on stderr, no stack, nothing on stdout. */
export function expectUsageRefusal(r: CliResult, pattern: RegExp): void {
  expect(r.status, r.stderr).toBe(2);
  expect(r.stderr.trimEnd()).toMatch(pattern);
  expect(r.stderr.trimEnd().split('\n'), r.stderr).toHaveLength(1);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(r.stdout).toBe('');
}

export interface Recorded {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface StubApi {
  url: string;
  requests: Recorded[];
  close(): Promise<void>;
}

/** A loopback HTTP server that records every request and answers with what `answer` returns. */
export async function stubApi(
  answer: (r: Recorded, self: string) => { status: number; body: string | object; type?: string },
): Promise<StubApi> {
  const requests: Recorded[] = [];
  let self = '';
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c;
    });
    req.on('end', () => {
      const r = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body };
      requests.push(r);
      const a = answer(r, self);
      const text = typeof a.body === 'string' ? a.body : JSON.stringify(a.body);
      res.writeHead(a.status, {
        'content-type': a.type ?? (typeof a.body === 'string' ? 'text/plain' : 'application/json'),
      });
      res.end(text);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  self = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  return {
    url: self,
    requests,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

export interface FakeApi {
  node: FakeNode;
  cluster: FakeCluster;
  url: string;
  /** Requests the API received (each one, before the guard). */
  received: () => number;
}

/**
 * The real API of one fake node (no etcd): the demo site, groups zone-1 and zone-2 led by node-a,
 * a user and a token per role (node.auth.tokens), node-a's member record pointing at this API.
 */
export async function fakeApi(): Promise<FakeApi> {
  const site = await loadSite('config/demo-site.yaml');
  const cluster = new FakeCluster({ 'zone-1': ['node-a', 41], 'zone-2': ['node-a', 42] });
  const node = await fakeNode(cluster, 'node-a', site, []);
  let received = 0;
  node.app.addHook('onRequest', async () => {
    received++;
  });
  const url = await node.app.listen({ host: '127.0.0.1', port: 0 });
  cluster.members.push({ node: 'node-a', apiUrl: url, startedAtMs: Date.now() });
  return { node, cluster, url, received: () => received };
}
