// The chaos hall's serial line on real ptys (socat) with serialport at both ends: bytes pass both
// ways; a broken line drops (never holds) them; noise flips request bytes only; the device end can
// close and reopen (a simulator restart) and the line still carries; stop() removes the ptys.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SerialPort } from 'serialport';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers.ts';
import { SerialLine } from '../support/serial-line.ts';

function open(path: string): Promise<SerialPort> {
  return new Promise((resolve, reject) => {
    const p = new SerialPort({ path, baudRate: 19_200, autoOpen: false });
    p.open((err) => (err ? reject(err) : resolve(p)));
  });
}

const close = (p: SerialPort) => new Promise<void>((r) => (p.isOpen ? p.close(() => r()) : r()));

/** What `port` receives from now on. */
function collect(port: SerialPort): { bytes: () => Buffer } {
  const chunks: Buffer[] = [];
  port.on('data', (c: Buffer) => chunks.push(c));
  return { bytes: () => Buffer.concat(chunks) };
}

describe('SerialLine (socat ptys with a proxy between them)', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function line() {
    const dir = await mkdtemp(join(tmpdir(), 'coolctl-line-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const l = await SerialLine.start({ dir, name: 'rtu-1' });
    cleanups.push(() => l.stop());
    const master = await open(l.masterPath);
    const device = await open(l.devicePath);
    cleanups.push(async () => {
      await close(master);
      await close(device);
    });
    return { l, master, device };
  }

  it('carries bytes both ways, drops them while broken, and carries again once mended', async () => {
    const { l, master, device } = await line();
    const atDevice = collect(device);
    const atMaster = collect(master);
    master.write(Buffer.from('request'));
    device.write(Buffer.from('answer'));
    await waitFor('both directions', () =>
      atDevice.bytes().toString() === 'request' && atMaster.bytes().toString() === 'answer' ? true : null,
    );
    l.break();
    master.write(Buffer.from('lost'));
    await waitFor('the lost chunk counted', () => (l.stats.droppedChunks >= 1 ? true : null));
    l.mend();
    master.write(Buffer.from('!'));
    await waitFor('the line mended', () => (atDevice.bytes().toString().endsWith('!') ? true : null));
    // A broken line loses what was sent meanwhile: it is not held and delivered late.
    expect(atDevice.bytes().toString()).toBe('request!');
  });

  it('noise flips request bytes and leaves answers alone', async () => {
    const { l, master, device } = await line();
    const atDevice = collect(device);
    const atMaster = collect(master);
    l.setNoise(100);
    master.write(Buffer.from([0x01, 0x03, 0x00, 0x00]));
    device.write(Buffer.from([0x01, 0x03, 0x02]));
    await waitFor('both directions', () =>
      atDevice.bytes().length === 4 && atMaster.bytes().length === 3 ? true : null,
    );
    expect(atDevice.bytes().equals(Buffer.from([0x01, 0x03, 0x00, 0x00]))).toBe(false);
    expect(atMaster.bytes()).toEqual(Buffer.from([0x01, 0x03, 0x02]));
    expect(l.stats.noisyChunks).toBe(1);
  });

  it('survives the device end closing and reopening (a simulator restart); stop removes the ptys', async () => {
    const { l, master, device } = await line();
    await close(device);
    master.write(Buffer.from('while nobody listens'));
    const again = await open(l.devicePath);
    cleanups.push(() => close(again));
    const atDevice = collect(again);
    master.write(Buffer.from('hello'));
    await waitFor('the reopened end to hear the master', () =>
      atDevice.bytes().toString().endsWith('hello') ? true : null,
    );
    await close(again);
    await close(master);
    await l.stop();
    expect(existsSync(l.masterPath) || existsSync(l.devicePath)).toBe(false);
  });
});
