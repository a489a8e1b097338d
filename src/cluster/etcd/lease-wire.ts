// The keepalive worker's etcd wire: etcd's Lease calls (grant, keepalive, revoke) and Authenticate,
// spoken as gRPC over node:http2 to one member, without the `etcd3` package. The worker needs four
// calls whose messages are a few varints; loading etcd3 with grpc-js and protobufjs into its thread
// cost that isolate ~10 MB of RSS on every node (docs/scale.md). The main thread keeps etcd3.
// Every call has a deadline (the `grpc-timeout` header and a timer here that settles the promise
// whatever the peer does) and an abort signal. A call that times out drops the connection, so a
// member that went silent is dialled again rather than waited on. Failures map to the cluster's
// error catalog as etcd-client.ts maps etcd3's: a lease etcd does not know is LEASE_LOST (not
// retryable), a grant refused for lack of space is ETCD_NO_SPACE (every member refuses alike),
// anything else — refused, reset, no leader, a malformed answer — is retryable on another member. TLS material and the user's password never appear in an error or a log line.
import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect,
  constants,
  type IncomingHttpHeaders,
  type SecureClientSessionOptions,
} from 'node:http2';
import { isIP } from 'node:net';
import {
  ClusterError,
  ClusterErrorCodes,
  etcdAborted,
  etcdLeaseLost,
  etcdNoSpace,
  etcdTimeout,
  etcdUnavailable,
  isEtcdNoSpace,
} from '../errors.ts';
import type { EtcdSecurity } from './etcd-client.ts';

/** gRPC status codes this wire tells apart (grpc/doc/statuscodes.md). */
const GRPC_NOT_FOUND = 5;
const GRPC_UNAUTHENTICATED = 16;

/** An answer larger than this is not a Lease or Authenticate reply: refused, not buffered. */
const MAX_REPLY_BYTES = 64 * 1024;

export interface LeaseGrant {
  /** The lease id, as etcd3 gives it: a decimal string (int64). */
  id: string;
  ttlS: number;
}

export interface LeaseWireOptions extends EtcdSecurity {
  /** The member's client URL: `http://host:port` or `https://host:port`. */
  endpoint: string;
}

export class EtcdLeaseWire {
  readonly endpoint: string;
  private readonly authority: string;
  private readonly tls: SecureClientSessionOptions | undefined;
  private readonly auth: EtcdSecurity['auth'];
  private session: ClientHttp2Session | undefined;
  private token: string | undefined;
  private closed = false;

  constructor(opts: LeaseWireOptions) {
    this.endpoint = opts.endpoint;
    const url = new URL(opts.endpoint.includes('://') ? opts.endpoint : `http://${opts.endpoint}`);
    const secure = url.protocol === 'https:' || opts.tls !== undefined;
    this.authority = `${secure ? 'https' : 'http'}://${url.host}`;
    this.tls = secure
      ? {
          ...(opts.tls
            ? {
                ca: Buffer.from(opts.tls.ca),
                ...(opts.tls.cert ? { cert: Buffer.from(opts.tls.cert) } : {}),
                ...(opts.tls.key ? { key: Buffer.from(opts.tls.key) } : {}),
              }
            : {}),
          ALPNProtocols: ['h2'],
          // No SNI for an address (RFC 6066; Node warns); the certificate is still checked against it.
          servername: isIP(url.hostname.replace(/^\[|\]$/g, '')) ? '' : url.hostname,
        }
      : undefined;
    this.auth = opts.auth;
  }

