// The production example (config/examples/production-controller.yaml) loads, and every link it
// configures is secured: no plain etcd or MQTT URL, TLS material and users for etcd and the broker,
// per-pair peer keys. Its /etc paths are laid out in a tmp dir with stand-in files.
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeCa, makeLeaf } from '../../scripts/lib/throwaway-pki.ts';
import { pairKey } from '../../src/cache/peer-channel.ts';
import { loadControllerConfig } from '../../src/config/controller-config.ts';

const EXAMPLE = resolve('config/examples/production-controller.yaml');

describe('production example config', () => {
  it('has no plain link and loads with every link secured', async () => {
    const text = await readFile(EXAMPLE, 'utf8');
    expect(text).not.toMatch(/\bhttp:\/\/|\bmqtt:\/\/|secretFile/);
    const dir = await mkdtemp(join(tmpdir(), 'coolctl-prod-example-'));
    try {
      const etc = `${dir}/`;
      const paths = [...text.matchAll(/\/etc\/coolctl\/(\S+)/g)]
        .map((m) => m[1]!)
        .filter((p) => p !== 'site.yaml' && p !== 'controller.yaml');
      // Certificates and keys that parse and match, as the config check reads them; passwords.
      await mkdir(join(dir, 'pki'), { recursive: true });
      const ca = await makeCa(join(dir, 'pki'), 'test-ca');
      const leaf = await makeLeaf(ca, 'leaf', { usage: ['serverAuth', 'clientAuth'] });
      for (const p of new Set(paths)) {
        await mkdir(join(dir, p, '..'), { recursive: true });
        if (p.endsWith('.crt')) await copyFile(/ca\.crt$/.test(p) ? ca.caFile : leaf.certFile, join(dir, p));
        else if (p.endsWith('.key')) await copyFile(leaf.keyFile, join(dir, p));
        else await writeFile(join(dir, p), `stand-in for ${p}\n`, { mode: 0o600 });
      }
      const master = Buffer.alloc(32, 7);
      await writeFile(
        join(dir, 'secrets/peer-keys'),
        ['gw-2', 'gw-3']
          .map((n) => `${n} ${pairKey(master, '/coolctl/hall-a', 'gw-1', n).toString('hex')}`)
          .join('\n'),
        { mode: 0o600 },
      );
      const file = join(dir, 'controller.yaml');
      await writeFile(
        file,
        text
          .replaceAll('/etc/coolctl/site.yaml', resolve('config/demo-site.yaml'))
          .replaceAll('/etc/coolctl/', etc),
      );
      const cfg = await loadControllerConfig(file, 'gw-1');
      expect(cfg.cluster.etcd.every((h) => h.startsWith('https://'))).toBe(true);
      expect(cfg.etcdSecurity.tls?.cert).toBeDefined();
      expect(cfg.etcdSecurity.auth?.username).toBe('coolctl-hall-a');
      expect(cfg.mqtt?.url.startsWith('mqtts://')).toBe(true);
      expect(cfg.mqtt?.password).toBeDefined();
      expect(cfg.mqtt?.tls?.ca).toBeDefined();
      expect(cfg.peerKeys?.size).toBe(2);
      expect(cfg.secret).toBeUndefined();
      expect(cfg.api.tls?.certFile).toBe(join(dir, 'pki/api.crt'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
