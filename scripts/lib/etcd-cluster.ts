// A real etcd cluster on loopback for the demo, the benches and the tests: N members (default 3)
// of the installed /usr/bin/etcd on 127.0.0.1, free client and peer ports, tmp data dirs, fast raft
// timing (heartbeat 50 ms, election 500 ms), lease checkpointing on as in what we ship.
// Everything is bounded: start waits for `etcdctl endpoint health` with a deadline, stop() kills
// every member (SIGKILL: nothing of their data is kept) and removes the data dirs; a process exit
// kills leftovers.
// `secure`: TLS on client and peer URLs with client certificates required (a CA made with openssl),
// and authentication on, with a `root` user and one user whose role reaches only a prefix; plain
// unless asked (the test suite's wrapper, test/support/etcd-cluster.ts, defaults it to the suite's
// mode). Clients take their settings from the cluster (`clientConfig()` for a controller's config
// file, `clientOptions()` in process), so one test runs unchanged on either.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EtcdSecurity } from '../../src/cluster/etcd/etcd-client.ts';
import type { EtcdSettings } from '../../src/config/link-secrets.ts';
import { freePort as freePortOn } from '../../src/util/async.ts';
import { BlackholeProxy } from './blackhole-proxy.ts';
import { makeCa, makeLeaf } from './throwaway-pki.ts';

export const ETCD_BIN = process.env.ETCD_BIN ?? '/usr/bin/etcd';
export const ETCDCTL_BIN = process.env.ETCDCTL_BIN ?? '/usr/bin/etcdctl';

export interface EtcdClusterOptions {
  /** Where member data dirs go (created if missing); default a fresh tmp dir, removed at stop(). */
  dataDir?: string;
  size?: number;
  heartbeatMs?: number;
  electionMs?: number;
  /** How long start() may take, ms (default 30 s). */
  startTimeoutMs?: number;
  /**
   * Members reach each other through a blackhole proxy in front of each member's peer port (the
   * advertised peer URL), so a chaos test can cut what the others send to one member.
   */
  peerProxies?: boolean;
  /**
   * TLS (client and peer, client certificates required) and auth on, with a user whose role
   * reaches only `prefix` (default {@link TEST_ROLE_PREFIX}). Default: plain.
   */
  secure?: boolean | { prefix?: string };
  /** More flags for every member's command line (e.g. `--quota-backend-bytes=…` for a tiny quota). */
  extraFlags?: string[];
}

/**
 * The prefix the test user's role reaches by default: every key whose name starts with `/coolctl`
 * — the tests' own roots (`/coolctl/…`, `/coolctl-test/…`, `/coolctl-chaos/…`) and nothing else.
 * Still a prefix-limited role, as a site's is, never root.
 */
export const TEST_ROLE_PREFIX = '/coolctl';

/** What an in-process client (createEtcdClient, EtcdLeadership, EtcdSession) takes: URLs and material read. */
export type EtcdClientSettings = { hosts: string[] } & EtcdSecurity;

/** EtcdSession's form of a client's settings: the URLs, and TLS and user as `security`. */
export function sessionSettings({ hosts, tls, auth }: EtcdClientSettings): {
  hosts: string[];
  security: EtcdSecurity;
} {
  return { hosts, security: { tls, auth } };
}

/**
 * Settings as JSON for a child process (argv), and back: the TLS material's bytes survive the trip
 * (`Buffer`'s JSON form, revived by {@link reviveBytes}).
 */
export function reviveBytes(_key: string, value: unknown): unknown {
  const v = value as { type?: unknown; data?: unknown } | null;
  return v && typeof v === 'object' && v.type === 'Buffer' && Array.isArray(v.data)
    ? Buffer.from(v.data as number[])
    : value;
}

/** What a client of a `secure` cluster needs; secrets are also in files, as a deployment has them. */
export interface EtcdClusterSecurity {
  caFile: string;
  /** A client certificate whose CN (`coolctl-node`) is no etcd user: it proves the machine, not who. */
  certFile: string;
  keyFile: string;
  /** The user whose role reaches only `prefix` (readwrite). */
  username: string;
  password: string;
  passwordFile: string;
  prefix: string;
  rootPassword: string;
}

