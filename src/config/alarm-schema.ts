// The site file's `alarms:` section (and a group's own `alarms:` limits): the thresholds the alarm
// rules apply, how long a condition must hold before it is raised (delay) and how far back it must
// come before it clears (hysteresis), retention of cleared alarms, and where notifications go.
// One owner for every default: `alarmSettings()` fills them in (docs/alarms.md lists them).
import { type Static, Type as T } from '@sinclair/typebox';

const Seconds = (max: number, description: string) => T.Number({ minimum: 0, maximum: max, description });

const InletLimitsSchema = T.Object(
  {
    recommendedC: T.Optional(
      T.Number({
        minimum: 10,
        maximum: 60,
        description: 'rack inlet above this raises inlet-recommended (ASHRAE A1 recommended: 27)',
      }),
    ),
    allowableC: T.Optional(
      T.Number({
        minimum: 10,
        maximum: 60,
        description: 'rack inlet above this raises inlet-allowable (ASHRAE A1 allowable: 32)',
      }),
    ),
    hysteresisC: T.Optional(
      T.Number({ minimum: 0, maximum: 10, description: 'clears at or below the limit minus this (1)' }),
    ),
    delayS: T.Optional(Seconds(3600, 'raised once above the limit this long without a break (60)')),
  },
  { additionalProperties: false },
);

const DewPointSchema = T.Object(
  {
    minC: T.Optional(T.Number({ minimum: -40, maximum: 40, description: 'dew point below this (−9)' })),
    maxC: T.Optional(T.Number({ minimum: -40, maximum: 40, description: 'dew point above this (15)' })),
    hysteresisC: T.Optional(T.Number({ minimum: 0, maximum: 10, description: 'back inside by this (1)' })),
    delayS: T.Optional(Seconds(86_400, 'raised once out of range this long (300)')),
  },
  { additionalProperties: false },
);

const RiseRateSchema = T.Object(
  {
    limitCPerH: T.Optional(
      T.Number({ exclusiveMinimum: 0, maximum: 1000, description: 'inlet rising faster than this (20)' }),
    ),
    windowS: T.Optional(
      T.Number({ minimum: 30, maximum: 7200, description: 'the rate is measured over this window (600)' }),
    ),
    hysteresisCPerH: T.Optional(
      T.Number({ minimum: 0, maximum: 1000, description: 'clears at or below the limit minus this (5)' }),
    ),
    delayS: T.Optional(Seconds(3600, 'raised once the rate held this long (60)')),
  },
  { additionalProperties: false },
);

/** What a control group may set for itself; anything it leaves out comes from the site's section. */
export const GroupAlarmLimitsSchema = T.Object(
  {
    inlet: T.Optional(InletLimitsSchema),
    dewPoint: T.Optional(DewPointSchema),
    riseRate: T.Optional(RiseRateSchema),
  },
  { additionalProperties: false, description: 'alarm limits of this group (docs/alarms.md)' },
);