  /** LeaseGrant: a new lease of `ttlS` seconds. etcd may raise the TTL to its minimum. */
  async grant(ttlS: number, timeoutMs: number, signal?: AbortSignal): Promise<LeaseGrant> {
    const f = await this.call(
      'lease grant',
      '/etcdserverpb.Lease/LeaseGrant',
      encode([[1, ttlS]]),
      timeoutMs,
      signal,
    );
    const error = f.bytes.get(4)?.toString('utf8');
    if (error) throw etcdUnavailable('lease grant', `etcd refused the grant: ${error}`);
    const id = f.varints.get(2);
    if (id === undefined || id <= 0n) throw etcdUnavailable('lease grant', 'the answer has no lease id');
    return { id: id.toString(), ttlS: Number(BigInt.asIntN(64, f.varints.get(3) ?? 0n)) };
  }

  /**
   * One keepalive on its own short stream: send the id, half-close, read the one answer. Resolves
   * with etcd's TTL for the lease; 0 (or less) means etcd no longer has it.
   */
  async keepAlive(id: string, timeoutMs: number, signal?: AbortSignal): Promise<number> {
    const f = await this.call(
      'lease keepalive',
      '/etcdserverpb.Lease/LeaseKeepAlive',
      encode([[1, BigInt(id)]]),
      timeoutMs,
      signal,
    );
    return Number(BigInt.asIntN(64, f.varints.get(3) ?? 0n));
  }

  /** LeaseRevoke: the lease and every key it holds go at once. LEASE_LOST when etcd has no such lease. */
  async revoke(id: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    await this.call(
      'lease revoke',
      '/etcdserverpb.Lease/LeaseRevoke',
      encode([[1, BigInt(id)]]),
      timeoutMs,
      signal,
    );
  }

  close(): void {
    this.closed = true;
    this.dropSession();
  }

