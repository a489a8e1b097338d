// What this process's event loop and GC did during one phase of bench/cache.ts: loop delay
// (monitorEventLoopDelay, 1 ms resolution), the longest GC pause, and CPU time used — to tell a
// keepalive slowed by our own event loop from one slowed by CPU the other processes took.
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';

export interface ProbeReading {
  loopP99Ms: number;
  loopMaxMs: number;
  gcMaxMs: number;
  cpuMs: number;
}

export class PhaseProbe {
  private readonly lag: ReturnType<typeof monitorEventLoopDelay>;
  private readonly gc: PerformanceObserver;
  private gcMaxMs = 0;
  private readonly cpu0 = process.cpuUsage();

  constructor() {
    this.lag = monitorEventLoopDelay({ resolution: 1 });
    this.lag.enable();
    this.gc = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) this.gcMaxMs = Math.max(this.gcMaxMs, e.duration);
    });
    this.gc.observe({ entryTypes: ['gc'] });
  }

  stop(): ProbeReading {
    this.lag.disable();
    this.gc.disconnect();
    const cpu = process.cpuUsage(this.cpu0);
    return {
      loopP99Ms: this.lag.percentile(99) / 1e6,
      loopMaxMs: this.lag.max / 1e6,
      gcMaxMs: this.gcMaxMs,
      cpuMs: (cpu.user + cpu.system) / 1000,
    };
  }
}