export const AlarmSettingsSchema = T.Object(
  {
    inlet: T.Optional(InletLimitsSchema),
    dewPoint: T.Optional(DewPointSchema),
    riseRate: T.Optional(RiseRateSchema),
    delays: T.Optional(
      T.Object(
        {
          unitCommLossS: T.Optional(Seconds(3600, 'a unit’s link down this long (10)')),
          unitFallbackS: T.Optional(Seconds(3600, 'a unit in watchdog fallback this long (5)')),
          sensorsS: T.Optional(Seconds(3600, 'a group’s sensor verdict degraded or blind this long (30)')),
          groupNotDrivenS: T.Optional(Seconds(3600, 'its leader says it cannot drive it this long (0)')),
          leaderlessS: T.Optional(Seconds(3600, 'a group without a leader this long (10)')),
          nodeDownS: T.Optional(Seconds(3600, 'a configured node not a member this long (15)')),
          etcdLostS: T.Optional(Seconds(3600, 'this node without etcd this long (5)')),
        },
        { additionalProperties: false },
      ),
    ),
    retention: T.Optional(
      T.Object(
        {
          clearedMaxAgeDays: T.Optional(
            T.Number({ minimum: 1, maximum: 3650, description: 'cleared alarms older than this go (30)' }),
          ),
          clearedMaxCount: T.Optional(
            T.Integer({
              minimum: 10,
              maximum: 100_000,
              description: 'at most this many cleared kept (1000)',
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    notifications: T.Optional(
      T.Object(
        {
          webhook: T.Optional(
            T.Object(
              {
                url: T.String({
                  pattern: '^https?://[^@\\s]+$',
                  description:
                    'receiver of Alertmanager v2 alert arrays (e.g. http://alertmanager:9093/api/v2/alerts); no credentials and no query string in it (headerFile holds a token)',
                }),
                headerName: T.Optional(
                  T.String({
                    pattern: '^[A-Za-z0-9-]{1,64}$',
                    description: 'a header sent with every request, e.g. Authorization',
                  }),
                ),
                headerFile: T.Optional(
                  T.String({
                    minLength: 1,
                    description:
                      'file holding that header’s value (e.g. "Bearer …"); relative to the site file; never logged',
                  }),
                ),
                caFile: T.Optional(
                  T.String({
                    minLength: 1,
                    description:
                      'PEM certificate(s) of the CA that signed an https:// receiver’s certificate (a site’s own CA); relative to the site file; without it the system’s CAs',
                  }),
                ),
                timeoutMs: T.Optional(T.Integer({ minimum: 100, maximum: 60_000, description: '(5000)' })),
                resendS: T.Optional(
                  T.Integer({
                    minimum: 10,
                    maximum: 3600,
                    description:
                      'active alarms are sent again this often, as Alertmanager expects of its clients (60)',
                  }),
                ),
              },
              { additionalProperties: false },
            ),
          ),
          mqtt: T.Optional(
            T.Object(
              {
                topic: T.String({
                  minLength: 1,
                  pattern: '^[^#+]+$',
                  description:
                    'every transition is published here (QoS 1), on the controller config’s sensor broker',
                }),
              },
              { additionalProperties: false },
            ),
          ),
          maxAttempts: T.Optional(
            T.Integer({
              minimum: 1,
              maximum: 20,
              description: 'tries per notification before it is dropped (6)',
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false, description: 'the cluster’s alarms (docs/alarms.md)' },
);

export type AlarmSettingsFile = Static<typeof AlarmSettingsSchema>;
export type GroupAlarmLimits = Static<typeof GroupAlarmLimitsSchema>;

/** Limits of one group, defaults filled in. */
export interface AlarmLimits {
  inlet: { recommendedC: number; allowableC: number; hysteresisC: number; delayS: number };
  dewPoint: { minC: number; maxC: number; hysteresisC: number; delayS: number };
  riseRate: { limitCPerH: number; windowS: number; hysteresisCPerH: number; delayS: number };
}

export const DEFAULT_ALARM_LIMITS: AlarmLimits = {
  // ASHRAE TC9.9 class A1: recommended 18–27 °C, allowable up to 32 °C; dew point −9…15 °C;
  // a temperature change of at most 20 °C per hour.
  inlet: { recommendedC: 27, allowableC: 32, hysteresisC: 1, delayS: 60 },
  dewPoint: { minC: -9, maxC: 15, hysteresisC: 1, delayS: 300 },
  riseRate: { limitCPerH: 20, windowS: 600, hysteresisCPerH: 5, delayS: 60 },
};

export const DEFAULT_ALARM_DELAYS = {
  unitCommLossS: 10,
  unitFallbackS: 5,
  sensorsS: 30,
  groupNotDrivenS: 0,
  leaderlessS: 10,
  nodeDownS: 15,
  etcdLostS: 5,
} as const;
export type AlarmDelays = { [K in keyof typeof DEFAULT_ALARM_DELAYS]: number };

export const DEFAULT_ALARM_RETENTION = { clearedMaxAgeDays: 30, clearedMaxCount: 1000 } as const;

/** The limits that apply to `group`: its own, else the site's, else the defaults — per field. */
export function alarmLimits(site: AlarmSettingsFile | undefined, group?: GroupAlarmLimits): AlarmLimits {
  return {
    inlet: { ...DEFAULT_ALARM_LIMITS.inlet, ...site?.inlet, ...group?.inlet },
    dewPoint: { ...DEFAULT_ALARM_LIMITS.dewPoint, ...site?.dewPoint, ...group?.dewPoint },
    riseRate: { ...DEFAULT_ALARM_LIMITS.riseRate, ...site?.riseRate, ...group?.riseRate },
  };
}

export function alarmDelays(site: AlarmSettingsFile | undefined): AlarmDelays {
  return { ...DEFAULT_ALARM_DELAYS, ...site?.delays };
}

export function alarmRetention(site: AlarmSettingsFile | undefined): {
  clearedMaxAgeMs: number;
  clearedMaxCount: number;
} {
  const r = { ...DEFAULT_ALARM_RETENTION, ...site?.retention };
  return { clearedMaxAgeMs: r.clearedMaxAgeDays * 86_400_000, clearedMaxCount: r.clearedMaxCount };
}

/**
 * Problems the schema cannot say (src/config/site-rules.ts reports them with the rest): limits in
 * the wrong order, for the site's section and each group's limits as they combine with it; a
 * webhook URL with a query string (a token's place: secrets come from files).
 */
export function alarmSiteProblems(site: {
  alarms?: AlarmSettingsFile | undefined;
  controlGroups: readonly { id: string; alarms?: GroupAlarmLimits | undefined }[];
}): { path: string; message: string; allowed: string }[] {
  const out: { path: string; message: string; allowed: string }[] = [];
  const check = (l: AlarmLimits, at: string) => {
    if (l.inlet.allowableC < l.inlet.recommendedC)
      out.push({
        path: `${at}/inlet/allowableC`,
        message: `allowableC (${l.inlet.allowableC}) is below recommendedC (${l.inlet.recommendedC})`,
        allowed: 'allowableC ≥ recommendedC',
      });
    if (l.dewPoint.maxC <= l.dewPoint.minC)
      out.push({
        path: `${at}/dewPoint/maxC`,
        message: `maxC (${l.dewPoint.maxC}) is not above minC (${l.dewPoint.minC})`,
        allowed: 'maxC > minC',
      });
  };
  check(alarmLimits(site.alarms), '/alarms');
  const webhookUrl = site.alarms?.notifications?.webhook?.url;
  if (webhookUrl !== undefined && urlHasQuery(webhookUrl))
    // Where a receiver's token sits in a URL; the URL is in the site file and every copy of it.
    // Never repeated in the message: it would be written to logs and errors.
    out.push({
      path: '/alarms/notifications/webhook/url',
      message:
        'a query string or fragment in the webhook URL (where a token would be) is refused: secrets come from files',
      allowed:
        'a URL without ?… or #…; the receiver’s token in headerName and headerFile (e.g. "Authorization" and a file holding "Bearer …")',
    });
  site.controlGroups.forEach((g, i) => {
    if (g.alarms) check(alarmLimits(site.alarms, g.alarms), `/controlGroups/${i}/alarms`);
  });
  return out;
}

/** Whether a URL has a query string or a fragment (an empty `?` or `#` too). */
function urlHasQuery(url: string): boolean {
  return /[?#]/.test(url);
}