export interface EtcdCluster {
  /** `127.0.0.1:PORT` per member, in member order. */
  readonly endpoints: string[];
  /** `http://127.0.0.1:PORT` per member, in member order. */
  readonly clientUrls: string[];
  readonly dir: string;
  /** Set with `secure`: CA, client certificate, and the prefix user. */
  readonly security: EtcdClusterSecurity | undefined;
  /**
   * The controller config's `cluster.etcd` for this cluster: URLs, and when secure the TLS files
   * and the prefix user with its password file. `endpoints` (`host:port`, e.g. proxies in front of
   * the members) replace the members' own addresses.
   */
  clientConfig(endpoints?: string[]): EtcdSettings;
  /** The same for a client in the test process: URLs, and the TLS material and user already read. */
  clientOptions(endpoints?: string[]): EtcdClientSettings;
  /**
   * etcdctl against every member with this cluster's TLS flags; `asRoot` adds the root user,
   * `asUser` the prefix user (neither: the client certificate alone, which a secure cluster refuses).
   */
  ctl(args: string[], opts?: { asRoot?: boolean; asUser?: boolean; timeoutMs?: number }): Promise<string>;
  /** etcdctl's flags for this cluster (TLS, and the user `as` names), for a long-running etcdctl. */
  ctlFlags(as?: 'root' | 'user' | 'none'): string[];
  /** The member that is raft leader now, by `endpoint status` (null when none answers as leader). */
  leader(timeoutMs?: number): Promise<number | null>;
  /** Sends `signal` to a member; for SIGKILL/SIGTERM waits (bounded) until it exited. */
  kill(member: number, signal?: NodeJS.Signals): Promise<void>;
  /** Starts a member again on its data dir and ports (kills it first if it still runs); waits until it is healthy. */
  restart(member: number): Promise<void>;
  /** Whether every running member answers `endpoint health` (quorum and a leader). */
  healthy(member?: number): Promise<boolean>;
  /** The last lines of a member's log, for failure messages. */
  logTail(member: number, lines?: number): Promise<string>;
  /** The proxy in front of a member's peer port (with `peerProxies`). */
  peerProxy(member: number): BlackholeProxy | undefined;
  stop(): Promise<void>;
}

interface MemberProc {
  name: string;
  clientPort: number;
  peerPort: number;
  /** The port peers dial: the peer proxy's with `peerProxies`, else `peerPort`. */
  advertisePeerPort: number;
  proxy: BlackholeProxy | undefined;
  dataDir: string;
  logPath: string;
  proc: ChildProcess | null;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(p: ChildProcess): void {
  live.add(p);
  p.once('exit', () => live.delete(p));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // A crashed or interrupted test run must not leave etcd processes behind.
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
}
/** A free port on 127.0.0.1 (tests bind only loopback). */
export const freePort = (): Promise<number> => freePortOn('127.0.0.1');

/** Runs etcdctl (API v3) against `endpoints`; resolves with stdout, rejects on failure or after `timeoutMs`. */
export function etcdctl(endpoints: string[], args: string[], timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      ETCDCTL_BIN,
      [`--endpoints=${endpoints.join(',')}`, '--dial-timeout=1s', '--command-timeout=2s', ...args],
      { env: { ...process.env, ETCDCTL_API: '3' }, timeout: timeoutMs, killSignal: 'SIGKILL' },
      (err, stdout, stderr) =>
        err ? reject(new Error(`etcdctl ${args.join(' ')}: ${stderr || err.message}`)) : resolve(stdout),
    );
  });
}

export async function startEtcdCluster(opts: EtcdClusterOptions = {}): Promise<EtcdCluster> {
  const ownDir = opts.dataDir === undefined;
  const dir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'coolctl-etcd-')));
  await mkdir(dir, { recursive: true });
  const size = opts.size ?? 3;
  // A port picked free can be taken before etcd binds it: one retry with fresh ports.
  const secure = opts.secure ?? false;
  const pki = secure ? await makeSecurity(dir, secure) : undefined;
  for (let attempt = 1; ; attempt++) {
    const cluster = await RealEtcdCluster.create(dir, ownDir, size, opts, attempt, pki);
    try {
      await cluster.waitHealthy(opts.startTimeoutMs ?? 30_000);
      if (pki) await cluster.enableAuth();
      return cluster;
    } catch (err) {
      const tails = await Promise.all(cluster.members.map((_, i) => cluster.logTail(i, 10)));
      const last = attempt >= 2;
      // The retry starts in the same directory: its certificates and this attempt's logs stay.
      await cluster.stop({ keepDir: !last });
      if (last) throw new Error(`etcd cluster did not start: ${String(err)}\n${tails.join('\n')}`);
    }
  }
}

