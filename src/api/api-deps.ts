// What the API's plugins and helpers are given: `ApiDeps`, the node's parts that `buildApp`
// (./app.ts) hands to every route plugin, and the API's own security settings. Types only, so a
// plugin depends on this and never on the assembly that registers it.
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { AlarmApi } from '../alarms/alarm.ts';
import type { StateCache } from '../cache/state-cache.ts';
import type { Leadership } from '../cluster/leadership.ts';
import type { Site } from '../config/site-schema.ts';
import type { GroupDriver } from '../control/group-driver.ts';
import type { DeviceIo } from '../devices/device-io.ts';
import type { SensorView } from '../sensors/sensor-store.ts';
import type { AuditTrail } from './audit/audit-trail.ts';
import type { AuthStore } from './auth/auth-store.ts';
import type { ConnectionLimits } from './connection-limits.ts';

/** The API's own security settings (controller config `api:`; docs/security.md). */
export interface ApiSecurity {
  /** `none`: /metrics needs no identity (a scraper without a token); default `viewer`. */
  metricsAuth?: 'none' | 'viewer';
  /** Dashboard and CLI sessions expire after this (default 8 h). */
  sessionTtlS?: number;
  /** Sign-ins per client address per minute (default 10). */
  signInsPerMinute?: number;
  /** State-changing requests per user per minute (default 120). */
  actionsPerMinute?: number;
  /** The API is served over TLS: the session cookie is Secure. */
  secureCookies?: boolean;
}

export interface ApiDeps {
  node: string;
  version: string;
  leadership: Leadership;
  registry: Registry;
  groups: string[];
  drivers: Map<string, GroupDriver>;
  /** Users, tokens and sessions of the cluster (etcd). */
  auth: AuthStore;
  /** Where state-changing requests and gained leaderships are recorded (etcd). */
  audit: AuditTrail;
  security?: ApiSecurity;
  /** The cluster's alarms (src/alarms/; routes/alarms.ts); without it the alarm routes answer 503. */
  alarms?: AlarmApi;
  /** The process-state cache, when the node has a peer channel. */
  cache?: StateCache;
  /** What the node believes about the room. */
  sensors?: SensorView;
  /** Whether every loop of the node runs (GET /healthz answers 503 with the problems when not). */
  loops?: () => { ok: boolean; problems: string[] };
  logger: Logger;
  startedAtMs: number;
  // For the dashboard's data (./routes/site.ts, ./routes/trends.ts; they also read `sensors`); each is
  // optional and the page shows "no data" without it.
  /** The site model: the floor map's layout (GET /api/v1/site). */
  site?: Site;
  /** The air handlers' connections from this node: their link state. */
  devices?: ReadonlyMap<string, DeviceIo>;
  /** Serve HTTPS with this certificate (./tls.ts); the caller attaches ApiTls for reloads. */
  https?: { cert: Buffer; key: Buffer; minVersion: 'TLSv1.2' };
  /** Time and connection bounds (./connection-limits.ts); the defaults suit every site, tests shrink them. */
  limits?: Partial<ConnectionLimits>;
}
