// The client's certificate store: one OPCUACertificateManager per PKI folder and trust setting,
// shared by every unit of a process (one key pair, one lock), initialized once, and rescanned by the
// link before every connect. Part of the OPC-UA adapter: loaded only with it (node-opcua).
import { readdir, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { OPCUACertificateManager } from 'node-opcua-certificate-manager';

/** Where the client keeps its certificate and its trust lists unless the daemon says otherwise. */
export const DEFAULT_CLIENT_PKI_DIR = resolve(process.cwd(), 'var/opcua-client-pki');

type CertificateManagerKey = string;
const certificateManagers = new Map<CertificateManagerKey, OPCUACertificateManager>();

/**
 * One manager per PKI folder and trust setting, shared by the devices of a process: one key pair, one
 * lock. Safe although client.disconnect() calls the manager's dispose(): node-opcua counts references
 * (each client created takes one, each disconnect gives one back) and only disposes at zero, and a
 * disposed manager still checks certificates and signs (test/devices/opcua-shared-pki.test.ts).
 */
export function certificateManagerFor(rootFolder: string, trustUnknown: boolean): OPCUACertificateManager {
  const key = `${rootFolder}\0${trustUnknown}`;
  let cm = certificateManagers.get(key);
  if (!cm) {
    cm = new OPCUACertificateManager({
      rootFolder,
      automaticallyAcceptUnknownCertificate: trustUnknown,
      // We rescan before every connect instead: no watcher handles left open, and a certificate the
      // operator has just moved into trusted/ counts on the very next attempt.
      disableFileWatchers: true,
    });
    certificateManagers.set(key, cm);
  }
  return cm;
}

const initialized = new WeakMap<OPCUACertificateManager, Promise<void>>();

/**
 * One initialize() per certificate manager, shared by every device: node-opcua-pki returns at once
 * to a second caller while the first is still creating the private key (cf. node-opcua#971), so a
 * fresh PKI folder would fail every device but one.
 */
export function initializedOnce(cm: OPCUACertificateManager): Promise<void> {
  let p = initialized.get(cm);
  if (!p) {
    p = cm.initialize();
    p.catch(() => initialized.delete(cm)); // a failed initialization is tried again on the next connect
    initialized.set(cm, p);
  }
  return p;
}

/** The newest certificate in `folder` (the one a server just presented, in rejected/), if any. */
export async function newestFile(folder: string): Promise<string | undefined> {
  try {
    const names = (await readdir(folder)).filter((n) => n.endsWith('.pem') || n.endsWith('.der'));
    const withTimes = await Promise.all(
      names.map(async (n) => ({
        path: resolve(folder, n),
        mtimeMs: (await stat(resolve(folder, n))).mtimeMs,
      })),
    );
    withTimes.sort((a, b) => b.mtimeMs - a.mtimeMs);
    return withTimes[0]?.path;
  } catch {
    return undefined;
  }
}