interface ClusterPki {
  security: EtcdClusterSecurity;
  memberCert: string;
  memberKey: string;
}

async function makeSecurity(dir: string, secure: true | { prefix?: string }): Promise<ClusterPki> {
  const ca = await makeCa(dir, 'etcd-ca');
  const member = await makeLeaf(ca, 'etcd-member', { usage: ['serverAuth', 'clientAuth'] });
  const client = await makeLeaf(ca, 'etcd-client', { cn: 'coolctl-node', usage: ['clientAuth'] });
  const password = randomBytes(18).toString('base64url');
  const passwordFile = join(dir, 'etcd-password');
  await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
  return {
    security: {
      caFile: ca.caFile,
      certFile: client.certFile,
      keyFile: client.keyFile,
      username: 'coolctl',
      password,
      passwordFile,
      prefix: (secure === true ? undefined : secure.prefix) ?? TEST_ROLE_PREFIX,
      rootPassword: randomBytes(18).toString('base64url'),
    },
    memberCert: member.certFile,
    memberKey: member.keyFile,
  };
}

class RealEtcdCluster implements EtcdCluster {
  readonly members: MemberProc[];
  readonly dir: string;
  private readonly pki: ClusterPki | undefined;
  private authOn = false;
  private readonly ownDir: boolean;
  private readonly opts: EtcdClusterOptions;
  private readonly token: string;
  private stopped = false;

  private constructor(
    dir: string,
    ownDir: boolean,
    members: MemberProc[],
    opts: EtcdClusterOptions,
    token: string,
    pki: ClusterPki | undefined,
  ) {
    this.pki = pki;
    this.dir = dir;
    this.ownDir = ownDir;
    this.members = members;
    this.opts = opts;
    this.token = token;
  }

  static async create(
    dir: string,
    ownDir: boolean,
    size: number,
    opts: EtcdClusterOptions,
    attempt: number,
    pki: ClusterPki | undefined,
  ): Promise<RealEtcdCluster> {
    const members: MemberProc[] = [];
    for (let i = 0; i < size; i++) {
      const name = `m${i}`;
      const memberDir = join(dir, `${name}-${attempt}`);
      const peerPort = await freePort();
      const proxy = opts.peerProxies
        ? await BlackholeProxy.start({ target: { host: '127.0.0.1', port: peerPort } })
        : undefined;
      members.push({
        name,
        clientPort: await freePort(),
        peerPort,
        advertisePeerPort: proxy?.port ?? peerPort,
        proxy,
        dataDir: join(memberDir, 'data'),
        logPath: join(dir, `${name}-${attempt}.log`),
        proc: null,
      });
    }
    const c = new RealEtcdCluster(
      dir,
      ownDir,
      members,
      opts,
      `coolctl-test-${process.pid}-${Date.now()}`,
      pki,
    );
    for (let i = 0; i < size; i++) c.spawnMember(i, 'new');
    return c;
  }

  get endpoints(): string[] {
    return this.members.map((m) => `127.0.0.1:${m.clientPort}`);
  }

  get clientUrls(): string[] {
    return this.endpoints.map((e) => `${this.scheme}://${e}`);
  }

  get security(): EtcdClusterSecurity | undefined {
    return this.pki?.security;
  }

  private urls(endpoints: string[] = this.endpoints): string[] {
    return endpoints.map((e) => `${this.scheme}://${e}`);
  }

  clientConfig(endpoints?: string[]): EtcdSettings {
    const s = this.pki?.security;
    if (!s) return { hosts: this.urls(endpoints) };
    return {
      hosts: this.urls(endpoints),
      tls: { caFile: s.caFile, certFile: s.certFile, keyFile: s.keyFile },
      auth: { username: s.username, passwordFile: s.passwordFile },
    };
  }

