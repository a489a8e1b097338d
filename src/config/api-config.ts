// The controller config's `api:` section: how the API proves who calls it (docs/security.md).
// Optional as a whole; every setting has a default that is the secure one.
import { resolve } from 'node:path';
import { type Static, Type as T } from '@sinclair/typebox';
import { restartOnly } from './reload-class.ts';

/** The API's routes, session lifetime and rate limits are built once, when the API starts. */
const BUILT_AT_START = restartOnly('the API builds its routes and rate limits at start');

export const ApiSettingsSchema = T.Object(
  {
    bootstrapAdminFile: T.Optional(
      T.String({
        minLength: 1,
        description:
          'YAML file with `name` and `password` of the first admin, read at start only while the cluster has no user; refused when world-readable. Relative to this file.',
        ...restartOnly('read at start, and only while the cluster has no user'),
      }),
    ),
    tls: T.Optional(
      T.Object(
        {
          certFile: T.String({ minLength: 1, description: 'PEM certificate chain, leaf first' }),
          keyFile: T.String({ minLength: 1, description: 'PEM private key (mode 600)' }),
        },
        {
          additionalProperties: false,
          description:
            'serve the API and dashboard over HTTPS only (the session cookie is then Secure); the files are read again on SIGHUP',
          ...restartOnly(
            'HTTP or HTTPS, and which files, are fixed at start; new contents of the same files are taken by a reload (SIGHUP) without a restart',
          ),
        },
      ),
    ),
    metricsAuth: T.Optional(
      T.Union([T.Literal('none'), T.Literal('viewer')], {
        description:
          '/metrics: `viewer` (default) needs a viewer’s token; `none` lets a scraper in without one',
        ...BUILT_AT_START,
      }),
    ),
    sessionTtlS: T.Optional(
      T.Integer({
        minimum: 60,
        maximum: 7 * 86_400,
        description: 'dashboard and CLI sessions expire after this (default 28 800)',
        ...BUILT_AT_START,
      }),
    ),
    signInsPerMinute: T.Optional(
      T.Integer({
        minimum: 1,
        maximum: 10_000,
        description: 'sign-ins per client address per minute (default 10)',
        ...BUILT_AT_START,
      }),
    ),
    actionsPerMinute: T.Optional(
      T.Integer({
        minimum: 1,
        maximum: 100_000,
        description: 'state-changing requests per user per minute (default 120)',
        ...BUILT_AT_START,
      }),
    ),
  },
  { additionalProperties: false },
);
export type ApiSettingsFile = Static<typeof ApiSettingsSchema>;

export interface ApiSettings {
  /** Absolute path, or undefined. */
  bootstrapAdminFile: string | undefined;
  /** Absolute paths of the API's certificate and key, or undefined (plain HTTP). */
  tls: { certFile: string; keyFile: string } | undefined;
  metricsAuth: 'none' | 'viewer';
  sessionTtlS: number;
  signInsPerMinute: number;
  actionsPerMinute: number;
}

export function apiSettings(file: ApiSettingsFile | undefined, base: string): ApiSettings {
  return {
    bootstrapAdminFile: file?.bootstrapAdminFile ? resolve(base, file.bootstrapAdminFile) : undefined,
    tls: file?.tls
      ? { certFile: resolve(base, file.tls.certFile), keyFile: resolve(base, file.tls.keyFile) }
      : undefined,
    metricsAuth: file?.metricsAuth ?? 'viewer',
    sessionTtlS: file?.sessionTtlS ?? 8 * 3600,
    signInsPerMinute: file?.signInsPerMinute ?? 10,
    actionsPerMinute: file?.actionsPerMinute ?? 120,
  };
}
