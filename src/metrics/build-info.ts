// coolctl_build_info: which coolctl and which Node a process runs, as a constant 1 with the versions
// in labels (the Prometheus convention for build information), so a rolling upgrade shows node by node.
import { Gauge, type Registry } from 'prom-client';

export function registerBuildInfo(registry: Registry, version: string, nodejs = process.version): void {
  new Gauge({
    name: 'coolctl_build_info',
    help: 'Always 1; the labels say the coolctl version and the Node.js version the process runs',
    labelNames: ['version', 'nodejs'],
    registers: [registry],
  }).set({ version, nodejs }, 1);
}
