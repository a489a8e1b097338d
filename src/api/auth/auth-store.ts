// Users and tokens of the cluster, kept in etcd under `<prefix>/auth/` so every node authenticates
// the same way: `users/<name>` (role, scrypt hash) and `tokens/<id>` (API tokens and dashboard
// sessions: owner, SHA-256 of the secret, expiry). Each node holds a copy in memory, filled by one
// read and kept current by a watch, so a request is checked without an etcd call and a revoked token
// stops working on every node as soon as the watch delivers the delete (milliseconds on a LAN).
// A token acts with its owner's current role: removing or demoting a user takes effect at once.
// A token ends at the earlier of two: its expiry by the checking node's wall clock, and the end of
// the etcd lease its record is bound to (token-leases.ts), which etcd and the issuing node time and
// every node sees as a delete — so a node whose clock is behind cannot take it for long after.
import { readFile, stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { KvEntry, PrefixKv } from '../../cluster/etcd/prefix-kv.ts';
import { userProblems } from '../../config/user-rules.ts';
import { BadRequestError, CoolctlError, ErrorCodes } from '../../errors.ts';
import { zeroSeries } from '../../metrics/zero-series.ts';
import { retryWhileRetryable } from '../../util/async.ts';
import { clip, FaultLog, LogLimiter } from '../../util/log-limit.ts';
import { compareCodeUnits } from '../../util/order.ts';
import { parseWireJson, wireJson } from '../../version.ts';
import {
  decoyHash,
  hashPassword,
  newToken,
  parseToken,
  sameHash,
  secretHash,
  verifyPassword,
} from './credentials.ts';
import { type Identity, isRole, type Role } from './roles.ts';
import { MAX_LEASE_TTL_S, type TokenLeases } from './token-leases.ts';

/**
 * Why a request was refused for its identity (coolctl_api_auth_failures_total{reason}): none or bad
 * credentials, a role too low, a possible cross-site request, a wrong name or password at sign-in.
 */
export const AUTH_FAILURE_REASONS = [
  'unauthenticated',
  'forbidden',
  'cross_site',
  'sign_in',
  'sign_in_limited',
] as const;
export type AuthFailureReason = (typeof AUTH_FAILURE_REASONS)[number];
/** The records under `<prefix>/auth/` (coolctl_auth_records_invalid_total{kind}). */
const RECORD_KINDS = ['user', 'token'] as const;

export interface UserRecord {
  name: string;
  role: Role;
  passwordHash: string;
  createdAtMs: number;
}

export interface TokenRecord {
  id: string;
  user: string;
  kind: 'token' | 'session';
  /** What it is for (API tokens), e.g. "grafana"; empty for sessions. */
  label: string;
  hash: string;
  createdAtMs: number;
  expiresAtMs: number;
  /**
   * Which user of that name it was issued to: the user record's createdAtMs then. A user removed and
   * added again under the same name is another user, and a token of the old one — one a sign-in
   * issued on another node while the remove ran, or one a failed revoke left behind — must not wake
   * up for the new one. Absent in tokens issued before this field: those count as the user's only
   * when issued after the user was created.
   */
  userCreatedAtMs?: number;
}

export type UserView = Omit<UserRecord, 'passwordHash'>;
export type TokenView = Omit<TokenRecord, 'hash' | 'userCreatedAtMs'>;

/**
 * How long a token stays in etcd after it expired by the clock of the node that prunes: for records
 * bound to no lease (written before leases, or by a store without them). authenticate() refuses an
 * expired token at once on each node by that node's clock; deleting is cluster-wide, so one node
 * whose clock NTP stepped a day ahead (or that booted with a wrong clock) must not sign everybody
 * out everywhere.
 */
export const TOKEN_PRUNE_GRACE_MS = 7 * 86_400_000;

/** How long start-up waits out an etcd that does not answer before the node gives up. */
const START_TIMEOUT_MS = 30_000;

/**
 * Sign-in attempts one name may take on a node per minute (SIGN_IN_NAME_WINDOW_MS), from any number
 * of addresses; a success starts the count again. The per-address limit alone let a host with many
 * addresses (every free one of the hall's subnet; the limiter takes an IPv6 /64 as one) guess one
 * account's password as fast as the node hashes.
 * Twice the per-address default, so one person at one address meets that limit first.
 */
export const SIGN_INS_PER_NAME = 20;
export const SIGN_IN_NAME_WINDOW_MS = 60_000;
/** Names whose attempts a node remembers; past this the least recently tried go first. */
const SIGN_IN_NAMES_REMEMBERED = 5_000;
/** The longest token a store issues: well inside etcd's largest lease TTL (the API allows 366 days). */
export const MAX_TOKEN_LIFE_MS = Math.min(10 * 366 * 86_400_000, (MAX_LEASE_TTL_S - 3600) * 1000);

/** The answer to every failed sign-in and every bad token: it never says which part was wrong. */
export function unauthenticated(): BadRequestError {
  return new BadRequestError(
    ErrorCodes.UNAUTHENTICATED,
    'sign in: a valid API token (Authorization: Bearer) or dashboard session is needed',
    ['wrong name or password, or an unknown, revoked or expired token'],
    401,
  );
}

export interface AuthStoreOptions {
  kv: PrefixKv;
  /** The cluster prefix, e.g. /coolctl. */
  prefix: string;
  logger: Logger;
  registry: Registry;
  now?: () => number;
  /** The monotonic clock the per-name sign-in limit is timed on (tests step it). */
  monotonicNow?: () => number;
  /** Sign-in attempts per name and node per minute (default SIGN_INS_PER_NAME). */
  signInsPerName?: number;
  /**
   * Where token records are written bound to an etcd lease (the daemon always gives it). Without it
   * a token ends by each node's wall clock alone.
   */
  leases?: TokenLeases;
}

/** A name that took its sign-in attempts for the window: answered 429 with when to try again. */
export class SignInLimitedError extends BadRequestError {
  readonly retryAfterS: number;
  constructor(retryAfterS: number) {
    super(
      ErrorCodes.RATE_LIMITED,
      `too many sign-in attempts for this name on this node: retry in ${retryAfterS} s`,
      [
        `retry in ${retryAfterS} s`,
        'someone may be guessing this account’s password: an admin can check coolctl_api_auth_failures_total{reason="sign_in_limited"} and the log; API tokens of the account still work',
      ],
      429,
    );
    this.retryAfterS = retryAfterS;
  }
}

export class AuthStore {
  private readonly opts: AuthStoreOptions;
  private readonly users = new Map<string, UserRecord>();
  private readonly tokens = new Map<string, TokenRecord>();
  private watch: { close(): Promise<void> } | undefined;
  /**
   * Per reload whose read is out, the keys changed since it began (a watch event, or this node's own
   * write): newer than what the read will bring back, so the read does not overwrite them.
   */
  private readonly changedDuringReload = new Set<Set<string>>();
  /** The latest resync; an older one still retrying gives way to it. */
  private resyncs = 0;
  /** Aborted by stop(): ends a resync's retries. */
  private readonly stopping = new AbortController();
  private pruner: NodeJS.Timeout | undefined;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly failures: Counter<'reason'>;
  private readonly invalid: Counter<'kind'>;
  private readonly resyncFailures: Counter;
  /**
   * Failed re-reads as log lines: one at once, then at most one a minute, and one when a re-read is
   * answered again — a watch confirmed every few seconds while etcd times out reads starts a resync each time.
   */
  private readonly resyncFaults: FaultLog;
  /** Key → why its record was refused, so each is reported once. */
  private readonly refused = new Map<string, string>();
  /** At most 10 refusal lines per kind every 10 s (on the monotonic clock). */
  private readonly refusalLog = new LogLimiter(() => performance.now(), 10_000, 10);
  private readonly monotonicNow: () => number;
  /** Per name tried at sign-in: attempts in its window (LRU order: the Map's). */
  private readonly signInTries = new Map<string, { count: number; startMs: number; logged: boolean }>();

  constructor(opts: AuthStoreOptions) {
    this.opts = opts;
    this.log = opts.logger.child({ component: 'auth' });
    this.now = opts.now ?? Date.now;
    this.monotonicNow = opts.monotonicNow ?? (() => performance.now());
    this.failures = new Counter({
      name: 'coolctl_api_auth_failures_total',
      help: 'API requests refused for their identity: unauthenticated (no or bad credentials), forbidden (role), cross_site, sign_in (wrong name or password)',
      labelNames: ['reason'],
      registers: [opts.registry],
    });
    this.invalid = new Counter({
      name: 'coolctl_auth_records_invalid_total',
      help: 'User or token records in etcd that could not be read (ignored: they grant nothing)',
      labelNames: ['kind'],
      registers: [opts.registry],
    });
    this.resyncFailures = new Counter({
      name: 'coolctl_auth_resync_failures_total',
      help: 'Re-reads of users and tokens (after the watch is confirmed again) that etcd did not answer, each try',
      registers: [opts.registry],
    });
    this.resyncFaults = new FaultLog(this.monotonicNow);
    zeroSeries(this.failures, { reason: AUTH_FAILURE_REASONS });
    zeroSeries(this.invalid, { kind: RECORD_KINDS });
  }

  /** A request refused for its identity: counted here, answered by the caller. */
  authFailed(reason: AuthFailureReason): void {
    this.failures.inc({ reason });
  }

  private get usersPrefix(): string {
    return `${this.opts.prefix}/auth/users/`;
  }
  private get tokensPrefix(): string {
    return `${this.opts.prefix}/auth/tokens/`;
  }

  /**
   * Reads every user and token and follows changes; then removes tokens expired for a while
   * (TOKEN_PRUNE_GRACE_MS) now and hourly.
   * A slow or briefly unavailable etcd is waited out (with backoff) until `signal` aborts.
   */
  async start(signal: AbortSignal = AbortSignal.timeout(START_TIMEOUT_MS)): Promise<void> {
    const { kv } = this.opts;
    // Hashed now, beside the reads: made lazily, the first sign-in for an unknown name would take
    // one more scrypt than any other and tell that the name does not exist.
    const decoy = decoyHash();
    const onRetry = (err: unknown, retryInMs: number) =>
      this.log.warn(
        { err: (err as Error).message, retryInMs: Math.round(retryInMs) },
        'auth start: etcd did not answer; retrying',
      );
    this.watch = await retryWhileRetryable(
      () =>
        kv.watch(
          `${this.opts.prefix}/auth/`,
          (e) => {
            if (e.type === 'put') {
              this.changed(e.entry.key);
              return this.take(e.entry);
            }
            this.changed(e.key);
            this.refused.delete(e.key);
            this.drop(e.key);
          },
          () => this.resync(),
        ),
      { signal, onRetry },
    );
    await retryWhileRetryable(() => this.reload(), { signal, onRetry });
    this.pruner = setInterval(() => void this.pruneExpired().catch(() => {}), 3_600_000);
    this.pruner.unref();
    this.opts.leases?.start();
    await this.pruneExpired().catch(() => {});
    await decoy;
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    clearInterval(this.pruner);
    this.opts.leases?.stop();
    await this.watch?.close().catch(() => {});
    this.watch = undefined;
  }

  /**
   * The watch was (re)confirmed and may have missed events: read everything again, and keep trying
   * (with backoff, until a newer resync or stop()) — a failed re-read left alone would leave this
   * node without the tokens issued meanwhile, refusing them until the watch next reconnected.
   */
  private resync(): void {
    const n = ++this.resyncs;
    const latest = () => n === this.resyncs;
    void retryWhileRetryable(() => (latest() ? this.reload() : Promise.resolve()), {
      signal: this.stopping.signal,
      onRetry: (err, retryInMs) => {
        this.resyncFailures.inc();
        const notLogged = this.resyncFaults.failure('resync');
        if (notLogged >= 0)
          this.log.warn(
            { err: (err as Error).message, retryInMs: Math.round(retryInMs), notLogged },
            'auth resync: etcd did not answer; retrying until it does',
          );
      },
    }).then(
      () => {
        // A resync that gave way to a newer one read nothing: only the latest can say it is done.
        if (latest() && this.resyncFaults.recovery('resync'))
          this.log.info('auth resync done: users and tokens read again');
      },
      (err: unknown) => {
        if (this.stopping.signal.aborted) return;
        this.resyncFailures.inc();
        const notLogged = this.resyncFaults.failure('resync');
        if (notLogged >= 0) this.log.warn({ err: (err as Error).message, notLogged }, 'auth resync failed');
      },
    );
  }

  private changed(key: string): void {
    for (const keys of this.changedDuringReload) keys.add(key);
  }

  private async reload(): Promise<void> {
    const changed = new Set<string>();
    this.changedDuringReload.add(changed);
    try {
      const [users, tokens] = await Promise.all([
        this.opts.kv.list(this.usersPrefix),
        this.opts.kv.list(this.tokensPrefix),
      ]);
      // What the read no longer has goes, and what it has is taken, except for the keys changed
      // while it was out: their state now is newer than the read.
      for (const name of [...this.users.keys()])
        if (!changed.has(this.usersPrefix + name)) this.users.delete(name);
      for (const id of [...this.tokens.keys()])
        if (!changed.has(this.tokensPrefix + id)) this.tokens.delete(id);
      for (const e of [...users, ...tokens]) if (!changed.has(e.key)) this.take(e);
    } finally {
      this.changedDuringReload.delete(changed);
    }
  }

  private take({ key, value, oversizedBytes }: KvEntry): void {
    if (oversizedBytes !== undefined) {
      const kind = key.startsWith(this.usersPrefix)
        ? 'user'
        : key.startsWith(this.tokensPrefix)
          ? 'token'
          : null;
      if (kind) this.refuse(kind, key, `a value of ${oversizedBytes} bytes is no ${kind} record`);
      return;
    }
    if (key.startsWith(this.usersPrefix)) {
      const u = parseUser(value);
      if (typeof u !== 'string' && key === this.usersPrefix + u.name) {
        this.users.set(u.name, u);
        this.refused.delete(key);
      } else this.refuse('user', key, typeof u === 'string' ? u : `names user "${u.name}"`);
    } else if (key.startsWith(this.tokensPrefix)) {
      const t = parseTokenRecord(value);
      if (typeof t !== 'string' && key === this.tokensPrefix + t.id) {
        this.tokens.set(t.id, t);
        this.refused.delete(key);
      } else this.refuse('token', key, typeof t === 'string' ? t : `names token "${t.id}"`);
    }
  }

  /**
   * A record that grants nothing, whatever it held before: counted and logged once while it stays
   * what it is (a resync reads every record again).
   */
  private refuse(kind: (typeof RECORD_KINDS)[number], key: string, problem: string): void {
    this.drop(key);
    if (this.refused.get(key) === problem) return;
    this.refused.set(key, problem);
    this.invalid.inc({ kind });
    // Counted per record, logged per kind: thousands of bad records are a few lines, not thousands.
    const notLogged = this.refusalLog.admit(kind);
    if (notLogged < 0) return;
    this.log.warn(
      { key: clip(key), problem: clip(problem, 300), notLoggedSinceLast: notLogged },
      `${kind} record in etcd cannot be read: it grants nothing until fixed`,
    );
  }

  private drop(key: string): void {
    if (key.startsWith(this.usersPrefix)) this.users.delete(key.slice(this.usersPrefix.length));
    else if (key.startsWith(this.tokensPrefix)) this.tokens.delete(key.slice(this.tokensPrefix.length));
  }

  /**
   * Who presents `token`, or null (unknown, revoked, expired, or its user is gone). No I/O. Expired
   * is by this node's wall clock, or by etcd having deleted the record when its lease ended (the
   * watch removed it from `tokens`): the earlier of the two.
   */
  authenticate(token: string): Identity | null {
    const p = parseToken(token);
    if (!p) return null;
    const t = this.tokens.get(p.id);
    if (!t || t.expiresAtMs <= this.now() || !sameHash(t.hash, secretHash(p.secret))) return null;
    const u = this.users.get(t.user);
    return u && issuedTo(t, u) ? { user: u.name, role: u.role, via: t.kind, tokenId: t.id } : null;
  }

  /** Checks a name and password; the same error and about the same time whether or not the user exists. */
  async verify(name: string, password: string): Promise<UserRecord> {
    // Counted before the hash, so a burst of attempts in parallel gets no more than the limit.
    this.countSignIn(name);
    const u = this.users.get(name);
    const ok = await verifyPassword(password, u?.passwordHash ?? (await decoyHash()));
    if (!u || !ok) {
      this.authFailed('sign_in');
      throw unauthenticated();
    }
    this.signInTries.delete(name);
    return u;
  }

  /**
   * One more sign-in attempt for `name` (known or not: the limit must not tell which), refused past
   * the limit for the rest of its window. Logged once per window, naming the user only if one exists:
   * people type their password into the name field.
   */
  private countSignIn(name: string): void {
    const now = this.monotonicNow();
    const max = this.opts.signInsPerName ?? SIGN_INS_PER_NAME;
    let w = this.signInTries.get(name);
    if (w) this.signInTries.delete(name); // re-inserted below: the Map's order is the recency
    if (!w || w.startMs + SIGN_IN_NAME_WINDOW_MS <= now) w = { count: 0, startMs: now, logged: false };
    this.signInTries.set(name, w);
    while (this.signInTries.size > SIGN_IN_NAMES_REMEMBERED)
      this.signInTries.delete(this.signInTries.keys().next().value as string);
    if (w.count < max) {
      w.count++;
      return;
    }
    this.authFailed('sign_in_limited');
    const retryAfterS = Math.max(1, Math.ceil((w.startMs + SIGN_IN_NAME_WINDOW_MS - now) / 1000));
    if (!w.logged) {
      w.logged = true;
      this.log.warn(
        { user: this.users.has(name) ? name : '(no such user)', max, retryAfterS },
        'sign-in attempts for one name over the limit: refused until the window ends',
      );
    }
    throw new SignInLimitedError(retryAfterS);
  }

  /** A new token for `user` (kind session: a dashboard sign-in); the whole token is returned once. */
  async issue(
    user: string,
    kind: 'token' | 'session',
    ttlMs: number,
    label = '',
  ): Promise<{ token: string; record: TokenView }> {
    if (!(Number.isSafeInteger(ttlMs) && ttlMs > 0 && ttlMs <= MAX_TOKEN_LIFE_MS))
      throw new BadRequestError(ErrorCodes.BAD_REQUEST, `token lifetime ${ttlMs} ms refused`, [
        `a whole number of ms from 1 to ${MAX_TOKEN_LIFE_MS}`,
      ]);
    const owner = this.users.get(user);
    // Removed meanwhile (a sign-in's hash takes a while): a token for nobody is no token.
    if (!owner) throw unauthenticated();
    const t = newToken();
    const at = this.now();
    const record: TokenRecord = {
      id: t.id,
      user,
      kind,
      label,
      hash: t.hash,
      createdAtMs: at,
      expiresAtMs: at + ttlMs,
      userCreatedAtMs: owner.createdAtMs,
    };
    // Bound to a lease whose end is timed from now on the monotonic clock, whatever the wall says:
    // a node issuing with a clock ahead cannot make a token outlive its lifetime in etcd.
    if (this.opts.leases) await this.opts.leases.put(this.tokensPrefix + t.id, wireJson(record), ttlMs);
    else await this.opts.kv.put(this.tokensPrefix + t.id, wireJson(record));
    this.changed(this.tokensPrefix + t.id);
    this.tokens.set(t.id, record);
    this.log.info({ token: t.id, user, kind, expiresAtMs: record.expiresAtMs }, 'token issued');
    return { token: t.token, record: tokenView(record) };
  }

  /**
   * Revokes a token everywhere (the watch tells every node); false when there was none. Only the key
   * goes: its lease is shared by the other tokens that end in the same minute, and ends by itself.
   */
  async revoke(id: string): Promise<boolean> {
    const gone = await this.opts.kv.delete(this.tokensPrefix + id);
    this.changed(this.tokensPrefix + id);
    this.tokens.delete(id);
    if (gone) this.log.info({ token: id }, 'token revoked');
    return gone;
  }

  listUsers(): UserView[] {
    return [...this.users.values()]
      .map(({ passwordHash: _, ...u }) => u)
      .sort((a, b) => compareCodeUnits(a.name, b.name));
  }

  listTokens(): TokenView[] {
    return [...this.tokens.values()].map(tokenView).sort((a, b) => a.createdAtMs - b.createdAtMs);
  }

  hasUser(name: string): boolean {
    return this.users.has(name);
  }

  /** Adds a user; refuses one that exists (create-if-absent in etcd, so two nodes cannot both add it). */
  async addUser(name: string, role: Role, password: string): Promise<UserView> {
    const problems = userProblems(name, password);
    if (problems.length > 0) throw new BadRequestError(ErrorCodes.BAD_REQUEST, 'user refused', problems);
    const rec: UserRecord = {
      name,
      role,
      passwordHash: await hashPassword(password),
      createdAtMs: this.now(),
    };
    if (!(await this.opts.kv.create(this.usersPrefix + name, wireJson(rec))))
      throw new BadRequestError(ErrorCodes.BAD_REQUEST, `user "${name}" exists`, ['remove it first'], 409);
    this.changed(this.usersPrefix + name);
    this.users.set(name, rec);
    this.log.info({ user: name, role }, 'user added');
    const { passwordHash: _, ...view } = rec;
    return view;
  }

  /** Removes a user and every token and session of theirs. */
  async removeUser(name: string): Promise<boolean> {
    const gone = await this.opts.kv.delete(this.usersPrefix + name);
    this.changed(this.usersPrefix + name);
    this.users.delete(name);
    for (const t of [...this.tokens.values()]) if (t.user === name) await this.revoke(t.id);
    if (gone) this.log.info({ user: name }, 'user removed');
    return gone;
  }

  /** Whether the cluster has any user yet (the bootstrap file is read only when it has none). */
  get empty(): boolean {
    return this.users.size === 0;
  }

  /**
   * The first admin, from a file `name: …` / `password: …` (YAML), read only when the cluster has no
   * user. A file others may read is refused: the password would be the whole site's.
   */
  async bootstrap(
    file: string,
    signal: AbortSignal = AbortSignal.timeout(START_TIMEOUT_MS),
  ): Promise<'created' | 'skipped'> {
    if (!this.empty) return 'skipped';
    const st = await stat(file).catch((err) => {
      throw new CoolctlError(ErrorCodes.STARTUP, `api.bootstrapAdminFile ${file}: ${(err as Error).message}`);
    });
    if ((st.mode & 0o004) !== 0)
      throw new CoolctlError(
        ErrorCodes.STARTUP,
        `api.bootstrapAdminFile ${file} is world-readable (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`,
      );
    let doc: unknown;
    try {
      // Loaded for this one file, at the first start of a cluster: the yaml library's 72 modules
      // are memory every node would hold for good otherwise.
      const { default: YAML } = await import('yaml');
      doc = YAML.parse(await readFile(file, 'utf8'));
    } catch (err) {
      // The parser's message quotes the line it failed on, and that line can hold the password:
      // only its position (or the system's error code) goes out.
      const at = (err as { linePos?: { line: number; col: number }[] }).linePos?.[0];
      const code = (err as NodeJS.ErrnoException).syscall ? (err as NodeJS.ErrnoException).code : undefined;
      throw new CoolctlError(
        ErrorCodes.STARTUP,
        `api.bootstrapAdminFile ${file}: ${code ? `cannot read it (${code})` : `not YAML${at ? ` (line ${at.line}, column ${at.col})` : ''}`}`,
      );
    }
    const { name, password } = (doc ?? {}) as { name?: unknown; password?: unknown };
    if (typeof name !== 'string' || typeof password !== 'string')
      throw new CoolctlError(
        ErrorCodes.STARTUP,
        `api.bootstrapAdminFile ${file}: needs "name" and "password"`,
      );
    try {
      // A create that timed out may have landed: its retry then finds the user (409, skipped).
      await retryWhileRetryable(() => this.addUser(name, 'admin', password), { signal });
    } catch (err) {
      if (err instanceof BadRequestError && err.httpStatus === 409) return 'skipped'; // another node was first
      if (err instanceof BadRequestError)
        throw new CoolctlError(
          ErrorCodes.STARTUP,
          `api.bootstrapAdminFile ${file}: ${err.details.join('; ')}`,
        );
      throw err;
    }
    this.log.warn({ user: name }, 'first admin created from the bootstrap file; remove the file');
    return 'created';
  }

  private async pruneExpired(): Promise<void> {
    const before = this.now() - TOKEN_PRUNE_GRACE_MS;
    for (const t of [...this.tokens.values()]) if (t.expiresAtMs <= before) await this.revoke(t.id);
  }
}

function tokenView({ hash: _, userCreatedAtMs: __, ...t }: TokenRecord): TokenView {
  return t;
}

/** Whether `t` was issued to this user, not to an earlier one of the same name. */
function issuedTo(t: TokenRecord, u: UserRecord): boolean {
  return t.userCreatedAtMs !== undefined
    ? t.userCreatedAtMs === u.createdAtMs
    : t.createdAtMs >= u.createdAtMs;
}

/** A stored user, or what is wrong with it. */
function parseUser(value: string): UserRecord | string {
  const r = parseWireJson(value);
  if (!r.ok) return r.problem;
  const u = r.value as Partial<UserRecord>;
  if (typeof u.name !== 'string' || !isRole(u.role) || typeof u.passwordHash !== 'string')
    return 'not a user record (name, role, passwordHash)';
  return {
    name: u.name,
    role: u.role,
    passwordHash: u.passwordHash,
    createdAtMs: Number(u.createdAtMs) || 0,
  };
}

/** A stored token, or what is wrong with it. */
function parseTokenRecord(value: string): TokenRecord | string {
  const r = parseWireJson(value);
  if (!r.ok) return r.problem;
  const t = r.value as Partial<TokenRecord>;
  if (
    typeof t.id !== 'string' ||
    typeof t.user !== 'string' ||
    (t.kind !== 'token' && t.kind !== 'session') ||
    typeof t.hash !== 'string' ||
    typeof t.expiresAtMs !== 'number'
  )
    return 'not a token record (id, user, kind, hash, expiresAtMs)';
  return {
    id: t.id,
    user: t.user,
    kind: t.kind,
    label: typeof t.label === 'string' ? t.label : '',
    hash: t.hash,
    createdAtMs: Number(t.createdAtMs) || 0,
    expiresAtMs: t.expiresAtMs,
    ...(typeof t.userCreatedAtMs === 'number' ? { userCreatedAtMs: t.userCreatedAtMs } : {}),
  };
}
