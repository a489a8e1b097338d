// The gateway's epoch state file: what a restart must never forget. Real files in a temp dir.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CoolctlError, ErrorCodes } from '../../src/errors.ts';
import { EpochStore } from '../../src/gateway/epoch-store.ts';

const dir = mkdtempSync(join(tmpdir(), 'coolctl-epochs-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('EpochStore', () => {
  it('starts empty without a file, keeps every raise across a reopen, never goes down', async () => {
    const file = join(dir, 'a.json');
    const { store, found } = await EpochStore.open(file);
    expect(found).toBe(false);
    // Raises of several units at once: each resolves once its own epoch is on disk.
    await Promise.all([store.ensure(3, 11n), store.ensure(4, 2n ** 60n), store.ensure(7, 5n)]);
    await store.ensure(3, 9n);
    expect(store.highest(3)).toBe(11n);
    const again = await EpochStore.open(file);
    expect(again.found).toBe(true);
    expect([3, 4, 7, 8].map((u) => again.store.highest(u))).toEqual([11n, 2n ** 60n, 5n, 0n]);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({
      version: 1,
      units: { 3: '11', 4: String(2n ** 60n), 7: '5' },
    });
  });

  it('an epoch already on disk costs no write', async () => {
    const { store } = await EpochStore.open(join(dir, 'b.json'));
    await store.ensure(1, 4n);
    const writes = store.fileWrites;
    await store.ensure(1, 4n);
    await store.ensure(1, 3n);
    expect(store.fileWrites).toBe(writes);
  });

  it('a raise whose file write failed is refused, stays raised in memory, and is written by the next call', async () => {
    const sub = join(dir, 'going');
    const file = join(sub, 'c.json');
    mkdirSync(sub);
    const { store } = await EpochStore.open(file);
    rmSync(sub, { recursive: true });
    await expect(store.ensure(2, 8n)).rejects.toThrow(/ENOENT/);
    // Older epochs are refused meanwhile: the memory holds the raise.
    expect(store.highest(2)).toBe(8n);
    mkdirSync(sub);
    await store.ensure(2, 8n);
    expect((await EpochStore.open(file)).store.highest(2)).toBe(8n);
  });

  it('a state directory that does not exist stops the start, not the first write', async () => {
    await expect(EpochStore.open(join(dir, 'nowhere', 'd.json'))).rejects.toThrow(/missing or not writable/);
  });

  it('a file that is not a state file stops the start with COOLCTL_E_STARTUP, never a guess', async () => {
    for (const [name, text] of [
      ['truncated', '{"version":1,"units":{"3":"1'],
      ['other version', '{"version":2,"units":{}}'],
      ['bad unit id', '{"version":1,"units":{"300":"1"}}'],
      ['bad epoch', '{"version":1,"units":{"3":-1}}'],
    ] as const) {
      const file = join(dir, `${name}.json`);
      writeFileSync(file, text);
      const err = await EpochStore.open(file).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, name).toBeInstanceOf(CoolctlError);
      expect((err as CoolctlError).code, name).toBe(ErrorCodes.STARTUP);
      expect((err as Error).message, name).toMatch(/is not valid/);
    }
  });
});
