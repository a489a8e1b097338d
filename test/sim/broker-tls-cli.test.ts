// The secured broker as an operator starts it: `npm run sim -- --mqtt-cert … --mqtt-password-file …`
// prints an mqtts:// broker and its user (never the password), /sim/state says so, and half-given
// pairs are a usage error (exit 2) before anything starts.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { makeCa, makeLeaf, type TestCa, type TestLeaf } from '../../scripts/lib/throwaway-pki.ts';
import { waitFor } from '../helpers.ts';

const PASSWORD = randomBytes(18).toString('base64url');
const children: ChildProcess[] = [];
let dir: string;
let ca: TestCa;
let leaf: TestLeaf;
let siteFile: string;
let passwordFile: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coolctl-sim-broker-cli-'));
  ca = await makeCa(dir, 'sim-mqtt-ca');
  leaf = await makeLeaf(ca, 'sim-mqtt-broker', { usage: ['serverAuth'] });
  passwordFile = join(dir, 'mqtt-password');
  await writeFile(passwordFile, `${PASSWORD}\n`, { mode: 0o600 });
  // Modbus units only: the broker is under test, and node-opcua would only slow the start.
  siteFile = join(dir, 'site.yaml');
  await writeFile(
    siteFile,
    stringify(
      generateSite({ ...demoShape, airHandlers: 2, opcuaShare: 0, sensorNodes: 8, controlGroups: 1 }),
    ),
  );
}, 60_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

function sim(args: string[]): { child: ChildProcess; out: () => string; err: () => string } {
  const child = spawn(
    process.execPath,
    [
      'firmware-sim/main.ts',
      '--config',
      siteFile,
      '--ephemeral-ports',
      '--port',
      '0',
      '--log-level',
      'warn',
      ...args,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.push(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  return { child, out: () => out, err: () => err };
}

function exitCode(child: ChildProcess): Promise<number | null> {
  return child.exitCode !== null
    ? Promise.resolve(child.exitCode)
    : new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

describe('npm run sim with a secured broker', () => {
  it('prints an mqtts:// broker and its user, never the password', async () => {
    const run = sim([
      '--mqtt-cert',
      leaf.certFile,
      '--mqtt-key',
      leaf.keyFile,
      '--mqtt-ca',
      ca.caFile,
      '--mqtt-username',
      'hall',
      '--mqtt-password-file',
      passwordFile,
    ]);
    const apiUrl = await waitFor(
      'the simulator to print its API address',
      () => {
        if (run.child.exitCode !== null) throw new Error(`exited ${run.child.exitCode}: ${run.err()}`);
        return /sim API\s+(http:\/\/[\d.]+:\d+)/.exec(run.out())?.[1];
      },
      { timeoutMs: 60_000 },
    );
    expect(run.out()).toMatch(/MQTT broker\s+mqtts:\/\/127\.0\.0\.1:\d+ .*user hall/);
    const state = (await (await fetch(`${apiUrl}/sim/state`)).json()) as {
      mqttBrokerUrl: string;
      mqttBroker: { tls: boolean; username: string };
    };
    expect(state.mqttBrokerUrl).toMatch(/^mqtts:\/\/127\.0\.0\.1:\d+$/);
    expect(state.mqttBroker).toMatchObject({ tls: true, username: 'hall' });
    run.child.kill('SIGTERM');
    expect(await exitCode(run.child)).toBe(0);
    expect(run.out() + run.err()).not.toContain(PASSWORD);
  }, 90_000);

  it('refuses half-given pairs as a usage error', async () => {
    for (const args of [
      ['--mqtt-cert', leaf.certFile],
      ['--mqtt-username', 'hall'],
      ['--mqtt-ca', ca.caFile],
    ]) {
      const run = sim(args);
      expect(await exitCode(run.child)).toBe(2);
      expect(run.err()).toMatch(/--mqtt-\S+ (and|needs) --mqtt-/);
    }
  }, 60_000);

  it('a password file it cannot read stops the start with exit 1, naming the file', async () => {
    const run = sim(['--mqtt-username', 'hall', '--mqtt-password-file', join(dir, 'missing')]);
    expect(await exitCode(run.child)).toBe(1);
    expect(run.err()).toContain(`${join(dir, 'missing')} cannot be read (ENOENT)`);
  }, 60_000);
});