  /**
   * One call, authenticated first when the member wants a user; an expired token is renewed once.
   * Resolves with the reply's fields; every failure, a malformed reply included, is a ClusterError.
   */
  private async call(
    what: string,
    path: string,
    body: Uint8Array,
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<Decoded> {
    const deadlineAt = performance.now() + timeoutMs;
    const left = () => Math.max(1, Math.round(deadlineAt - performance.now()));
    for (let attempt = 0; ; attempt++) {
      if (this.auth && this.token === undefined) this.token = await this.authenticate(left(), signal);
      try {
        return decode(await this.unary(what, path, body, left(), signal, this.token));
      } catch (err) {
        if (attempt === 0 && this.auth && err instanceof WireStatus && err.status === GRPC_UNAUTHENTICATED) {
          this.token = undefined; // etcd's simple tokens expire; ask for a fresh one, once
          continue;
        }
        throw toClusterError(what, err);
      }
    }
  }

  private async authenticate(timeoutMs: number, signal: AbortSignal | undefined): Promise<string> {
    const { username, password } = this.auth!;
    let token: string | undefined;
    try {
      const body = encode([
        [1, username],
        [2, password],
      ]);
      const reply = await this.unary(
        'authenticate',
        '/etcdserverpb.Auth/Authenticate',
        body,
        timeoutMs,
        signal,
        undefined,
      );
      token = decode(reply).bytes.get(2)?.toString('utf8');
    } catch (err) {
      throw toClusterError('authenticate', err);
    }
    if (!token) throw etcdUnavailable('authenticate', 'the answer has no token');
    return token;
  }

  private connection(): ClientHttp2Session {
    const open = this.session;
    if (open && !open.closed && !open.destroyed) return open;
    const s = connect(this.authority, this.tls ?? {});
    // Any failure of the connection ends it; the call on it fails through its own stream.
    const forget = () => {
      if (this.session === s) this.session = undefined;
    };
    s.on('error', forget);
    s.on('goaway', forget);
    s.on('close', forget);
    // The worker's thread must not stay alive for an idle connection (keepalive-worker.test.ts).
    s.unref();
    this.session = s;
    return s;
  }

  /** Ends `s` (default: the current connection); the next call dials afresh. */
  private dropSession(s: ClientHttp2Session | undefined = this.session): void {
    if (this.session === s) this.session = undefined;
    s?.destroy();
  }

  /** One gRPC call with one request message and (at most) one reply message. */
  private unary(
    what: string,
    path: string,
    body: Uint8Array,
    timeoutMs: number,
    signal: AbortSignal | undefined,
    token: string | undefined,
  ): Promise<Buffer> {
    if (this.closed)
      return Promise.reject(new ClusterError(ClusterErrorCodes.ABORTED, `etcd ${what}: client closed`));
    if (signal?.aborted) return Promise.reject(etcdAborted(what, signal));
    return new Promise<Buffer>((resolve, reject) => {
      let session: ClientHttp2Session | undefined;
      let stream: ClientHttp2Stream | undefined;
      let settled = false;
      const chunks: Buffer[] = [];
      let size = 0;
      let headers: IncomingHttpHeaders | undefined;
      let trailers: IncomingHttpHeaders | undefined;
      const finish = (err: unknown, value?: Buffer) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (stream && !stream.closed) stream.close(constants.NGHTTP2_CANCEL);
        if (err === undefined) resolve(value!);
        else reject(err);
      };
      const onAbort = () => finish(etcdAborted(what, signal));
      const timer = setTimeout(() => {
        // A member that does not answer in time may be gone without a word (a blackhole): dial
        // afresh next time instead of queueing behind a dead connection (this call's, not a newer one).
        this.dropSession(session);
        finish(etcdTimeout(what, timeoutMs));
      }, timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        session = this.connection();
        stream = session.request({
          [constants.HTTP2_HEADER_METHOD]: 'POST',
          [constants.HTTP2_HEADER_PATH]: path,
          [constants.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
          [constants.HTTP2_HEADER_TE]: 'trailers',
          'grpc-timeout': `${timeoutMs}m`,
          ...(token === undefined ? {} : { token }),
        });
      } catch (err) {
        this.dropSession(session);
        finish(err);
        return;
      }
      stream.on('response', (h) => {
        headers = h;
      });
      stream.on('trailers', (t) => {
        trailers = t;
      });
      stream.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_REPLY_BYTES) {
          finish(new WireProtocolError(`the answer is over ${MAX_REPLY_BYTES} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      stream.on('error', (err) => finish(err));
      stream.on('close', () => {
        if (settled) return;
        try {
          finish(undefined, readReply(headers, trailers, Buffer.concat(chunks)));
        } catch (err) {
          finish(err);
        }
      });
      // One message, then half-close: a streaming call (LeaseKeepAlive) answers it and ends.
      stream.end(frame(body));
    });
  }
}

/** A gRPC status other than OK, as the member sent it. */
class WireStatus extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** An answer that is not gRPC as etcd speaks it. */
class WireProtocolError extends Error {}

function readReply(
  headers: IncomingHttpHeaders | undefined,
  trailers: IncomingHttpHeaders | undefined,
  data: Buffer,
): Buffer {
  if (!headers) throw new WireProtocolError('the stream closed before any answer');
  const http = Number(headers[constants.HTTP2_HEADER_STATUS]);
  if (http !== 200) throw new WireProtocolError(`HTTP status ${http}`);
  // A failure with no reply body comes in the headers alone ("trailers-only").
  const statusHeader = trailers?.['grpc-status'] ?? headers['grpc-status'];
  if (statusHeader === undefined) throw new WireProtocolError('no grpc-status: the call was cut short');
  const status = Number(statusHeader);
  if (status !== 0) {
    const raw = String(trailers?.['grpc-message'] ?? headers['grpc-message'] ?? '');
    let message = raw;
    try {
      message = decodeURIComponent(raw);
    } catch {
      // not percent-encoded after all: keep it as sent
    }
    throw new WireStatus(status, message || `gRPC status ${status}`);
  }
  if (data.length < 5) throw new WireProtocolError(`a reply of ${data.length} bytes has no message`);
  if (data[0] !== 0) throw new WireProtocolError('a compressed reply (none was asked for)');
  const length = data.readUInt32BE(1);
  if (length > data.length - 5)
    throw new WireProtocolError(`a message of ${length} bytes in ${data.length - 5}`);
  return data.subarray(5, 5 + length);
}

function toClusterError(what: string, err: unknown): ClusterError {
  if (err instanceof ClusterError) return err;
  if (err instanceof WireStatus) {
    if (err.status === GRPC_NOT_FOUND && /lease not found/.test(err.message)) {
      return etcdLeaseLost(what, err);
    }
    // A lease grant is a write: refused like any other while etcd's NOSPACE alarm is raised.
    if (isEtcdNoSpace(err)) return etcdNoSpace(what, err);
    return etcdUnavailable(what, err.message, err);
  }
  if (err instanceof WireProtocolError) return etcdUnavailable(what, `malformed answer: ${err.message}`, err);
  // A timeout is already a ClusterError (above); an error without words is named by its code.
  const message = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: unknown } | null)?.code;
  return etcdUnavailable(what, message || (typeof code === 'string' ? code : 'failed, no reason given'), err);
}

/** A gRPC length-prefixed message: no compression, 4-byte big-endian length. */
function frame(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

// Protocol Buffers, as far as these four calls need: varint and string fields.

type Field = [number, number | bigint | string];

/** Encodes fields in order: integers as varints (wire type 0), strings as UTF-8 (wire type 2). */
export function encode(fields: readonly Field[]): Uint8Array {
  const bytes: number[] = [];
  for (const [no, value] of fields) {
    if (typeof value === 'string') {
      const s = Buffer.from(value, 'utf8');
      pushVarint(bytes, BigInt((no << 3) | 2));
      pushVarint(bytes, BigInt(s.length));
      for (const b of s) bytes.push(b);
    } else {
      pushVarint(bytes, BigInt(no << 3));
      pushVarint(bytes, BigInt.asUintN(64, BigInt(value)));
    }
  }
  return Uint8Array.from(bytes);
}

function pushVarint(out: number[], v: bigint): void {
  let x = v;
  while (x >= 0x80n) {
    out.push(Number(x & 0x7fn) | 0x80);
    x >>= 7n;
  }
  out.push(Number(x));
}

export interface Decoded {
  /** Varint fields by number, as unsigned 64-bit values (the last one of a repeated number). */
  varints: Map<number, bigint>;
  /** Length-delimited fields by number, as the bytes they hold (strings and nested messages alike). */
  bytes: Map<number, Buffer>;
}

/** Decodes the top level of a message; anything malformed is a WireProtocolError (retryable). */
export function decode(buf: Uint8Array): Decoded {
  const out: Decoded = { varints: new Map(), bytes: new Map() };
  let i = 0;
  const varint = (): bigint => {
    let v = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (i >= buf.length) throw new WireProtocolError(`a varint runs past the message`);
      const b = buf[i++]!;
      v |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return BigInt.asUintN(64, v);
    }
    throw new WireProtocolError(`a varint longer than 10 bytes`);
  };
  while (i < buf.length) {
    const key = varint();
    const no = Number(key >> 3n);
    const type = Number(key & 7n);
    if (no === 0) throw new WireProtocolError(`field number 0`);
    if (type === 0) out.varints.set(no, varint());
    else if (type === 2) {
      const len = Number(varint());
      if (len > buf.length - i) throw new WireProtocolError(`a field of ${len} bytes runs past the message`);
      out.bytes.set(no, Buffer.from(buf.buffer, buf.byteOffset + i, len));
      i += len;
    } else if (type === 1) i += 8;
    else if (type === 5) i += 4;
    else throw new WireProtocolError(`wire type ${type}`);
    if (i > buf.length) throw new WireProtocolError(`a fixed field runs past the message`);
  }
  return out;
}

/** etcd lease ids travel as decimal strings (int64); keys use lowercase hex, as etcd's Go client does. */
export function leaseHex(leaseId: string): string {
  return BigInt(leaseId).toString(16);
}