  private material: EtcdSecurity | undefined;

  clientOptions(endpoints?: string[]): EtcdClientSettings {
    const s = this.pki?.security;
    if (!s) return { hosts: this.urls(endpoints) };
    this.material ??= {
      tls: { ca: readFileSync(s.caFile), cert: readFileSync(s.certFile), key: readFileSync(s.keyFile) },
      auth: { username: s.username, password: s.password },
    };
    return { hosts: this.urls(endpoints), ...this.material };
  }

  private get scheme(): 'http' | 'https' {
    return this.pki ? 'https' : 'http';
  }

  /** etcdctl's TLS flags (the node client certificate), and once auth is on the user `as` names. */
  ctlFlags(as: 'root' | 'user' | 'none' = 'none'): string[] {
    const s = this.pki?.security;
    if (!s) return [];
    const user =
      !this.authOn || as === 'none'
        ? []
        : [as === 'root' ? `--user=root:${s.rootPassword}` : `--user=${s.username}:${s.password}`];
    return [`--cacert=${s.caFile}`, `--cert=${s.certFile}`, `--key=${s.keyFile}`, ...user];
  }

  ctl(
    args: string[],
    opts: { asRoot?: boolean; asUser?: boolean; timeoutMs?: number } = {},
  ): Promise<string> {
    const as = opts.asRoot ? 'root' : opts.asUser ? 'user' : 'none';
    return etcdctl(this.endpoints, [...this.ctlFlags(as), ...args], opts.timeoutMs);
  }

  async leader(timeoutMs = 4000): Promise<number | null> {
    const out = await this.ctl(['endpoint', 'status', '-w', 'json'], { asRoot: true, timeoutMs }).catch(
      () => '[]',
    );
    // Member ids are 64-bit: quote them before JSON.parse rounds them.
    const rows = JSON.parse(out.replace(/"(member_id|leader)":(\d+)/g, '"$1":"$2"')) as {
      Endpoint: string;
      Status: { header: { member_id: string }; leader: string };
    }[];
    for (const r of rows) {
      if (String(r.Status.header.member_id) === String(r.Status.leader)) {
        const i = this.endpoints.findIndex((e) => r.Endpoint.endsWith(e));
        if (i >= 0) return i;
      }
    }
    return null;
  }

  /** root, a role reaching only the prefix, its user, then `auth enable` (etcd 3.4's order). */
  async enableAuth(): Promise<void> {
    const s = this.pki!.security;
    const steps = [
      ['user', 'add', `root:${s.rootPassword}`],
      ['role', 'add', 'coolctl'],
      ['role', 'grant-permission', 'coolctl', '--prefix=true', 'readwrite', s.prefix],
      ['user', 'add', `${s.username}:${s.password}`],
      ['user', 'grant-role', s.username, 'coolctl'],
      ['auth', 'enable'],
    ];
    for (const step of steps) await this.ctl(step);
    this.authOn = true;
  }

