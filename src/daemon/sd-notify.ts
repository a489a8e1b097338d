// sd_notify for the daemon under systemd (Type=notify, WatchdogSec=…): READY when started,
// WATCHDOG pings only while every loop of the node runs (what /healthz vouches for), RELOADING/READY around a reload,
// STOPPING on the way out. Node cannot open the AF_UNIX datagram socket systemd listens on, so the
// messages go through Debian's `systemd-notify` (the unit sets NotifyAccess=all). Without
// NOTIFY_SOCKET (not under systemd) every call is a no-op. Each send is bounded; a failed send is
// logged once per kind and never stops the daemon.
import { execFile } from 'node:child_process';
import type { Logger } from 'pino';
import type { LoopHealthReport } from './loop-health.ts';

export interface SdNotifyEnv {
  NOTIFY_SOCKET?: string | undefined;
  WATCHDOG_USEC?: string | undefined;
  WATCHDOG_PID?: string | undefined;
}

export class SdNotify {
  readonly enabled: boolean;
  /** How often to ping the watchdog (half its timeout), or null when systemd set none. */
  readonly watchdogIntervalMs: number | null;
  private readonly pid: number;
  private readonly log: Logger;
  private readonly failed = new Set<string>();
  private readonly bin: string;
  private timer: NodeJS.Timeout | undefined;

  constructor(env: SdNotifyEnv, pid: number, logger: Logger, bin = 'systemd-notify') {
    this.bin = bin;
    this.enabled = !!env.NOTIFY_SOCKET;
    this.pid = pid;
    this.log = logger.child({ component: 'sd-notify' });
    const usec = Number(env.WATCHDOG_USEC);
    const forUs = !env.WATCHDOG_PID || Number(env.WATCHDOG_PID) === pid;
    this.watchdogIntervalMs = this.enabled && forUs && usec > 0 ? Math.max(100, usec / 2000) : null;
  }

  ready(status: string): Promise<void> {
    return this.send(['--ready', `--pid=${this.pid}`, `--status=${status}`], 'ready');
  }

  status(status: string): Promise<void> {
    return this.send([`--status=${status}`], 'status');
  }

  reloading(): Promise<void> {
    return this.send(['RELOADING=1'], 'reloading');
  }

  stopping(): Promise<void> {
    this.stopWatchdog();
    return this.send(['STOPPING=1'], 'stopping');
  }

  /**
   * Pings the watchdog every interval while `health()` says every loop of the node runs — the same
   * report GET /healthz answers from, so systemd restarts what a probe sees wedged; a withheld
   * ping is logged once, with what stopped.
   */
  startWatchdog(health: () => LoopHealthReport): void {
    if (this.watchdogIntervalMs === null || this.timer) return;
    let lastOk = true;
    this.timer = setInterval(() => {
      const h = health();
      if (h.ok) void this.send(['WATCHDOG=1'], 'watchdog');
      else if (lastOk)
        this.log.error({ problems: h.problems }, 'a loop of the node stopped: withholding the watchdog ping');
      if (h.ok && !lastOk) this.log.info('every loop of the node runs again: watchdog pings resume');
      lastOk = h.ok;
    }, this.watchdogIntervalMs);
  }

  stopWatchdog(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private send(args: string[], kind: string): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    return new Promise((resolve) => {
      execFile(this.bin, ['--no-block', ...args], { timeout: 2000 }, (err) => {
        if (err && !this.failed.has(kind)) {
          this.failed.add(kind);
          this.log.warn({ err: err.message, kind }, 'sd_notify failed (is systemd-notify installed?)');
        }
        if (!err) this.failed.delete(kind);
        resolve();
      });
    });
  }
}
