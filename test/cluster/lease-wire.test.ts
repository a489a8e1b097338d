// The keepalive worker's own etcd wire (gRPC over node:http2, no etcd3): against real etcd, plain and
// with TLS and a user, checked with etcdctl; and against answers no etcd member should give — cut
// short, not gRPC, malformed, too large, never sent — each a typed, retryable error in its deadline,
// never a hang or a crash. An expired auth token is renewed once, and the password never shows.
import { once } from 'node:events';
import { createServer, type Http2Server, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ClusterErrorCodes, isClusterError } from '../../src/cluster/errors.ts';
import { decode, EtcdLeaseWire, encode, leaseHex } from '../../src/cluster/etcd/lease-wire.ts';
import { type EtcdCluster, etcdctl, freePort, startEtcdCluster } from '../support/etcd-cluster.ts';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function wireTo(cluster: EtcdCluster): EtcdLeaseWire {
  const { hosts, ...security } = cluster.clientOptions();
  const wire = new EtcdLeaseWire({ ...security, endpoint: hosts[0]! });
  cleanups.push(() => wire.close());
  return wire;
}

for (const secure of [false, true]) {
  describe(`lease wire against real etcd (${secure ? 'TLS and a user' : 'plain'})`, () => {
    let etcd: EtcdCluster;
    beforeAll(async () => {
      etcd = await startEtcdCluster({ size: 1, secure });
    }, 60_000);
    afterAll(async () => {
      await etcd?.stop();
    });

    it('grants, keeps alive and revokes a lease that etcd itself reports', async () => {
      const wire = wireTo(etcd);
      const lease = await wire.grant(7, 2_000);
      expect(lease.ttlS).toBe(7);
      expect(lease.id).toMatch(/^\d+$/);
      expect(await wire.keepAlive(lease.id, 2_000)).toBe(7);
      if (!secure) {
        // etcd's own tool sees the lease this wire granted
        const out = await etcdctl(etcd.endpoints, ['lease', 'timetolive', leaseHex(lease.id)]);
        expect(out).toMatch(new RegExp(`^lease 0*${leaseHex(lease.id)} granted with TTL\\(7s\\)`));
      }
      await wire.revoke(lease.id, 2_000);
      // etcd answers a keepalive for a lease it does not have with TTL 0; a revoke with "not found"
      expect(await wire.keepAlive(lease.id, 2_000)).toBe(0);
      const err = await wire.revoke(lease.id, 2_000).catch((e: unknown) => e);
      expect(isClusterError(err, ClusterErrorCodes.LEASE_LOST)).toBe(true);
      expect((err as Error).message).toBe('etcd lease revoke: lease not found');
    });

    if (secure) {
      it('a wrong password is a retryable error that does not show the password', async () => {
        const { hosts, ...security } = etcd.clientOptions();
        const password = 'not-the-password-4417';
        const wire = new EtcdLeaseWire({
          ...security,
          auth: { username: 'coolctl', password },
          endpoint: hosts[0]!,
        });
        cleanups.push(() => wire.close());
        const err = await wire.grant(5, 2_000).catch((e: unknown) => e);
        expect(isClusterError(err, ClusterErrorCodes.ETCD_UNAVAILABLE)).toBe(true);
        expect((err as { retryable: boolean }).retryable).toBe(true);
        expect((err as Error).message).toMatch(/^etcd authenticate: .*authentication failed/);
        expect(JSON.stringify({ m: (err as Error).message, c: String((err as Error).cause) })).not.toContain(
          password,
        );
      });
    }
  });
}

/** A fake member: answers each gRPC call as `answer` says, on plain HTTP/2 over loopback. */
async function fakeMember(answer: (stream: ServerHttp2Stream, path: string, call: number) => void): Promise<{
  endpoint: string;
  sessions: () => number;
  server: Http2Server;
}> {
  const server = createServer();
  let sessions = 0;
  let calls = 0;
  server.on('session', (s) => {
    sessions++;
    cleanups.push(() => s.destroy());
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    answer(stream, String(headers[':path']), ++calls);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => new Promise((r) => server.close(r)));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    sessions: () => sessions,
    server,
  };
}

