// Link secrets never reach a daemon's log line (src/daemon/logger.ts, src/config/link-secrets.ts):
// passwords, the peer PSK and private keys are replaced wherever a log object or a child logger's
// bindings hold them, up to two levels down, and the caller's objects are left as they were.
import { describe, expect, it } from 'vitest';
import { REDACTED, redactSecrets } from '../../src/config/link-secrets.ts';
import { daemonLogger } from '../../src/daemon/logger.ts';

const SECRET = 's3cr3t-do-not-log';

function capture() {
  const lines: string[] = [];
  const logger = daemonLogger({ level: 'debug' }, {}, { write: (s: string) => void lines.push(s) }, false);
  return { logger, lines };
}

describe('log redaction', () => {
  const cases: [string, Record<string, unknown>][] = [
    ['password', { password: SECRET }],
    ['passwd', { passwd: SECRET }],
    ['secret', { secret: SECRET }],
    ['psk', { psk: SECRET }],
    ['privateKey', { privateKey: SECRET }],
    ['tls.key', { tls: { key: SECRET } }],
    ['mqtt.password', { mqtt: { password: SECRET } }],
    ['peer.psk', { peer: { psk: SECRET } }],
    ['opcua.privateKey', { opcua: { privateKey: SECRET } }],
    ['mqtt.tls.key', { mqtt: { tls: { key: SECRET } } }],
    ['etcd.auth.password', { etcd: { auth: { password: SECRET } } }],
    ['links[0].password', { links: [{ password: SECRET }] }],
    ['err.password', { err: Object.assign(new Error('connect refused'), { password: SECRET }) }],
  ];

  it.each(cases)('%s never reaches a line, and the line keeps the rest', (_path, obj) => {
    const { logger, lines } = capture();
    logger.warn({ ...obj, group: 'zone-1' }, 'link failed');
    expect(lines).toHaveLength(1);
    expect(lines[0]).not.toContain(SECRET);
    expect(lines[0]).toContain(REDACTED);
    const line = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(line['group']).toBe('zone-1');
    expect(line['msg']).toBe('link failed');
  });

  it('keeps an Error readable when it had to copy it', () => {
    const { logger, lines } = capture();
    logger.error({ err: Object.assign(new Error('connect refused'), { password: SECRET }) }, 'x');
    const err = (JSON.parse(lines[0]!) as { err: Record<string, unknown> }).err;
    expect(err['message']).toBe('connect refused');
    expect(String(err['stack'])).toContain('connect refused');
    expect(err['password']).toBe(REDACTED);
  });

  it("redacts a child logger's bindings", () => {
    const { logger, lines } = capture();
    logger
      .child({ component: 'mqtt', link: { url: 'mqtts://broker:8883', password: SECRET } })
      .info('connected');
    expect(lines[0]).not.toContain(SECRET);
    expect(lines[0]).toContain('mqtts://broker:8883');
  });

  it("never changes the caller's object, and passes one without secrets through as it is", () => {
    const link = { url: 'mqtt://b', password: SECRET, tls: { key: SECRET, ca: 'CA' } };
    const obj = { mqtt: link, n: 1 };
    const out = redactSecrets(obj);
    expect(out).not.toBe(obj);
    expect(out.mqtt).toEqual({ url: 'mqtt://b', password: REDACTED, tls: { key: REDACTED, ca: 'CA' } });
    expect(link.password).toBe(SECRET);
    expect(link.tls.key).toBe(SECRET);
    const plain = {
      alarm: 'a~b',
      severity: 'major',
      why: 'above 27 °C',
      reasons: ['x', 'y'],
      keys: { key: 'k' },
    };
    expect(redactSecrets(plain)).toBe(plain);
    expect(redactSecrets(plain).keys.key).toBe('k'); // `key` is a secret under `tls` only
  });
});
