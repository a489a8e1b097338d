// The operator dashboard's page on every node: `GET /` and /ui/ assets, public (no data, the sign-in
// form), read once from ./ui when the API is built, each sent with PagePolicy's CSP. Its data has its
// own routes (./routes/site.ts, ./routes/trends.ts); identity, CORS and audit are the API's.
import { readdir, readFile } from 'node:fs/promises';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { Member } from '../cluster/leadership.ts';
import { apiOrigin } from '../util/api-origin.ts';
import { withoutCredentials } from '../util/url-credentials.ts';
import type { ApiDeps } from './api-deps.ts';
import { ErrorBody } from './error-body.ts';

/**
 * The page's files: every file of ./ui whose name is ASSET_NAME (the page, its style sheet and its
 * script's modules), read once into memory when the API is built and served from there. Nothing
 * else is reachable: /ui/:file takes only these names (the route's enum), never a path.
 */
const ASSET_TYPES = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
} as const;
const ASSET_NAME = /^[a-z0-9][a-z0-9-]*\.(html|js|css)$/;
type Asset = { type: string; body: Buffer };

// Everything from this node; fetch() may also reach the other members' APIs (operator actions
// sent to a group's leader, a group's view read from its leader), and no other host: a script that
// got into the page has nowhere to send what it reads. PagePolicy puts the members between the two.
const CSP_HEAD =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'";
const CSP_TAIL = "; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/** Distinct left-out URLs remembered so each is logged once; past this the memory starts over. */
const LEFT_OUT_REMEMBERED = 1_000;

/**
 * The page's Content-Security-Policy for the cluster as this node sees it now: connect-src lists
 * 'self' and every member's origin. Built again only when the members' API URLs change; each URL
 * left out is counted and logged once.
 */
export class PagePolicy {
  private key: string | null = null;
  private value = '';
  private readonly leftOut = new Set<string>();
  private readonly leftOutTotal: Counter;
  private readonly members: () => readonly Pick<Member, 'node' | 'apiUrl'>[];
  private readonly log: Pick<Logger, 'warn'>;

  constructor(
    members: () => readonly Pick<Member, 'node' | 'apiUrl'>[],
    log: Pick<Logger, 'warn'>,
    registry: Registry,
  ) {
    this.members = members;
    this.log = log;
    this.leftOutTotal = new Counter({
      name: 'coolctl_dashboard_connect_sources_left_out_total',
      help: 'Member API URLs left out of the dashboard page’s connect-src (not a bare http(s) origin a CSP header can carry), once per distinct URL',
      registers: [registry],
    });
  }

  header(): string {
    const members = this.members();
    const key = JSON.stringify(members.map((m) => m.apiUrl));
    if (key === this.key) return this.value;
    const sources = new Set<string>();
    for (const m of members) {
      // Member records are checked as they are read (src/cluster/etcd/snapshot.ts); checked again
      // here because this header is where a misread URL would do harm.
      const s = apiOrigin(m.apiUrl);
      if ('origin' in s) sources.add(s.origin);
      else this.leftOutOnce(m, s.why);
    }
    this.key = key;
    this.value = `${CSP_HEAD}${[...sources].map((s) => ` ${s}`).join('')}${CSP_TAIL}`;
    return this.value;
  }

  private leftOutOnce(m: Pick<Member, 'node' | 'apiUrl'>, why: string): void {
    const url = typeof m.apiUrl === 'string' ? m.apiUrl : String(m.apiUrl);
    if (this.leftOut.has(url)) return;
    if (this.leftOut.size >= LEFT_OUT_REMEMBERED) this.leftOut.clear();
    this.leftOut.add(url);
    this.leftOutTotal.inc();
    this.log.warn(
      { node: String(m.node).slice(0, 64), apiUrl: withoutCredentials(url).slice(0, 200), why },
      'member API URL left out of the dashboard page’s connect-src: the page cannot reach that member',
    );
  }
}

async function dashboardPlugin(app: FastifyInstance, deps: ApiDeps): Promise<void> {
  const assets = new Map<string, Asset>();
  const uiDir = new URL('./ui/', import.meta.url);
  const listed = (await readdir(uiDir, { withFileTypes: true }))
    .filter((e) => e.isFile() && ASSET_NAME.test(e.name))
    .map((e) => e.name)
    .sort();
  // The page itself must be there (`GET /`): without it the API does not build, as before.
  for (const name of new Set(['index.html', ...listed])) {
    const ext = ASSET_NAME.exec(name)?.[1] as keyof typeof ASSET_TYPES;
    assets.set(name, { type: ASSET_TYPES[ext], body: await readFile(new URL(name, uiDir)) });
  }

  const policy = new PagePolicy(() => deps.leadership.members(), app.log, deps.registry);
  const sendAsset = (reply: FastifyReply, asset: Asset) =>
    reply
      .type(asset.type)
      .header('cache-control', 'no-cache')
      .header('x-content-type-options', 'nosniff')
      // A member that joins later is not in a page served before: the page says to reload it.
      .header('content-security-policy', policy.header())
      // The page's requests to the other members need no Referer: CORS goes by Origin.
      .header('referrer-policy', 'no-referrer')
      .send(asset.body);
  app.get(
    '/',
    {
      config: { access: 'public' },
      schema: { description: 'The operator dashboard (HTML; it signs in, then polls this API).' },
    },
    async (_req, reply) => sendAsset(reply, assets.get('index.html')!),
  );
  app.get(
    '/ui/:file',
    {
      config: { access: 'public' },
      schema: {
        description: 'The dashboard’s style sheet and script modules (the files of src/api/ui).',
        params: {
          type: 'object',
          properties: { file: { type: 'string', enum: [...assets.keys()] } },
          required: ['file'],
        },
        response: { 400: ErrorBody },
      },
    },
    async (req: FastifyRequest, reply) =>
      sendAsset(reply, assets.get((req.params as { file: string }).file)!),
  );
}

export const dashboard = dashboardPlugin;
