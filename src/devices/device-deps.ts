// What every device adapter is built with, whatever builds it (the daemon, a test, a benchmark):
// its logger, the metrics it reports through and the files a protocol needs. Kept apart from the
// interface control code uses (./device-io.ts), which has no business with metrics or PKI folders.
import type { Logger } from 'pino';
import type { DeviceMetrics } from './metrics.ts';

/** What every adapter gets from whoever builds it (the daemon, a test, a benchmark). */
export interface DeviceDeps {
  logger?: Logger;
  metrics?: DeviceMetrics;
  /** OPC-UA client PKI folder (own certificate, trusted/ and rejected/ peers). */
  pkiDir?: string;
  /** OPC-UA: trust a server certificate seen for the first time (off unless the operator turns it on). */
  trustUnknownCertificates?: boolean;
  /** Client name the device may log or journal (OPC-UA session name). */
  clientName?: string;
  /** Where a unit's `profile: NAME` is found (NAME.yaml); default config/profiles of the installation. */
  profilesDir?: string;
}