  private spawnMember(i: number, state: 'new' | 'existing'): void {
    const m = this.members[i]!;
    const scheme = this.scheme;
    const initialCluster = this.members
      .map((x) => `${x.name}=${scheme}://127.0.0.1:${x.advertisePeerPort}`)
      .join(',');
    const tlsFlags = this.pki
      ? [
          '--client-cert-auth',
          `--trusted-ca-file=${this.pki.security.caFile}`,
          `--cert-file=${this.pki.memberCert}`,
          `--key-file=${this.pki.memberKey}`,
          '--peer-client-cert-auth',
          `--peer-trusted-ca-file=${this.pki.security.caFile}`,
          `--peer-cert-file=${this.pki.memberCert}`,
          `--peer-key-file=${this.pki.memberKey}`,
        ]
      : [];
    const fd = openSync(m.logPath, 'a');
    const proc = spawn(
      ETCD_BIN,
      [
        `--name=${m.name}`,
        `--data-dir=${m.dataDir}`,
        `--listen-client-urls=${scheme}://127.0.0.1:${m.clientPort}`,
        `--advertise-client-urls=${scheme}://127.0.0.1:${m.clientPort}`,
        `--listen-peer-urls=${scheme}://127.0.0.1:${m.peerPort}`,
        `--initial-advertise-peer-urls=${scheme}://127.0.0.1:${m.advertisePeerPort}`,
        ...tlsFlags,
        `--initial-cluster=${initialCluster}`,
        `--initial-cluster-state=${state}`,
        `--initial-cluster-token=${this.token}`,
        `--heartbeat-interval=${this.opts.heartbeatMs ?? 50}`,
        `--election-timeout=${this.opts.electionMs ?? 500}`,
        // As deployed (deploy/etcd/etcd.env.example): a new etcd leader gives a lease the remaining
        // TTL of its last checkpoint, not its whole TTL (only leases with more than 300 s left are
        // checkpointed, so leadership leases are not); persisted, so a restarted member has it too.
        '--experimental-enable-lease-checkpoint',
        '--experimental-enable-lease-checkpoint-persist',
        '--logger=zap',
        '--log-outputs=stderr',
        '--log-level=warn',
        ...(this.opts.extraFlags ?? []),
      ],
      { stdio: ['ignore', fd, fd] },
    );
    closeSync(fd);
    proc.on('error', () => {}); // a missing binary shows as a failed health check with the log
    track(proc);
    m.proc = proc;
  }

  async waitHealthy(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    let last: unknown;
    while (performance.now() < deadline) {
      for (const m of this.members) {
        if (m.proc && m.proc.exitCode !== null)
          throw new Error(`etcd ${m.name} exited with ${m.proc.exitCode}`);
      }
      try {
        if (await this.healthy()) return;
      } catch (err) {
        last = err;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`etcd not healthy within ${timeoutMs} ms${last ? `: ${String(last)}` : ''}`);
  }

  async healthy(member?: number): Promise<boolean> {
    const eps = member === undefined ? this.endpoints : [this.endpoints[member]!];
    try {
      await etcdctl(eps, [...this.ctlFlags('root'), 'endpoint', 'health'], 4_000);
      return true;
    } catch {
      return false;
    }
  }

  async kill(member: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const p = this.members[member]?.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    p.kill(signal);
    if (signal === 'SIGKILL' || signal === 'SIGTERM' || signal === 'SIGINT') await exited(p, 5_000);
  }

  async restart(member: number): Promise<void> {
    const p = this.members[member]?.proc;
    if (p && p.exitCode === null && p.signalCode === null) {
      p.kill('SIGCONT');
      p.kill('SIGKILL');
      await exited(p, 5_000);
    }
    this.spawnMember(member, 'existing');
    const deadline = performance.now() + 20_000;
    while (performance.now() < deadline) {
      if (await this.healthy(member)) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`etcd m${member} not healthy after restart:\n${await this.logTail(member)}`);
  }

  peerProxy(member: number): BlackholeProxy | undefined {
    return this.members[member]?.proxy;
  }

  async logTail(member: number, lines = 20): Promise<string> {
    const m = this.members[member];
    if (!m) return '';
    const text = await readFile(m.logPath, 'utf8').catch(() => '');
    return `--- etcd ${m.name} ---\n${text.trim().split('\n').slice(-lines).join('\n')}`;
  }

  /**
   * Stops every member and removes what the cluster made. `keepDir` keeps the shared directory
   * (certificates, earlier attempts' logs) for a retry that starts in it again.
   */
  async stop(opts: { keepDir?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await Promise.all(
      this.members.map(async (m) => {
        const p = m.proc;
        if (!p || p.exitCode !== null || p.signalCode !== null) return;
        // SIGKILL at once: the data dirs go with the cluster, and a member asked to stop while its
        // peers stop too waits seconds for a leadership transfer no one can take (3 s a cluster).
        p.kill('SIGKILL');
        await exited(p, 3_000);
      }),
    );
    await Promise.all(this.members.map((m) => m.proxy?.close()));
    if (this.ownDir && !opts.keepDir) await rm(this.dir, { recursive: true, force: true });
    else
      await Promise.all(this.members.map((m) => rm(join(m.dataDir, '..'), { recursive: true, force: true })));
  }
}

function exited(p: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), timeoutMs);
    p.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}
