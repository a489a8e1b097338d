// The device factory: the right adapter per protocol, and node-opcua loaded only for a site that
// has OPC-UA units (checked in a fresh process that records every module it resolves).
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { createDevice } from '../../src/devices/create-device.ts';

const root = new URL('../../', import.meta.url).href;

/** Creates a device for each AHU of `protocol` in a fresh process; returns how many node-opcua modules it loaded. */
function opcuaModulesLoaded(protocol: 'modbus-tcp' | 'opcua'): number {
  const script = `
    import { registerHooks } from 'node:module';
    const seen = [];
    registerHooks({ resolve(spec, ctx, next) { const r = next(spec, ctx); seen.push(r.url); return r; } });
    const { generateSite, demoShape } = await import('${root}firmware-sim/generate-site.ts');
    const { createDevice } = await import('${root}src/devices/create-device.ts');
    const site = generateSite(demoShape);
    for (const a of site.airHandlers.filter((a) => a.protocol === '${protocol}')) await createDevice(a, { pkiDir: '/tmp/coolctl-test-factory-pki' });
    console.log(seen.filter((u) => u.includes('/node_modules/node-opcua')).length);
  `;
  const out = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (out.status !== 0) throw new Error(`probe failed: ${out.stderr}`);
  return Number(out.stdout.trim().split('\n').at(-1));
}

describe('createDevice', () => {
  it('builds the adapter of each unit protocol', async () => {
    const site = generateSite(demoShape);
    const modbus = await createDevice(site.airHandlers.find((a) => a.protocol === 'modbus-tcp')!);
    const opcua = await createDevice(site.airHandlers.find((a) => a.protocol === 'opcua')!, {
      pkiDir: '/tmp/coolctl-test-factory-pki',
    });
    expect(modbus.protocol).toBe('modbus-tcp');
    expect(opcua.protocol).toBe('opcua');
    expect(modbus.linkState).toBe('down');
    await Promise.all([modbus.close(), opcua.close()]);
  });

  it('never loads node-opcua for Modbus units, and does for OPC-UA units', () => {
    expect(opcuaModulesLoaded('modbus-tcp')).toBe(0);
    expect(opcuaModulesLoaded('opcua')).toBeGreaterThan(0);
  });
});
