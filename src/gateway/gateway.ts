// The fencing gateway's decision per request: reads pass through to the unit, the epoch block is
// answered here, and a fenced write (one FC16 to the unit's window, src/devices/modbus/gateway-fencing.ts)
// reaches the unit only when its epoch is the newest seen for that unit id. Any other write is refused.
// Invariants: the epoch check runs when the write is about to go on the line — after every request
// for that unit queued before it — so a write queued behind a newer leader's cannot slip through; a raised
// epoch is on disk before the write that raised it is sent; every request gets exactly one answer.
import { constants as fsConstants } from 'node:fs';
import { access, stat, statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import {
  decodeFencedWrite,
  encodeEpochBlock,
  type FencedWrite,
  GATEWAY_FENCE,
} from '../devices/modbus/gateway-fencing.ts';
import { MODBUS_EXCEPTION, STALE_EPOCH_EXCEPTION } from '../devices/modbus/point-map.ts';
import { RateLimitedLog } from '../util/log-limit.ts';
import type { GatewayConfig } from './config.ts';
import type { EpochStore } from './epoch-store.ts';
import { Line } from './line.ts';
import type { BadRequestReason, GatewayMetrics } from './metrics.ts';
import { RtuTransport } from './rtu-transport.ts';
import { TcpTransport } from './tcp-transport.ts';
import type { Transport, TransportOutcome } from './transport.ts';

const GATEWAY_PATH_UNAVAILABLE = 0x0a;
const SERVER_BUSY = 0x06;
const MAX_READ_BITS = 2_000;
const MAX_READ_REGISTERS = 125;
const MAX_WRITE_REGISTERS = 123;
/**
 * The epochs a leader can hold: an etcd create revision, a positive int64. The wire carries a u64,
 * so a negative revision written as a signed int64 (-1 is 0xFFFF_FFFF_FFFF_FFFF) would read as the
 * largest epoch there is and fence every real leader off the unit for good; epoch 0 is no leader's,
 * and on a unit that never saw an epoch it would be forwarded as if unfenced.
 */
const MIN_EPOCH = 1n;
const MAX_EPOCH = (1n << 63n) - 1n;
/** A line whose request runs this much past the unit's deadline is wedged: the watchdog stops. */
const WEDGED_MARGIN_MS = 2_000;
const WARN_INTERVAL_MS = 1_000;
/** While the state file cannot be written, it is tried again this often without waiting for a write. */
const STATE_RETRY_MS = 2_000;
/**
 * How often the state file's directory is checked while no raise writes the file. A gateway may
 * see no new epoch for weeks; a disk that filled or went read-only meanwhile would only show at the
 * next failover, whose raise it refuses. The check writes nothing (flash on a gateway wears).
 */
const STATE_PROBE_MS = 10_000;
/**
 * The next raise writes a temp copy of the file beside it (then renames it): with less free space
 * than twice the file's size, or than STATE_MIN_FREE_BYTES, it may not fit.
 */
const STATE_MIN_FREE_BYTES = 8 * 1024;

interface Unit {
  readonly id: number;
  readonly name: string;
  readonly unitId: number;
  readonly timeoutMs: number;
  readonly line: Line;
  /** Whether its last request on the line was answered (one log line per change). */
  answering: boolean;
}

export interface GatewayDeps {
  logger: Logger;
  metrics: GatewayMetrics;
  /** Tests: a transport per line name instead of the configured serial/TCP one. */
  transports?: Map<string, Transport>;
}

export class FencingGateway {
  private readonly cfg: GatewayConfig;
  private readonly store: EpochStore;
  private readonly log: Logger;
  private readonly m: GatewayMetrics;
  private readonly warns: RateLimitedLog;
  readonly lines = new Map<string, Line>();
  private readonly units = new Map<number, Unit>();
  private readonly base: number;
  /** Whether each line could carry requests at its last one (one log line per change). */
  private readonly lineUsable = new Map<string, boolean>();
  /** Why the last write of the state file failed (errno), while it keeps failing; else undefined. */
  private stateFileFailing: string | undefined;
  /** Whether stateFileFailing came from the directory check (which clears it) or a real write. */
  private stateFailingFromProbe = false;
  private stateRetry: NodeJS.Timeout | undefined;
  private stateProbe: NodeJS.Timeout | undefined;
  private stateProbing = false;
  /** Per unit, the persisted epoch last shown (gauge, `epoch raised` line). */
  private readonly shownEpoch = new Map<number, bigint>();

  constructor(cfg: GatewayConfig, store: EpochStore, deps: GatewayDeps) {
    this.cfg = cfg;
    this.store = store;
    this.log = deps.logger.child({ component: 'gateway' });
    this.m = deps.metrics;
    this.warns = new RateLimitedLog(this.log, WARN_INTERVAL_MS);
    this.base = cfg.fenceBase;
    for (const l of cfg.lines) {
      const transport =
        deps.transports?.get(l.name) ??
        (l.serial
          ? new RtuTransport({
              path: l.serial.path,
              baudRate: l.serial.baudRate ?? 19_200,
              parity: l.serial.parity ?? 'even',
              dataBits: l.serial.dataBits ?? 8,
              stopBits: l.serial.stopBits ?? 1,
            })
          : new TcpTransport(l.tcp!.host, l.tcp!.port));
      this.lines.set(l.name, new Line(l.name, transport, l.queueTimeoutMs, l.maxQueued));
    }
    for (const u of cfg.units) {
      this.units.set(u.id, {
        id: u.id,
        name: u.name,
        unitId: u.unitId,
        timeoutMs: u.timeoutMs,
        line: this.lines.get(u.line)!,
        answering: true,
      });
      this.shownEpoch.set(u.id, store.persisted(u.id));
      this.m.unitEpoch.set({ unit: u.name }, Number(store.persisted(u.id)));
    }
  }

  /** Opens every line; a serial line that cannot open fails the start (COOLCTL_E_STARTUP). */
  async open(): Promise<void> {
    for (const line of this.lines.values()) {
      await line.transport.open();
      this.log.info({ line: line.name, endpoint: line.transport.endpoint }, 'line open');
    }
    await this.probeStateDir();
    this.stateProbe = setInterval(() => void this.probeStateDir(), STATE_PROBE_MS).unref();
  }

  /**
   * Whether the next raise could be written: the state file's directory writable (not a read-only
   * mount) with room for a temp copy of the file. A problem found here shows as a failing write does (gauge,
   * /healthz, one error line) and clears when the check passes; a failure of a real write is left
   * to its own retry, which alone can say the file is written again. One check at a time.
   */
  private async probeStateDir(): Promise<void> {
    if (this.stateProbing) return;
    this.stateProbing = true;
    const dir = dirname(this.store.file);
    let problem: string | undefined;
    try {
      await access(dir, fsConstants.W_OK);
      const fs = await statfs(dir);
      const free = fs.bavail * fs.bsize;
      const size = await stat(this.store.file).then(
        (st) => st.size,
        () => 0,
      );
      const need = Math.max(STATE_MIN_FREE_BYTES, 2 * size);
      if (free < need)
        problem = `ENOSPC: ${Math.floor(free / 1024)} KiB free, a raise needs ${Math.ceil(need / 1024)} KiB`;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      problem = e.code ?? e.message;
    } finally {
      this.stateProbing = false;
    }
    if (problem !== undefined) {
      if (this.stateFileFailing !== undefined && !this.stateFailingFromProbe) return;
      if (problem.split(':')[0] !== this.stateFileFailing?.split(':')[0])
        this.log.error(
          { dir, problem, file: this.store.file },
          'the epoch state file’s disk is read-only or full: the next epoch raise (a failover, a switchover) would be refused (0x04)',
        );
      this.stateFileFailing = problem;
      this.stateFailingFromProbe = true;
      this.m.stateFileFailing.set(1);
    } else if (this.stateFailingFromProbe) {
      this.stateFileFailing = undefined;
      this.stateFailingFromProbe = false;
      this.m.stateFileFailing.set(0);
      this.log.info({ dir, file: this.store.file }, 'the epoch state file’s disk can take a raise again');
    }
  }

  /** Answers queued requests (0x0B) and closes the lines; bounded. */
  async stop(): Promise<void> {
    clearInterval(this.stateRetry);
    clearInterval(this.stateProbe);
    for (const line of this.lines.values()) line.stop();
    await Promise.all([...this.lines.values()].map((l) => l.transport.close()));
  }

  /** Lines that cannot carry requests, and lines wedged past their deadline. */
  health(): { ok: boolean; problems: string[] } {
    const problems: string[] = [];
    for (const line of this.lines.values()) {
      if (!line.transport.usable)
        problems.push(`line ${line.name} (${line.transport.endpoint}) is not usable`);
    }
    const wedged = this.wedged();
    if (wedged) problems.push(wedged);
    if (this.stateFileFailing)
      problems.push(
        `epoch state file ${this.store.file} cannot be written (${this.stateFileFailing}): fenced writes that raise an epoch are refused (0x04)`,
      );
    return { ok: problems.length === 0, problems };
  }

  /** Why the watchdog must not be pinged: a line whose request outlived every deadline. */
  wedged(): string | undefined {
    const maxTimeout = Math.max(...this.cfg.units.map((u) => u.timeoutMs));
    for (const line of this.lines.values()) {
      const busy = line.busyForMs();
      if (busy > maxTimeout + WEDGED_MARGIN_MS)
        return `line ${line.name} has held one request for ${Math.round(busy)} ms`;
    }
    return undefined;
  }

  /** Counts a request refused before it reached a unit, with a rate-limited log line. */
  refuse(reason: BadRequestReason, client: string, detail: string): void {
    this.m.badRequests.inc({ reason });
    this.warns.warn(`bad:${reason}`, { reason, client, detail }, 'request refused');
  }

  /**
   * Counts a connection closed for idleness, with an info line at most once a second (the next says
   * how many were left out): routine for a controller that does not lead the unit, so not a warning.
   */
  idleClosed(client: string, detail: string): void {
    this.m.idleClosed.inc();
    this.warns.info('idle', { client, detail }, 'idle connection closed');
  }

  /** One request PDU for MBAP unit id `unitId`; resolves with the answer PDU, never rejects. */
  async handle(unitId: number, pdu: Buffer, client: string): Promise<Buffer> {
    const fc = pdu[0] ?? 0;
    const unit = this.units.get(unitId);
    if (!unit) {
      this.refuse('unknown_unit', client, `unit id ${unitId} is not configured`);
      return exception(fc, GATEWAY_PATH_UNAVAILABLE);
    }
    switch (fc) {
      case 1:
      case 2:
      case 3:
      case 4:
        return this.read(unit, pdu, client);
      case 16:
        if (pdu.length >= 3 && pdu.readUInt16BE(1) === this.base + GATEWAY_FENCE.writeOffset) {
          return this.fencedWrite(unit, pdu, client);
        }
        this.refuse(
          'unfenced_write',
          client,
          `FC16 at ${pdu.length >= 3 ? pdu.readUInt16BE(1) : '?'} to unit ${unit.name} carries no epoch`,
        );
        return exception(fc, MODBUS_EXCEPTION.illegalFunction);
      case 5:
      case 6:
      case 15:
        this.refuse('unfenced_write', client, `FC${fc} to unit ${unit.name} carries no epoch`);
        return exception(fc, MODBUS_EXCEPTION.illegalFunction);
      default:
        this.refuse('unsupported_function', client, `function ${fc}`);
        return exception(fc, MODBUS_EXCEPTION.illegalFunction);
    }
  }

  private read(unit: Unit, pdu: Buffer, client: string): Promise<Buffer> | Buffer {
    const fc = pdu[0]!;
    if (pdu.length !== 5) {
      this.refuse('bad_pdu', client, `read PDU of ${pdu.length} bytes (5 expected)`);
      return exception(fc, MODBUS_EXCEPTION.illegalDataValue);
    }
    const address = pdu.readUInt16BE(1);
    const count = pdu.readUInt16BE(3);
    const max = fc <= 2 ? MAX_READ_BITS : MAX_READ_REGISTERS;
    if (count < 1 || count > max) {
      this.refuse('oversized_request', client, `read of ${count} (1..${max})`);
      return exception(fc, MODBUS_EXCEPTION.illegalDataValue);
    }
    if (address + count > 0x10000) {
      this.refuse('bad_pdu', client, `read of ${count} at ${address} runs past 65535`);
      return exception(fc, MODBUS_EXCEPTION.illegalDataAddress);
    }
    if (fc === 3) {
      const blockEnd = this.base + GATEWAY_FENCE.epochBlockLen;
      const windowEnd =
        this.base + GATEWAY_FENCE.writeOffset + GATEWAY_FENCE.headerLen + GATEWAY_FENCE.maxValues;
      if (address >= this.base && address + count <= blockEnd) {
        this.m.requests.inc({ unit: unit.name, kind: 'epoch_read' });
        const words = encodeEpochBlock(this.store.highest(unit.id)).slice(
          address - this.base,
          address - this.base + count,
        );
        const body = Buffer.alloc(2 + 2 * count);
        body[0] = 3;
        body[1] = 2 * count;
        for (const [i, w] of words.entries()) body.writeUInt16BE(w, 2 + 2 * i);
        return body;
      }
      if (address < windowEnd && address + count > this.base) {
        this.refuse(
          'bad_window',
          client,
          `read ${address}..${address + count - 1} straddles the fencing window ${this.base}..${windowEnd - 1}`,
        );
        return exception(fc, MODBUS_EXCEPTION.illegalDataAddress);
      }
    }
    this.m.requests.inc({ unit: unit.name, kind: 'read' });
    const arrivedMs = performance.now();
    const answer = unit.line.submit({
      unitId: unit.id,
      arrivedMs,
      expire: () => this.expired(unit, fc),
      run: async () => {
        this.m.forwarded.inc({ unit: unit.name, kind: 'read' });
        const out = await this.onLine(unit, pdu);
        return out.kind === 'answer' ? out.pdu : this.lineFailure(unit, fc, out);
      },
    });
    return answer ?? this.busy(unit, fc, client);
  }

  private fencedWrite(unit: Unit, pdu: Buffer, client: string): Promise<Buffer> | Buffer {
    const fc = 16;
    const words = parseWriteMultiple(pdu);
    if (!words) {
      this.refuse('bad_pdu', client, 'FC16 whose quantity, byte count and length disagree');
      return exception(fc, MODBUS_EXCEPTION.illegalDataValue);
    }
    const w = decodeFencedWrite(words);
    if ('exception' in w) {
      this.refuse('bad_window', client, `fenced write to unit ${unit.name}: ${w.reason}`);
      return exception(fc, w.exception);
    }
    if (w.epoch < MIN_EPOCH || w.epoch > MAX_EPOCH) {
      this.refuse(
        'bad_window',
        client,
        `fenced write to unit ${unit.name}: epoch ${w.epoch} is not an etcd revision (1..2^63-1)`,
      );
      return exception(fc, MODBUS_EXCEPTION.illegalDataValue);
    }
    this.m.requests.inc({ unit: unit.name, kind: 'fenced_write' });
    const echo = Buffer.from(pdu.subarray(0, 5));
    const answer = unit.line.submit({
      unitId: unit.id,
      arrivedMs: performance.now(),
      expire: () => this.expired(unit, fc),
      run: () => this.forwardFenced(unit, w, echo, client),
      write: true,
    });
    return answer ?? this.busy(unit, fc, client);
  }

  /** With the line to itself: the epoch check, the raise (on disk first), then the write. */
  private async forwardFenced(unit: Unit, w: FencedWrite, echo: Buffer, client: string): Promise<Buffer> {
    const highest = this.store.highest(unit.id);
    if (w.epoch < highest) {
      this.m.refusedStale.inc({ unit: unit.name });
      this.warns.warn(
        `stale:${unit.id}`,
        { unit: unit.name, epoch: w.epoch.toString(), newest: highest.toString(), client },
        'fenced write refused: stale epoch (0x0D)',
      );
      return exception(16, STALE_EPOCH_EXCEPTION);
    }
    // Nothing goes on the line with an epoch the state file does not hold yet (a raise whose file
    // write failed is written again here), so a restart never forgets an epoch a unit has seen.
    try {
      await this.store.ensure(unit.id, w.epoch);
      this.stateWritten();
    } catch (err) {
      this.stateWriteFailed(err, { unit: unit.name, epoch: w.epoch.toString() });
      return exception(16, MODBUS_EXCEPTION.serverDeviceFailure);
    }
    // Against what was last shown, not the memory: a raise whose file write failed is in memory
    // already, and is announced when it reaches the file.
    const shown = this.shownEpoch.get(unit.id) ?? 0n;
    if (w.epoch > shown) {
      this.shownEpoch.set(unit.id, w.epoch);
      this.m.unitEpoch.set({ unit: unit.name }, Number(w.epoch));
      this.log.info(
        { unit: unit.name, from: shown.toString(), to: w.epoch.toString(), client },
        'epoch raised',
      );
    }
    this.m.forwarded.inc({ unit: unit.name, kind: 'write' });
    const out = await this.onLine(unit, targetPdu(w));
    if (out.kind !== 'answer') return this.lineFailure(unit, 16, out);
    // The unit's own refusal (a range check, a vendor exception) goes back as the window write's.
    if (out.pdu[0] === (w.fc | 0x80))
      return exception(16, out.pdu[1] ?? MODBUS_EXCEPTION.serverDeviceFailure);
    return echo;
  }

  private stateWritten(): void {
    if (this.stateFileFailing === undefined) return;
    this.stateFileFailing = undefined;
    this.stateFailingFromProbe = false;
    this.m.stateFileFailing.set(0);
    clearInterval(this.stateRetry);
    this.stateRetry = undefined;
    this.log.info({ file: this.store.file }, 'epoch state file written again');
  }

  /**
   * A refused write is counted; the log says it once per streak (and per new errno): a leader
   * retries every period. `fields` undefined: a background retry, which refused nothing.
   */
  private stateWriteFailed(err: unknown, fields: Record<string, string> | undefined): void {
    if (fields) this.m.stateWriteErrors.inc();
    const e = err as NodeJS.ErrnoException;
    const why = e.code ?? e.message;
    if (why !== this.stateFileFailing)
      this.log.error(
        { err, ...fields, file: this.store.file },
        'cannot persist the new epoch; fenced writes that raise an epoch are refused (0x04) until it can',
      );
    this.stateFileFailing = why;
    this.stateFailingFromProbe = false;
    this.m.stateFileFailing.set(1);
    // Tried again without waiting for a leader's write, so /healthz clears once space returns.
    this.stateRetry ??= setInterval(() => {
      this.store.flush().then(
        () => this.stateWritten(),
        (retryErr: unknown) => this.stateWriteFailed(retryErr, undefined),
      );
    }, STATE_RETRY_MS).unref();
  }

  private async onLine(unit: Unit, pdu: Buffer): Promise<TransportOutcome> {
    const start = performance.now();
    const straysBefore = unit.line.transport.strays?.frames ?? 0;
    const out = await unit.line.transport.transact(unit.unitId, pdu, unit.timeoutMs);
    this.m.lineSeconds.observe({ line: unit.line.name }, (performance.now() - start) / 1000);
    const strays = unit.line.transport.strays;
    if (strays && strays.frames > straysBefore) {
      this.m.lineErrors.inc(
        { line: unit.line.name, unit: unit.name, kind: 'wrong_address' },
        strays.frames - straysBefore,
      );
      this.warns.warn(
        `wrong-address:${unit.line.name}`,
        { line: unit.line.name, unit: unit.name, asked: unit.unitId, answered: strays.lastAddress },
        'answer from another slave address skipped (a late answer, or a unit whose address the config does not say)',
      );
    }
    const usable = unit.line.transport.usable;
    if (usable !== (this.lineUsable.get(unit.line.name) ?? true)) {
      this.lineUsable.set(unit.line.name, usable);
      const fields = { line: unit.line.name, endpoint: unit.line.transport.endpoint };
      if (usable) this.log.info(fields, 'line usable again');
      else this.log.error({ ...fields, reason: 'reason' in out ? out.reason : out.kind }, 'line not usable');
    }
    const answered = out.kind === 'answer';
    if (answered !== unit.answering) {
      unit.answering = answered;
      if (answered) this.log.info({ unit: unit.name, line: unit.line.name }, 'unit answering again');
      else
        this.log.warn(
          {
            unit: unit.name,
            line: unit.line.name,
            outcome: out.kind,
            reason: 'reason' in out ? out.reason : undefined,
          },
          'unit not answering',
        );
    }
    return out;
  }

  private lineFailure(unit: Unit, fc: number, out: Exclude<TransportOutcome, { kind: 'answer' }>): Buffer {
    const line = unit.line.name;
    if (out.kind === 'timeout') {
      this.m.lineTimeouts.inc({ line, unit: unit.name });
      return exception(fc, MODBUS_EXCEPTION.gatewayTargetFailedToRespond);
    }
    this.m.lineErrors.inc({ line, unit: unit.name, kind: out.kind });
    return exception(
      fc,
      out.kind === 'garbage' ? MODBUS_EXCEPTION.gatewayTargetFailedToRespond : GATEWAY_PATH_UNAVAILABLE,
    );
  }

  private expired(unit: Unit, fc: number): Buffer {
    this.m.lineErrors.inc({ line: unit.line.name, unit: unit.name, kind: 'expired' });
    this.warns.warn(
      `expired:${unit.line.name}`,
      { line: unit.line.name, unit: unit.name },
      'request waited past queueTimeoutMs; answered 0x0B, never sent',
    );
    return exception(fc, MODBUS_EXCEPTION.gatewayTargetFailedToRespond);
  }

  private busy(unit: Unit, fc: number, client: string): Buffer {
    this.refuse('busy', client, `line ${unit.line.name} has ${unit.line.queued} requests waiting`);
    return exception(fc, SERVER_BUSY);
  }
}

export function exception(fc: number, code: number): Buffer {
  return Buffer.from([(fc | 0x80) & 0xff, code & 0xff]);
}

/** FC16 register values, or undefined when quantity, byte count and PDU length disagree. */
function parseWriteMultiple(pdu: Buffer): number[] | undefined {
  if (pdu.length < 6) return undefined;
  const quantity = pdu.readUInt16BE(3);
  const byteCount = pdu[5]!;
  if (
    quantity < 1 ||
    quantity > MAX_WRITE_REGISTERS ||
    byteCount !== 2 * quantity ||
    pdu.length !== 6 + byteCount
  )
    return undefined;
  const words: number[] = [];
  for (let i = 0; i < quantity; i++) words.push(pdu.readUInt16BE(6 + 2 * i));
  return words;
}

/** The plain Modbus write the unit gets for a fenced one. */
export function targetPdu(w: FencedWrite): Buffer {
  const n = w.values.length;
  switch (w.fc) {
    case 5: {
      const b = Buffer.alloc(5);
      b[0] = 5;
      b.writeUInt16BE(w.address, 1);
      b.writeUInt16BE(w.values[0] ? 0xff00 : 0x0000, 3);
      return b;
    }
    case 6: {
      const b = Buffer.alloc(5);
      b[0] = 6;
      b.writeUInt16BE(w.address, 1);
      b.writeUInt16BE(w.values[0]!, 3);
      return b;
    }
    case 15: {
      const bytes = Math.ceil(n / 8);
      const b = Buffer.alloc(6 + bytes);
      b[0] = 15;
      b.writeUInt16BE(w.address, 1);
      b.writeUInt16BE(n, 3);
      b[5] = bytes;
      w.values.forEach((v, i) => {
        if (v) b[6 + (i >> 3)]! |= 1 << (i & 7);
      });
      return b;
    }
    case 16: {
      const b = Buffer.alloc(6 + 2 * n);
      b[0] = 16;
      b.writeUInt16BE(w.address, 1);
      b.writeUInt16BE(n, 3);
      b[5] = 2 * n;
      for (const [i, v] of w.values.entries()) b.writeUInt16BE(v, 6 + 2 * i);
      return b;
    }
  }
}