function grpcFrame(message: Uint8Array, compressed = 0): Buffer {
  const b = Buffer.alloc(5 + message.length);
  b[0] = compressed;
  b.writeUInt32BE(message.length, 1);
  b.set(message, 5);
  return b;
}

function ok(stream: ServerHttp2Stream, body: Buffer): void {
  stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
  stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
  stream.end(body);
}

const GRANT_REPLY = encode([
  [2, 7587n],
  [3, 5],
]);

describe('lease wire: answers no member should give', () => {
  const cases: [string, (s: ServerHttp2Stream) => void, RegExp][] = [
    [
      'not gRPC (HTTP 404)',
      (s) => {
        s.respond({ ':status': 404 });
        s.end('no such thing');
      },
      /malformed answer: HTTP status 404/,
    ],
    [
      'cut short (no grpc-status)',
      (s) => {
        s.respond({ ':status': 200, 'content-type': 'application/grpc' });
        s.end(grpcFrame(GRANT_REPLY));
      },
      /no grpc-status/,
    ],
    ['compressed without being asked', (s) => ok(s, grpcFrame(GRANT_REPLY, 1)), /compressed reply/],
    [
      'a length past the data',
      (s) => ok(s, grpcFrame(GRANT_REPLY).subarray(0, 8)),
      /a message of \d+ bytes in 3/,
    ],
    ['no message at all', (s) => ok(s, Buffer.alloc(0)), /a reply of 0 bytes has no message/],
    [
      'a varint that never ends',
      (s) => ok(s, grpcFrame(Buffer.from([0x10, 0xff, 0xff]))),
      /varint runs past/,
    ],
    [
      'a field that runs past the message',
      (s) => ok(s, grpcFrame(Buffer.from([0x0a, 0x40, 1, 2]))),
      /runs past the message/,
    ],
    ['a grant without a lease id', (s) => ok(s, grpcFrame(encode([[3, 5]]))), /the answer has no lease id/],
    ['an answer over 64 KiB', (s) => ok(s, grpcFrame(Buffer.alloc(200_000, 0x08))), /over 65536 bytes/],
    [
      'a gRPC error',
      (s) => {
        s.respond(
          {
            ':status': 200,
            'content-type': 'application/grpc',
            'grpc-status': '14',
            'grpc-message': 'etcdserver:%20no%20leader',
          },
          { endStream: true },
        );
      },
      /etcd lease grant: etcdserver: no leader/,
    ],
  ];
  for (const [name, answer, message] of cases) {
    it(`${name}: a retryable ETCD_UNAVAILABLE that says so`, async () => {
      const member = await fakeMember((s) => answer(s));
      const wire = new EtcdLeaseWire({ endpoint: member.endpoint });
      cleanups.push(() => wire.close());
      const err = await wire.grant(5, 2_000).catch((e: unknown) => e);
      expect(isClusterError(err, ClusterErrorCodes.ETCD_UNAVAILABLE)).toBe(true);
      expect((err as { retryable: boolean }).retryable).toBe(true);
      expect((err as Error).message).toMatch(message);
    });
  }

  it('a member that never answers: ETCD_TIMEOUT at the deadline, and the next call dials afresh', async () => {
    const member = await fakeMember(() => {});
    const wire = new EtcdLeaseWire({ endpoint: member.endpoint });
    cleanups.push(() => wire.close());
    const t0 = performance.now();
    const err = await wire.keepAlive('7587', 300).catch((e: unknown) => e);
    const tookMs = performance.now() - t0;
    expect(isClusterError(err, ClusterErrorCodes.ETCD_TIMEOUT)).toBe(true);
    expect((err as Error).message).toBe('etcd lease keepalive: no answer within 300 ms');
    expect(tookMs).toBeGreaterThanOrEqual(290);
    expect(tookMs).toBeLessThan(2_000);
    await wire.keepAlive('7587', 300).catch(() => {});
    expect(member.sessions()).toBe(2);
  });

  it('an abort ends the call at once with ABORTED', async () => {
    const member = await fakeMember(() => {});
    const wire = new EtcdLeaseWire({ endpoint: member.endpoint });
    cleanups.push(() => wire.close());
    const ac = new AbortController();
    const pending = wire.grant(5, 10_000, ac.signal).catch((e: unknown) => e);
    ac.abort();
    expect(isClusterError(await pending, ClusterErrorCodes.ABORTED)).toBe(true);
  });

  it('a refused connection is a retryable ETCD_UNAVAILABLE', async () => {
    const wire = new EtcdLeaseWire({ endpoint: `http://127.0.0.1:${await freePort()}` });
    cleanups.push(() => wire.close());
    const err = await wire.grant(5, 2_000).catch((e: unknown) => e);
    expect(isClusterError(err, ClusterErrorCodes.ETCD_UNAVAILABLE)).toBe(true);
    expect((err as Error).message).toMatch(/ECONNREFUSED/);
  });

  it('an expired token is renewed once and the call goes through; the password is sent only to Authenticate', async () => {
    const seen: { path: string; token: string | undefined }[] = [];
    let tokens = 0;
    const server = await fakeMember((s, path) => {
      if (path === '/etcdserverpb.Auth/Authenticate') {
        ok(s, grpcFrame(encode([[2, `token-${++tokens}`]])));
        return;
      }
      if (seen.filter((c) => c.path === path).length === 1) {
        // the first token has expired by the second call
        s.respond(
          {
            ':status': 200,
            'content-type': 'application/grpc',
            'grpc-status': '16',
            'grpc-message': 'etcdserver: invalid auth token',
          },
          { endStream: true },
        );
        return;
      }
      ok(s, grpcFrame(GRANT_REPLY));
    });
    server.server.on('stream', (_s, h) => {
      seen.push({ path: String(h[':path']), token: h.token as string | undefined });
    });
    const wire = new EtcdLeaseWire({ endpoint: server.endpoint, auth: { username: 'u', password: 'p' } });
    cleanups.push(() => wire.close());
    expect(await wire.grant(5, 2_000)).toEqual({ id: '7587', ttlS: 5 });
    expect(await wire.grant(5, 2_000)).toEqual({ id: '7587', ttlS: 5 });
    expect(seen.map((c) => `${c.path} ${c.token ?? '-'}`)).toEqual([
      '/etcdserverpb.Auth/Authenticate -',
      '/etcdserverpb.Lease/LeaseGrant token-1',
      '/etcdserverpb.Lease/LeaseGrant token-1',
      '/etcdserverpb.Auth/Authenticate -',
      '/etcdserverpb.Lease/LeaseGrant token-2',
    ]);
  });
});

describe('lease wire: the protobuf it needs', () => {
  it('round-trips lease ids up to int64 max, TTLs and strings', () => {
    for (const id of [1n, 127n, 128n, 2n ** 32n, 2n ** 53n + 1n, 2n ** 63n - 1n]) {
      const d = decode(
        encode([
          [1, id],
          [3, 30],
          [2, 'ü-token'],
        ]),
      );
      expect(d.varints.get(1)).toBe(id);
      expect(d.varints.get(3)).toBe(30n);
      expect(d.bytes.get(2)?.toString('utf8')).toBe('ü-token');
    }
  });

  it('skips fixed-width fields and nested messages, and refuses an unknown wire type', () => {
    const header = encode([[1, 42n]]);
    const msg = Buffer.concat([
      Buffer.from([0x0a, header.length]),
      header,
      Buffer.from([0x19, 1, 2, 3, 4, 5, 6, 7, 8]), // field 3, fixed64
      encode([[2, 99n]]),
    ]);
    expect(decode(msg).varints.get(2)).toBe(99n);
    expect(() => decode(Buffer.from([0x0b]))).toThrow(/wire type 3/);
  });
});
